"""A first start, as scripts/run and docker compose do it: the API and the projector started on a
store not migrated yet stay unready (saying why) and create nothing, then turn ready once
``threadview-admin migrate`` has run, without a restart; and a migrate plus a first start
leave no ERROR line in the store's own logs."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from consumers.sample import cloud_event
from services.mongo.bootstrap import connect
from services.settings import Settings
from testkit.kafka import Raw, produce, structured
from testkit.processes import run_cli
from testkit.servers import ROOT, Servers

pytestmark = pytest.mark.e2e
RUN = Path(os.environ.get("THREADVIEW_RUN_DIR", ROOT / ".cache" / "run"))


async def until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not in {seconds:.0f} s: {what}")
        await asyncio.sleep(0.3)


async def ready(url: str) -> tuple[int, list[str]]:
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            answer = await client.get(f"{url}/readyz")
        except httpx.HTTPError:
            return 0, []
        return answer.status_code, answer.json().get("problems", [])


async def databases(settings: Settings) -> list[str]:
    client, _ = connect(settings)
    try:
        return list(await client.list_database_names())
    finally:
        await client.close()


async def collections(settings: Settings) -> list[str]:
    client, database = connect(settings)
    try:
        return sorted(await database.list_collection_names())
    finally:
        await client.close()


def created(thread: str) -> Raw:
    return structured(
        cloud_event(
            "thread.created",
            thread,
            "2025-11-17T10:00:00Z",
            {"organization_id": "org_e2e", "user_id": "usr_e2e", "title": "first start"},
        )
    )


async def test_unready_until_migrated_then_ready_without_a_restart(
    settings: Settings, run_process: Any
) -> None:
    api_url = f"http://127.0.0.1:{settings.api_port}"
    projector_url = f"http://127.0.0.1:{settings.projector_port}"
    # given: the API and the projector started on a store nobody migrated, and an event
    api = run_process("api.main", settings, migrate=False)
    projector = run_process("consumers.projector", settings, migrate=False)
    for url in (api_url, projector_url):

        async def unready(url: str = url) -> bool:
            status, problems = await ready(url)
            return status == 503 and any("store not migrated" in p for p in problems)

        await until(unready, f"{url}/readyz says the store is not migrated")
    await produce(settings.kafka_bootstrap_servers, settings.topic, [created("thrd_first_1")])
    status, problems = await ready(api_url)
    assert problems == [
        "store not migrated for this release: missing collection views (and 4 more) "
        "(run threadview-admin migrate)"
    ], problems
    async with httpx.AsyncClient(base_url=api_url, timeout=5) as client:
        answer = await client.get("/v1/threads", headers={"X-API-Key": "tv_x_y"})
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "store_not_migrated"
    await asyncio.sleep(2)  # a few of the projector's attempts at its batch
    # then: nothing was created, not even the database
    assert settings.mongo_database not in await databases(settings)

    # when: the migration step runs (the processes keep running)
    migrated = run_cli("consumers.admin", settings, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    key = run_cli("api.keys_cli", settings, "create", "--service", "--org", "org_e2e")
    assert key.returncode == 0, key.stderr

    # then: both turn ready, and the waiting batch is applied
    for url in (api_url, projector_url):

        async def is_ready(url: str = url) -> bool:
            return (await ready(url))[0] == 200

        await until(is_ready, f"{url}/readyz ready after migrate")

    async def listed() -> bool:
        async with httpx.AsyncClient(base_url=api_url, timeout=5) as client:
            headers = {"X-API-Key": key.stdout.strip()}
            answer = await client.get("/v1/threads", headers=headers)
        return answer.status_code == 200 and [t["id"] for t in answer.json()["data"]] == [
            "thrd_first_1"
        ]

    await until(listed, "the event published before migrate is listed")
    assert api.popen.poll() is None and projector.popen.poll() is None  # never restarted
    assert "store not migrated for this release" in projector.output()


def store_logs() -> list[Path]:
    """FerretDB's log and PostgreSQL's (where scripts/stack writes them)."""
    found = [RUN / "ferretdb.log", RUN / "postgres-documentdb" / "postgres.log"]
    found += Path("/tmp").glob("threadview-postgres-documentdb-*/postgres.log")
    return [p for p in found if p.exists()]


def errors_since(offsets: dict[Path, int], database: str) -> list[str]:
    """ERROR lines written since ``offsets`` that name ``database`` (other tests share the
    store: their lines name their own databases)."""
    lines = []
    for path, offset in offsets.items():
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        lines += [line for line in text.splitlines() if "ERROR" in line and database in line]
    return lines


async def test_a_migrate_and_a_first_start_log_no_error(
    servers: Servers, settings: Settings, run_process: Any
) -> None:
    logs = store_logs()
    if not logs or "127.0.0.1" not in servers.mongo_url:
        pytest.skip("the store's logs are scripts/stack's; this store is another")
    offsets = {path: path.stat().st_size for path in logs}
    # given: a fresh database, migrated, then the projector and the API started on it
    migrated = run_cli("consumers.admin", settings, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    projector = run_process("consumers.projector", settings)
    api = run_process("api.main", settings)
    key = run_cli("api.keys_cli", settings, "create", "--service", "--org", "org_e2e").stdout
    await produce(settings.kafka_bootstrap_servers, settings.topic, [created("thrd_first_2")])

    async def served() -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            try:
                answer = await client.get(
                    f"http://127.0.0.1:{settings.api_port}/v1/threads",
                    headers={"X-API-Key": key.strip()},
                )
            except httpx.HTTPError:
                return False
        return answer.status_code == 200 and len(answer.json()["data"]) == 1

    await until(served, "the event listed")
    assert (await ready(f"http://127.0.0.1:{settings.projector_port}"))[0] == 200
    # then: no ERROR about this database in the store's logs, nor in the processes' own
    assert errors_since(offsets, settings.mongo_database) == []
    for process in (projector, api):
        assert " ERROR " not in process.output(), process.output()[-3000:]
    assert "threads" in await collections(settings)
