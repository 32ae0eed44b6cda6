"""A swap SIGKILLed at each step of its handover, while the live projector runs and events keep
arriving: ``status`` says what it left, a plain ``swap`` then completes it, and the live view
is the fold of the whole log.

One topic, one projector and one rebuild for the module: each test swaps to whichever of
``main`` and ``k1`` is not live (swapping back to a retired view catches it up from its
``reached`` offsets), while publishing its own slice of one generated log."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from consumers.topics import ensure_topics
from services.failpoints import VARIABLE
from services.mongo.bootstrap import Services, bootstrap, migrate
from services.settings import Settings
from services.views import MAIN
from testkit.kafka import Raw, produce
from testkit.logs import Log, generate, reference
from testkit.processes import Process, run_cli_async
from testkit.servers import Servers, fresh_settings
from tests.fault.harness import states_of, wait_for_no_lag

pytestmark = pytest.mark.fault
STEPS = 5  # the parametrized steps below, each publishing its own slice


@dataclass
class World:
    services: Services
    log: Log
    projector: Process
    produced: int = 0  # records of the log published so far
    slices: list[list[Raw]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def so_far(self) -> Log:
        """The part of the log published so far."""
        n = self.produced
        return Log(self.log.records[:n], {i for i in self.log.poison if i < n})


@pytest.fixture(scope="module")
async def world(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    settings = fresh_settings(servers)
    log = generate(seed=53, threads=200)  # ~4,000 records
    first = len(log.records) * 2 // 5
    rest = log.records[first:]
    size = -(-len(rest) // STEPS)
    await ensure_topics(settings)
    await produce(settings.kafka_bootstrap_servers, settings.topic, log.records[:first])
    await migrate(settings)
    services = await bootstrap(settings)
    logs = tmp_path_factory.mktemp("swap_killed")
    projector = Process("consumers.projector", settings, logs / "projector.log")
    world = World(
        services, log, projector, first, [rest[i : i + size] for i in range(0, len(rest), size)]
    )
    try:
        built = await rebuild(world, "run", "--name", "k1", "--workers", "1", "--json")
        assert built.returncode == 0, built.stdout + built.stderr
        yield world
    finally:
        projector.stop()
        await services.client.drop_database(settings.mongo_database)
        await services.close()


async def rebuild(world: World, *args: str, failpoint: str | None = None) -> Any:
    env = {VARIABLE: failpoint} if failpoint else {}
    return await run_cli_async("consumers.rebuild", world.settings, *args, env=env)


async def status(world: World) -> dict[str, Any]:
    shown = await rebuild(world, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    found: dict[str, Any] = json.loads(shown.stdout)
    return found


async def publish(world: World, records: list[Raw], chunk: int = 25) -> None:
    """The test's slice, a chunk every 0.2 s: events keep arriving through the swaps."""
    for i in range(0, len(records), chunk):
        await produce(
            world.settings.kafka_bootstrap_servers, world.settings.topic, records[i : i + chunk]
        )
        world.produced += len(records[i : i + chunk])
        await asyncio.sleep(0.2)


async def written(world: World, names: list[str], seconds: float = 12) -> set[str]:
    """Which of the views have documents changing within ``seconds``, while records arrive.

    Only creates, pins, deletes and updates change a thread document (a quarter of the records,
    fold version 3), and a loaded CI machine once let 3 s pass with neither view changed: the
    wait ends as soon as every view has changed, so only a view expected to stay still costs
    the whole window."""
    stores = {n: world.services.store_of(await world.services.catalog.require(n)) for n in names}

    async def revisions(name: str) -> dict[str, int]:
        return {d["_id"]: d["rev"] async for d in stores[name].threads.find({}, {"rev": 1})}

    before = {name: await revisions(name) for name in names}
    changed: set[str] = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end and len(changed) < len(names):
        await asyncio.sleep(0.3)
        changed |= {n for n in names if n not in changed and await revisions(n) != before[n]}
    return changed


@pytest.mark.parametrize(
    "step, flipped",
    [
        ("swap.before_next", False),
        ("swap.handover", False),
        ("swap.before_flip", False),
        ("swap.after_flip", True),
        ("swap.settle", True),
    ],
)
async def test_a_swap_killed_at_a_step_is_seen_and_completed_by_the_next_swap(
    world: World, step: str, flipped: bool
) -> None:
    catalog = world.services.catalog
    old = (await catalog.pointer()).live
    new = "k1" if old == MAIN else MAIN
    records = world.slices.pop(0)
    during, after = records[: len(records) // 2], records[len(records) // 2 :]
    publishing = asyncio.create_task(publish(world, during))
    await asyncio.sleep(0.5)  # the stream is flowing

    # when: the swap is SIGKILLed at the step
    killed = await rebuild(world, "swap", new, "--json", failpoint=step)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    await publishing
    publishing = asyncio.create_task(publish(world, after))  # on until the test's swap ends
    pointer = await catalog.pointer()

    # then: status says what it left
    if flipped:  # the new view is live; status settles what the catalog lacked
        assert (pointer.live, pointer.settled, pointer.swap) == (new, False, None)
        shown = await status(world)
        assert shown["settled"] == ([new, old] if step == "swap.after_flip" else [old])
        states = {v["name"]: v["state"] for v in shown["views"]}
        assert (shown["live"], shown["swap"], states[old]) == (new, None, "retired")
    else:  # a dead swap; with `next` set, the projector writes both views meanwhile
        shown = await status(world)
        assert shown["live"] == old and shown["swap"]["view"] == new and shown["swap"]["dead"]
        assert shown["swap"]["next_set"] == (step != "swap.before_next")
        assert {v["name"]: v["state"] for v in shown["views"]}[new] == "swap dead"
        assert any(f"swap {new}` resumes it" in w for w in shown["warnings"])
        # only the projector can write the new view now: it does once `next` is set
        both = {old, new} if step != "swap.before_next" else {old}
        assert await written(world, [old, new]) == both

    # and a plain swap completes it, or says it is done
    done = await rebuild(world, "swap", new, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["live"] == new
    assert summary.get("already_live") if flipped else summary["resumed"]
    await publishing

    # and once the projector has caught up, the live view is the fold of the whole log
    assert await wait_for_no_lag(world.settings, time.monotonic() + 120) == 0
    pointer = await catalog.pointer()
    assert (pointer.live, pointer.next, pointer.swap, pointer.settled) == (new, None, None, True)
    live, retired = await catalog.require(new), await catalog.require(old)
    assert live.live_since == pointer.swapped_at and live.retired_at is None
    assert retired.retired_at == pointer.swapped_at
    assert await states_of(world.services, new) == reference(world.so_far())
    assert "Traceback" not in world.projector.output()
