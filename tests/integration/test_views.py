"""The view catalog's guards on the real store: what ``drop`` and ``gc`` refuse, what lasts
across starts, ``swap --abort``, a dead swap cleared or resumed, and a half-settled flip.

Why this module is longer than ~200 lines: every rule of the catalog and the pointer
(services.mongo.views), one test each, including both orders of each pair of commands that
exclude each other.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers import build
from consumers.progress import JsonLines
from consumers.swap import swap
from consumers.topics import ensure_topics
from services.mongo.bootstrap import Services, bootstrap, migrate
from services.mongo.migration import expand_view
from services.projection import FOLD_VERSION
from services.settings import Settings
from services.views import BUILDING, MAIN, READY, View, ViewError
from testkit.logs import generate, reference
from testkit.processes import run_cli
from tests.fault.harness import published, states_of

pytestmark = pytest.mark.integration
HERE = socket.gethostname()
GONE = {"host": HERE, "pid": 2**22 + 1}  # no such process: a dead owner
ALIVE = {"host": HERE, "pid": os.getpid()}


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("consumers.rebuild", settings, *args)


def status(settings: Settings) -> dict[str, Any]:
    shown = cli(settings, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    found: dict[str, Any] = json.loads(shown.stdout)
    return found


async def ready_view(services: Services, name: str, **values: Any) -> View:
    """A catalog entry of a ready view (its collections empty, as a rebuild makes them):
    enough for the guards."""
    view = View(name, f"threads_{name}", READY, **values)
    await expand_view(services.database, view.collection, services.descending_indexes)
    await services.catalog.create(view)
    return view


async def test_drop_resolves_live_and_spares_a_running_rebuild(
    settings: Settings, services: Services
) -> None:
    dropped = cli(settings, "drop", "live")
    assert dropped.returncode == 2, dropped.stderr
    assert "'main' is the live view ('live' names it): it cannot be dropped" in dropped.stderr
    assert cli(settings, "drop", "main").returncode == 2
    now = datetime.now(UTC)
    await services.catalog.create(View("b", "threads_b", BUILDING, owner=ALIVE, heartbeat_at=now))
    running = cli(settings, "drop", "b")
    assert running.returncode == 2 and "a rebuild of 'b' is running" in running.stderr
    await services.catalog.update("b", owner=GONE)  # its process died: abandoned
    assert cli(settings, "drop", "b").returncode == 0
    assert {v.name for v in await services.catalog.all()} == {MAIN}


async def test_a_gc_of_the_retired_main_lasts_across_starts(
    settings: Settings, services: Services
) -> None:
    log = await published(settings, generate(seed=17, threads=60))
    await build.run(services, "v2", JsonLines(every=60))
    await swap(services, "v2", JsonLines(every=60))
    assert (await services.catalog.require(MAIN)).retired_at is not None

    collected = cli(settings, "gc", "--json")
    assert json.loads(collected.stdout) == {"removed": [MAIN]}, collected.stderr

    for _ in range(2):  # a migrate (the next release's) and a start, twice
        await migrate(settings)
        again = await bootstrap(settings)
        await again.close()
    assert [v.name for v in await services.catalog.all()] == ["v2"]
    assert (await services.catalog.pointer()).live == "v2"
    assert "threads" not in await services.database.list_collection_names()
    assert await states_of(services, "live") == reference(log)


async def test_two_first_migrates_at_once_and_one_killed_between_its_inserts(
    settings: Settings,
) -> None:
    empty = settings.model_copy(update={"mongo_database": f"{settings.mongo_database}_empty"})
    await asyncio.gather(migrate(empty), migrate(empty))
    both = await asyncio.gather(bootstrap(empty), bootstrap(empty))
    catalog = both[0].catalog
    try:
        assert [v.name for v in await catalog.all()] == [MAIN]
        pointer = await catalog.pointer()
        assert (pointer.live, pointer.fold_version, pointer.swap) == (MAIN, FOLD_VERSION, None)
        # killed after inserting the pointer, before main's entry: the next migrate adds it
        await catalog.views.delete_many({})
        await migrate(empty)
        again = await bootstrap(empty)
        await again.close()
        assert [v.name for v in await catalog.all()] == [MAIN]
    finally:
        await both[0].client.drop_database(empty.mongo_database)
        for started in both:
            await started.close()


async def test_swap_abort_clears_a_dead_swap_and_a_running_one_only_when_forced(
    settings: Settings, services: Services
) -> None:
    catalog = services.catalog
    await ensure_topics(settings)  # status reads the topic's offsets
    await ready_view(services, "k1")
    # a swap whose command runs (this process): refused without --force
    handover = await catalog.claim_swap("k1", MAIN, ALIVE)
    await catalog.begin_swap(handover, FOLD_VERSION)
    shown = status(settings)
    assert shown["swap"]["view"] == "k1" and not shown["swap"]["dead"]
    assert {v["name"]: v["state"] for v in shown["views"]}["k1"] == "swapping in"
    refused = cli(settings, "swap", "--abort")
    assert refused.returncode == 2 and "is running" in refused.stderr, refused.stderr
    forced = cli(settings, "swap", "--abort", "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout) == {"aborted": "k1", "owner": ALIVE, "was_running": True}
    pointer = await catalog.pointer()
    assert (pointer.next, pointer.swap) == (None, None)
    with pytest.raises(ViewError, match="aborted or taken over by another command"):
        await catalog.beat(handover)  # the forced-out swapper stops at its next heartbeat
    with pytest.raises(ViewError, match="not flipped"):
        await catalog.finish_swap(handover, MAIN, FOLD_VERSION, {})

    # a dead one: status says so, and how to recover; --abort clears it
    dead = await catalog.claim_swap("k1", MAIN, GONE)
    await catalog.begin_swap(dead, FOLD_VERSION)
    shown = status(settings)
    assert shown["swap"]["dead"] and shown["swap"]["next_set"]
    assert {v["name"]: v["state"] for v in shown["views"]}["k1"] == "swap dead"
    assert any("swap --abort" in w and "swap k1` resumes" in w for w in shown["warnings"])
    other = cli(settings, "swap", "--abort", "other")
    assert other.returncode == 2 and "is to 'k1', not 'other'" in other.stderr
    cleared = cli(settings, "swap", "--abort", "k1", "--json")
    assert json.loads(cleared.stdout)["aborted"] == "k1", cleared.stderr
    assert json.loads(cli(settings, "swap", "--abort", "--json").stdout)["aborted"] is None

    # a pointer stuck before swaps recorded themselves: `next` set, no record
    await catalog.pointers.update_one({"_id": "live"}, {"$set": {"next": "k1"}})
    assert status(settings)["swap"]["dead"]
    assert cli(settings, "swap", "--abort").returncode == 0
    assert (await catalog.pointer()).next is None


async def test_a_dead_swap_is_cleared_for_another_view_or_resumed_for_its_own(
    settings: Settings, services: Services
) -> None:
    catalog = services.catalog
    log = await published(settings, generate(seed=17, threads=60))
    await build.run(services, "v2", JsonLines(every=60))
    await ready_view(services, "other")
    dead = await catalog.claim_swap("other", MAIN, GONE)
    await catalog.begin_swap(dead, FOLD_VERSION)
    assert (await catalog.pointer()).next == "other"  # the projector writes both

    done = cli(settings, "swap", "v2", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "clearing the dead swap to other" in done.stdout
    pointer = await catalog.pointer()
    assert (pointer.live, pointer.next, pointer.swap, pointer.settled) == ("v2", None, None, True)
    assert await states_of(services, "live") == reference(log)

    # back to main, through a stuck pointer of the old kind naming it: resumed
    await catalog.pointers.update_one({"_id": "live"}, {"$set": {"next": MAIN}})
    resumed = cli(settings, "swap", MAIN, "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming the swap to main" in resumed.stdout
    assert json.loads(resumed.stdout.splitlines()[-1])["resumed"] is True
    assert (await catalog.pointer()).live == MAIN
    assert (await catalog.require("v2")).retired_at is not None
    already = cli(settings, "swap", MAIN, "--json")
    assert already.returncode == 0 and '"already_live": true' in already.stdout


async def test_a_drop_and_a_swap_of_one_view_exclude_each_other(
    settings: Settings, services: Services
) -> None:
    catalog = services.catalog
    await ready_view(services, "k1")
    handover = await catalog.claim_swap("k1", MAIN, ALIVE)  # still catching up: no `next`
    with pytest.raises(ViewError, match="'k1' is being swapped in"):
        await catalog.drop("k1")
    await catalog.abort_swap(handover)
    # a drop that marked the view and was killed before it deleted anything
    await catalog.pointers.update_one({"_id": "live"}, {"$addToSet": {"dropping": "k1"}})
    with pytest.raises(ViewError, match="'k1' is being dropped"):
        await catalog.claim_swap("k1", MAIN, ALIVE)
    await catalog.settle()
    assert (await catalog.pointer()).dropping == ("k1",)  # its entry is there: drop it again
    await catalog.drop("k1")
    assert (await catalog.pointer()).dropping == ()
    # one killed after deleting the entry, before removing its mark: settle forgets it
    await catalog.pointers.update_one({"_id": "live"}, {"$addToSet": {"dropping": "gone"}})
    await catalog.settle()
    assert (await catalog.pointer()).dropping == ()


async def test_a_drop_and_a_resumed_rebuild_of_one_view_exclude_each_other(
    settings: Settings, services: Services
) -> None:
    catalog = services.catalog
    await ensure_topics(settings)
    # the drop marked the view first: the rebuild resuming it sees the mark and stops
    await catalog.create(View("r", "threads_r", BUILDING, topic=settings.topic, owner=GONE))
    await catalog.pointers.update_one({"_id": "live"}, {"$addToSet": {"dropping": "r"}})
    with pytest.raises(ViewError, match="'r' is being dropped"):
        await build.run(services, "r", JsonLines(every=60))
    assert (await catalog.require("r")).state != BUILDING  # the drop, reading it, goes on
    await catalog.drop("r")
    assert await catalog.get("r") is None and (await catalog.pointer()).dropping == ()
    # the rebuild marked it building first (its owner alive): the drop reads that and refuses,
    # taking its mark back
    await catalog.create(View("r", "threads_r", BUILDING, owner=ALIVE, heartbeat_at=None))
    await catalog.update("r", heartbeat_at=datetime.now(UTC))
    with pytest.raises(ViewError, match="a rebuild of 'r' is running"):
        await catalog.drop("r")
    assert (await catalog.pointer()).dropping == () and await catalog.get("r") is not None


async def test_status_settles_a_flip_whose_catalog_update_was_killed(
    settings: Settings, services: Services
) -> None:
    catalog = services.catalog
    await ensure_topics(settings)
    await catalog.update(MAIN, reached={0: 3})
    await ready_view(services, "k1")
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    await catalog.pointers.update_one(
        {"_id": "live"},
        {
            "$set": {
                "view": "k1",
                "previous": MAIN,
                "swapped_at": at,
                "previous_reached": {"0": 7, "1": 2},
                "settled": False,
            }
        },
    )
    with pytest.raises(ViewError, match="not settled"):
        await catalog.claim_swap(MAIN, "k1", ALIVE)

    shown = status(settings)

    assert shown["settled"] == ["k1", MAIN]
    states = {v["name"]: v for v in shown["views"]}
    assert states["k1"]["state"] == "live" and states[MAIN]["state"] == "retired"
    main, k1 = await catalog.require(MAIN), await catalog.require("k1")
    assert (k1.live_since, k1.retired_at, main.retired_at) == (at, None, at)
    assert main.reached == {0: 7, 1: 2}
    assert (await catalog.pointer()).settled and status(settings)["settled"] == []
