"""threadview-keys against the real store: create prints once, list, revoke; only hashes stored."""

from __future__ import annotations

import subprocess

import pytest

from services.mongo.bootstrap import Services
from services.settings import Settings
from testkit.processes import run_cli

pytestmark = pytest.mark.integration


def keys(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("api.keys_cli", settings, *args)


async def test_create_list_revoke(settings: Settings, services: Services) -> None:
    # given: a user key made with the tool
    made = keys(settings, "create", "--user", "usr_1", "--org", "org_a", "--org", "org_b")
    assert made.returncode == 0, made.stderr
    plaintext = made.stdout.strip()
    assert plaintext.startswith("tv_") and "not shown again" in made.stderr
    key = await services.keys.authenticate(plaintext)
    assert key is not None
    assert (key.kind, key.user_id, key.organization_ids) == ("user", "usr_1", ("org_a", "org_b"))

    # then: the store holds a hash, never the key
    stored = await services.store.threads.database["api_keys"].find_one({"_id": key.id})
    assert stored is not None and plaintext.split("_", 2)[2] not in str(stored)

    # and: list shows it, without the secret
    listed = keys(settings, "list")
    assert key.id in listed.stdout and plaintext not in listed.stdout and "active" in listed.stdout

    # when: it is revoked, it no longer authenticates; revoking again fails
    assert keys(settings, "revoke", key.id).returncode == 0
    assert await services.keys.authenticate(plaintext) is None
    assert "revoked" in keys(settings, "list").stdout
    assert keys(settings, "revoke", key.id).returncode == 1


async def test_service_key_and_bad_usage(settings: Settings, services: Services) -> None:
    made = keys(settings, "create", "--service", "--org", "org_a")
    key = await services.keys.authenticate(made.stdout.strip())
    assert key is not None and (key.kind, key.user_id) == ("service", None)
    assert (
        keys(settings, "create", "--org", "org_a").returncode == 2
    )  # neither --user nor --service
    assert keys(settings, "create", "--user", "usr_1").returncode == 2  # no --org
