"""What the fault tests wait for and check: no lag, the view equal to the fold of the log."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

from consumers.topics import ensure_topics
from services.documents import parse_message_key
from services.mongo.bootstrap import Services
from services.mongo.store import MongoThreadStore
from services.projection import ThreadState, view
from services.query import Scope, ThreadQuery
from services.settings import Settings
from testkit.families import assert_every_family_answers_exactly
from testkit.families import expected as listed_ids
from testkit.kafka import lag, produce, read_all
from testkit.logs import ORGS, Log, comparable


async def published(settings: Settings, log: Log) -> Log:
    """``log``, produced to the settings' topic (created first, as the project creates it)."""
    await ensure_topics(settings)
    await produce(settings.kafka_bootstrap_servers, settings.topic, log.records)
    return log


async def wait_for_no_lag(settings: Settings, deadline: float) -> int:
    remaining = -1
    while time.monotonic() < deadline:
        remaining = await lag(
            settings.kafka_bootstrap_servers, settings.topic, settings.consumer_group
        )
        if remaining == 0:
            return 0
        await asyncio.sleep(1)
    return remaining


async def states_of(services: Services, name: str) -> dict[str, ThreadState]:
    """The view ``name``'s threads as comparable states (see testkit.logs.comparable)."""
    return await stored_states(services.store_of(await services.catalog.require(name)))


async def stored_states(store: MongoThreadStore) -> dict[str, ThreadState]:
    """Every thread of a view as a state to compare with a fold of the log: its message ids
    are those recorded or pending, and ``counted`` is what its count says beyond them (0
    when the count is exact, as a fold from nothing has it)."""
    layout = store.layout
    ids = [d["_id"] async for d in layout.threads.find({}, {"_id": True})]
    ids += [d["_id"] async for d in layout.activity.find({}, {"_id": True})]
    recorded: dict[str, set[str]] = defaultdict(set)
    async for record in layout.messages.find({}, {"_id": True}):
        thread, message = parse_message_key(record["_id"])
        recorded[thread].add(message)
    unique = list(dict.fromkeys(ids))
    found: dict[str, ThreadState] = {}
    for start in range(0, len(unique), 1000):
        for thread, stored in (await store.load(unique[start : start + 1000])).items():
            messages = recorded.pop(thread, set()) | stored.pending
            state = replace(stored.state, message_ids=messages)
            found[thread] = comparable(replace(state, counted=state.counted - len(messages)))
    assert not recorded, f"message records of threads with no count: {sorted(recorded)[:5]}"
    return found


async def assert_view_is_the_fold_of_the_log(services: Services, expected: dict[str, Any]) -> None:
    stored = await stored_states(services.store)
    missing, extra = set(expected) - set(stored), set(stored) - set(expected)
    assert not missing and not extra, f"missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}"
    wrong = [t for t, state in expected.items() if stored[t] != state]
    assert not wrong, f"{len(wrong)} threads differ from the reference, e.g. {wrong[:3]}"
    await assert_every_list_query_answers(services, [view(s) for s in expected.values()])


async def assert_every_list_query_answers(services: Services, views: list[dict[str, Any]]) -> None:
    """After crashes and outages the indexes still serve every request family, exactly."""
    listed = listed_ids(views, ThreadQuery(), Scope(ORGS))
    await assert_every_family_answers_exactly(
        services,
        views,
        ORGS,
        user="usr_1",
        assistant="asst_1",
        workflow="wf_1",
        cursor=listed[len(listed) // 2],
    )


async def assert_dead_letters_are_the_poison(
    settings: Settings, poison_positions: set[tuple[int, int]]
) -> None:
    """The dead-letter topic (read committed) holds each poison record exactly once."""
    dead = await read_all(
        settings.kafka_bootstrap_servers, settings.dlq_topic, expect=len(poison_positions)
    )
    got = [
        (int(dict(r.headers)["dlq.partition"]), int(dict(r.headers)["dlq.offset"])) for r in dead
    ]
    assert sorted(got) == sorted(poison_positions)
