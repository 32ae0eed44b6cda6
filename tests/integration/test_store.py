"""The Mongo store against the real server (FerretDB here, MongoDB in production)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from consumers.sample import cloud_event
from services.decoding import decode
from services.events import Event
from services.mongo.bootstrap import Services
from services.ports import WriteConflict
from services.projection import ThreadState, as_counted, fold, view
from services.query import Scope, ThreadQuery
from tests.fault.harness import stored_states

pytestmark = pytest.mark.integration

ORG_1 = Scope(("org_1",))


def event(type: str, subject: str, time: str, data: dict[str, object]) -> Event:
    value = json.dumps(cloud_event(type, subject, time, data)).encode()
    decoded = decode(subject.encode(), value, [])
    assert not hasattr(decoded, "reason"), decoded
    return decoded  # type: ignore[return-value]


def created(subject: str, time: str = "2025-11-17T10:00:00Z", **data: object) -> Event:
    return event(
        "thread.created", subject, time, {"organization_id": "org_1", "user_id": "usr_1", **data}
    )


def state_of(*events: Event) -> ThreadState:
    return fold(None, events)


async def test_saved_state_loads_back_equal(services: Services) -> None:
    state = state_of(
        created("thrd_a", metadata={"a.b": "dotted", "$x": "dollar"}, space_ids=["s1"]),
        event(
            "thread.message_added",
            "thrd_a",
            "2025-11-17T10:05:00.123Z",
            {"message_id": "m1", "model": "gpt-4o"},
        ),
        event("thread.pinned", "thrd_a", "2025-11-17T10:06:00Z", {}),
    )
    await services.store.save([(state, None)])
    loaded = await services.store.load(["thrd_a", "thrd_missing"])
    assert list(loaded) == ["thrd_a"]
    assert loaded["thrd_a"].state == as_counted(state)
    assert loaded["thrd_a"].rev == loaded["thrd_a"].activity_rev == 1
    assert loaded["thrd_a"].state.last_message_at == datetime(2025, 11, 17, 10, 5, 0, 123000, UTC)


async def test_a_stale_revision_is_a_conflict_and_changes_nothing(services: Services) -> None:
    first = state_of(created("thrd_b", title="one"), message("thrd_b", 1))
    await services.store.save([(first, None)])
    stale = (await services.store.load(["thrd_b"]))["thrd_b"]

    def titled(title: str, at: str) -> ThreadState:
        return fold(stale.state, [event("thread.updated", "thrd_b", at, {"title": title})])

    await services.store.save([(titled("two", "2025-11-17T11:00:00Z"), stale)])
    with pytest.raises(WriteConflict) as conflict:  # written from rev 1, now rev 2
        await services.store.save([(titled("three", "2025-11-17T12:00:00Z"), stale)])
    assert conflict.value.threads == {"thrd_b"}
    await services.store.save([(fold(stale.state, [message("thrd_b", 2)]), stale)])
    with pytest.raises(WriteConflict):  # a message counted from a stale activity revision
        await services.store.save([(fold(stale.state, [message("thrd_b", 3)]), stale)])
    again = fold(None, [message("thrd_b", 4)])
    with pytest.raises(WriteConflict):  # "new", but it exists
        await services.store.save([(again, None)])
    stored = (await services.store.load(["thrd_b"]))["thrd_b"]
    assert (stored.rev, view(stored.state)["title"]) == (2, "two")
    assert (stored.activity_rev, stored.state.counted) == (2, 2)


def message(subject: str, n: int) -> Event:
    return event(
        "thread.message_added",
        subject,
        f"2025-11-17T10:{n // 60:02d}:{n % 60:02d}Z",
        {"message_id": f"m{n}"},
    )


async def test_absorbing_parts_at_once_from_many_writers_gives_the_fold_of_all(
    services: Services,
) -> None:
    # given: 50 threads, each with its events split over 4 "partitions" and 3 chunks each,
    # absorbed by 12 concurrent writers (as rebuild workers are), some chunks twice
    store = services.store
    threads = [f"thrd_{n:02d}" for n in range(50)]
    events = {t: [created(t, title=t), *(message(t, n) for n in range(24))] for t in threads}
    chunks = [
        (
            part,
            [
                state_of(*events[t][part * 6 + chunk * 2 : part * 6 + chunk * 2 + 3])
                for t in threads
            ],
        )
        for part in range(4)
        for chunk in range(3)
    ]

    # when
    results = await asyncio.gather(
        *(store.absorb(states, part) for part, states in chunks + chunks[:3])
    )

    # then: every thread is the fold of all its events, found on the 4 partitions
    loaded = await store.load(threads)
    assert {t: s.state for t, s in loaded.items()} == {
        t: as_counted(state_of(*events[t])) for t in threads
    }
    assert await stored_states(store) == {t: state_of(*events[t]) for t in threads}
    assert all(s.parts == (0, 1, 2, 3) for s in loaded.values())
    assert await store.spread() == 50
    assert sum(r.conflicts for r in results) > 0, "no writer ever conflicted: proves little"
    # absorbing again changes nothing, not even a revision
    before = {t: s.rev for t, s in loaded.items()}
    assert (await store.absorb(chunks[0][1], 0)).merged == 0
    assert {t: s.rev for t, s in (await store.load(threads)).items()} == before


async def test_page_lists_only_created_visible_undeleted_threads_in_order(
    services: Services,
) -> None:
    states = [
        state_of(created("thrd_1", "2025-11-17T10:00:01Z")),
        state_of(created("thrd_2", "2025-11-17T10:00:02Z")),
        state_of(created("thrd_3", "2025-11-17T10:00:02Z")),  # same time: id breaks the tie
        state_of(created("thrd_hidden", visible_in_ui=False)),
        state_of(
            created("thrd_gone"), event("thread.deleted", "thrd_gone", "2025-11-17T12:00:00Z", {})
        ),
        state_of(
            event(
                "thread.message_added", "thrd_orphan", "2025-11-17T10:00:00Z", {"message_id": "m"}
            )
        ),
    ]
    await services.store.save([(s, None) for s in states])

    newest = await services.store.page(ThreadQuery(limit=2), ORG_1)
    assert [t["id"] for t in newest.data] == ["thrd_3", "thrd_2"] and newest.has_more
    oldest = await services.store.page(ThreadQuery(limit=3, order="asc"), ORG_1)
    assert [t["id"] for t in oldest.data] == ["thrd_1", "thrd_2", "thrd_3"]
    assert not oldest.has_more
    hidden = await services.store.page(ThreadQuery(visible_in_ui=False), ORG_1)
    assert [t["id"] for t in hidden.data] == ["thrd_hidden"]
    everything = await services.store.page(ThreadQuery(include_deleted=True), ORG_1)
    assert {t["id"] for t in everything.data} == {"thrd_1", "thrd_2", "thrd_3", "thrd_gone"}
