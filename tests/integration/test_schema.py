"""The migration step on the real store: migrate is idempotent, safe twice at once and after a
kill -9 at any step; contract drops only what older versions use; nothing else creates
anything (services.mongo.schema, services.mongo.migration, threadview-admin).

Why this module is longer than ~200 lines: one test per rule of what a release needs of the
store (services.mongo.schema) and its migrate and contract steps, sharing their set-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from services.failpoints import VARIABLE
from services.mongo import migration, schema
from services.mongo.bootstrap import Services, bootstrap, connect, migrate
from services.mongo.store import MongoThreadStore
from services.query import INDEX_VERSION, Scope, ThreadQuery
from services.settings import Settings
from services.views import MAIN
from testkit.processes import run_cli, settings_env
from testkit.servers import ROOT

pytestmark = pytest.mark.integration


async def schema_of(settings: Settings) -> dict[str, Any]:
    """Everything a migrate makes: collections, their indexes, the catalog documents."""
    client, database = connect(settings)
    try:
        names = sorted(await database.list_collection_names())
        indexes = {}
        for n in names:
            found = [
                (i["name"], tuple(i["key"].items())) async for i in await database[n].list_indexes()
            ]
            indexes[n] = sorted(found)
        pointer = await database["view_pointer"].find_one({"_id": "live"}, {"_id": 0, "view": 1})
        entries = [d["_id"] async for d in database["views"].find({}, {"_id": 1})]
        return {"collections": names, "indexes": indexes, "pointer": pointer, "views": entries}
    finally:
        await client.close()


async def exists(settings: Settings) -> bool:
    client, _ = connect(settings)
    try:
        return settings.mongo_database in await client.list_database_names()
    finally:
        await client.close()


Fresh = Callable[[str], Settings]


@pytest.fixture
async def fresh(settings: Settings) -> AsyncIterator[Fresh]:
    """Databases nothing has touched (the test's, with a suffix), dropped afterwards."""
    made: list[Settings] = []

    def database(suffix: str = "") -> Settings:
        made.append(
            settings.model_copy(update={"mongo_database": settings.mongo_database + suffix})
        )
        return made[-1]

    yield database
    client, _ = connect(settings)
    try:
        for each in made:
            await client.drop_database(each.mongo_database)
    finally:
        await client.close()


def admin(settings: Settings, *args: str, env: dict[str, str] | None = None) -> Any:
    return run_cli("consumers.admin", settings, *args, env=env)


async def test_migrate_is_idempotent_and_says_what_it_made(fresh: Fresh) -> None:
    # given: a database nothing has touched
    target = fresh("")
    shown = admin(target, "status")
    assert shown.returncode == 1 and "missing collection views" in shown.stdout, shown
    # when: migrate runs, then again
    first = admin(target, "migrate", "--no-topics")
    made = await schema_of(target)
    again = await migrate(target)
    # then: the first made it all, the second nothing, and status says ready
    assert first.returncode == 0, first.stderr
    assert f"created index list_v{INDEX_VERSION}_org on threads" in first.stdout
    assert "created collection threads_messages" in first.stdout
    assert again.done == [] and await schema_of(target) == made
    assert made["pointer"] == {"view": MAIN} and made["views"] == [MAIN]
    assert set(schema.CATALOG) | set(schema.view_collections("threads")) == set(made["collections"])
    assert admin(target, "status").returncode == 0


async def test_two_migrates_at_once_make_one_schema(fresh: Fresh) -> None:
    reference, target = fresh("_ref"), fresh("")
    await migrate(reference)
    reports = await asyncio.gather(migrate(target), migrate(target), migrate(target))
    assert await schema_of(target) == await schema_of(reference)
    made = [line for r in reports for line in r.done if line.startswith("index ")]
    assert len(made) >= len(schema.view_indexes("threads", False))  # each made by one at least
    assert admin(target, "status").returncode == 0


async def test_a_migrate_killed_at_any_step_is_finished_by_the_next(fresh: Fresh) -> None:
    reference = fresh("_ref")
    await migrate(reference)
    wanted = await schema_of(reference)
    steps = len(schema.CATALOG) + 1 + 3 + 1  # collections, catalog documents, view, indexes
    for step in range(1, steps + 1):
        # given: a migrate killed (SIGKILL) right before its step-th command
        target = fresh(f"_k{step}")
        killed = admin(target, "migrate", "--no-topics", env={VARIABLE: f"{migration.STEP}:{step}"})
        assert killed.returncode == -9, (step, killed.stdout, killed.stderr)
        # then: processes find it unready, and the next migrate completes it
        if await exists(target):
            with pytest.raises(schema.NotMigrated, match="threadview-admin migrate"):
                await bootstrap(target)
        assert admin(target, "migrate", "--no-topics").returncode == 0
        assert await schema_of(target) == wanted, step


async def test_a_migrate_killed_at_a_random_time_is_finished_by_the_next(fresh: Fresh) -> None:
    reference = fresh("_ref")
    await migrate(reference)
    rng = random.Random(18)
    for attempt in range(3):
        target = fresh(f"_r{attempt}")
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "consumers.admin", "migrate", "--no-topics"),
            env=settings_env(target),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await asyncio.sleep(rng.uniform(0.4, 1.2))  # it starts in ~0.5 s, then runs ~0.5 s
        with contextlib.suppress(ProcessLookupError):  # it finished first: as good a case
            process.kill()
        await process.wait()
        await migrate(target)
        assert await schema_of(target) == await schema_of(reference), attempt


async def test_contract_drops_only_what_older_versions_use(services: Services) -> None:
    # given: a migrated store holding an index of the releases before migrations (its name
    # once hinted, its keys other than today's), and one a newer release's migrate added
    threads = services.database["threads"]
    await threads.create_index([("organization_id", 1), ("created_at", -1)], name="list_org")
    newer = f"list_v{INDEX_VERSION + 1}_org"
    await threads.create_index([("organization_id", 1), ("_id", 1)], name=newer)
    ours = {i.name for i in schema.view_indexes("threads", services.descending_indexes)}
    settings = services.settings
    # when: a dry run, then two contracts at once
    dry = admin(settings, "contract", "--dry-run")
    shown = admin(settings, "status")
    database, descending = services.database, services.descending_indexes
    both = await asyncio.gather(
        migration.contract(database, descending), migration.contract(database, descending)
    )
    # then: only the old one went; this release's and the newer one's stay
    assert dry.returncode == 0 and "would drop index list_org on threads" in dry.stdout, dry
    assert newer not in dry.stdout.split("would drop")[-1].split("\n")[0]
    assert shown.returncode == 0 and "older, dropped by contract: index list_org" in shown.stdout
    assert f"newer release's, kept: index {newer} on threads" in shown.stdout
    assert {line for r in both for line in r.done} == {"index list_org on threads"}
    names = {i["name"] async for i in await threads.list_indexes()}
    assert names == ours | {"_id_", newer}
    assert admin(settings, "contract").stdout.strip().endswith("nothing to drop")


async def test_bootstrap_creates_nothing_and_says_what_is_missing(fresh: Fresh) -> None:
    # an unmigrated store: a CLI refuses, the API and the projector start unready, nothing made
    target = fresh("")
    with pytest.raises(schema.NotMigrated, match="missing collection views"):
        await bootstrap(target)
    started = await bootstrap(target, unmigrated=True)
    try:
        assert started.problem is not None and "threadview-admin migrate" in started.problem
        assert not await exists(target)
        keys = run_cli("api.keys_cli", target, "list", migrate=False)
        assert keys.returncode == 2 and "store not migrated for this release" in keys.stderr
        assert not await exists(target)
        # a store migrated by hand but for one index: the problem names it
        await migrate(target)
        missing = f"list_v{INDEX_VERSION}_user"
        await started.database["threads"].drop_index(missing)
        before = await schema_of(target)
        again = await bootstrap(target, unmigrated=True)
        assert again.problem == (
            f"store not migrated for this release: missing index {missing} on threads "
            "(run threadview-admin migrate)"
        )
        await again.close()
        assert await schema_of(target) == before
        # the running one turns ready once migrate ran, without a restart
        await migrate(target)
        started._checked_at = 0.0  # as if RECHECK_SECONDS had passed
        assert await started.unmigrated() is None
        assert started.store.threads.name == "threads"
    finally:
        await started.close()


async def test_a_store_of_the_releases_before_migrations_is_migrated_in_place(
    fresh: Fresh,
) -> None:
    # given: a view whose list indexes have today's keys under the unversioned names of the
    # releases before migrations (MongoDB refuses a second index of the same keys)
    target = fresh("")
    client, database = connect(target)
    try:
        descending = await schema.walks_one_way(database)
        wanted = schema.view_indexes("threads", descending)
        legacy = {i.name: i.name.replace(f"list_v{INDEX_VERSION}_", "list_") for i in wanted}
        for index in wanted:
            await database["threads"].create_index(list(index.keys), name=legacy[index.name])
        # when: this release's migrate runs, then its API reads a page and its total
        report = await migrate(target)
        assert not any("index" in line for line in report.done), report.done
        await schema.require(database, descending)
        store = MongoThreadStore(database, descending)
        scope = Scope(("org_1",))
        page = await store.page(ThreadQuery(include_total=True), scope)
        assert page.data == [] and page.total == 0
        # then: the old names serve this release, and contract keeps them
        dropped = await migration.contract(database, descending, dry_run=True)
        assert dropped.done == []
        names = {i["name"] async for i in await database["threads"].list_indexes()}
        assert names == set(legacy.values()) | {"_id_"}
    finally:
        await client.close()
