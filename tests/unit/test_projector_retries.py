"""Projector.handle's retries on the in-memory store (testkit.memory, held to the real store's
contract by tests/integration/test_contract.py): what each failure gets, and that every path
ends with the view the fold of the batch gives (services/projector.py's opening comment)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import datetime

import pytest

from consumers.sample import cloud_event
from services.ports import ThreadWriter
from services.projector import Projector, Record, Refused, only
from testkit.memory import MemoryThreadStore, Unavailable


def record(offset: int, type: str, subject: str, data: dict[str, object]) -> Record:
    time = f"2025-11-17T10:00:{offset:02d}Z"
    value = json.dumps(cloud_event(type, subject, time, data, id=f"e{offset}")).encode()
    at = int(datetime.fromisoformat(time).timestamp() * 1000)  # the broker's append time
    return Record("t", 0, offset, subject.encode(), value, [], at)


def batch(*threads: str) -> list[Record]:
    """Each thread created, then two messages; offsets in order."""
    records: list[Record] = []
    for thread in threads:
        n = len(records)
        records.append(
            record(n, "thread.created", thread, {"organization_id": "o", "user_id": "u"})
        )
        records += [
            record(n + i, "thread.message_added", thread, {"message_id": f"m{i}"}) for i in (1, 2)
        ]
    return records


async def counts(store: MemoryThreadStore, *threads: str) -> dict[str, int]:
    found = {t: await store.read(t) for t in threads}
    return {t: v["message_count"] for t, v in found.items() if v}


async def eventually(check: Callable[[], bool], seconds: float = 5) -> None:
    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within the time")


def projector(store: MemoryThreadStore, causes: list[str] | None = None) -> Projector:
    return Projector(
        only(store), max_backoff=0.05, on_retry=None if causes is None else causes.append
    )


async def test_a_transient_error_is_retried_until_it_passes_and_nothing_is_skipped() -> None:
    store, causes = MemoryThreadStore(), list[str]()
    store.fail = [Unavailable("down"), Unavailable("still down"), Unavailable("again")]
    outcome = await Projector(only(store), max_backoff=0.05, on_retry=causes.append).handle(
        batch("a", "b")
    )
    assert (outcome.applied, outcome.rejected) == (6, [])
    assert outcome.retries["unavailable"] == 3 and causes == ["unavailable"] * 3
    assert await counts(store, "a", "b") == {"a": 2, "b": 2}


async def test_a_conflict_reloads_and_refolds_only_the_threads_that_conflicted() -> None:
    store = MemoryThreadStore()
    await projector(store).handle(batch("a", "b"))
    store.conflict_next = {"a"}
    more = [record(10, "thread.message_added", t, {"message_id": "m9"}) for t in ("a", "b")]
    outcome = await projector(store).handle(more)
    assert outcome.retries["conflict"] == 1
    assert await counts(store, "a", "b") == {"a": 3, "b": 3}
    assert store.calls.count("save") == 3  # the first batch; the conflict; its retry


async def test_a_redelivered_batch_changes_nothing() -> None:
    store = MemoryThreadStore()
    records = batch("a")
    await projector(store).handle(records)
    before = {t: (r.rev, r.activity_rev) for t, r in store.threads.items()}
    outcome = await projector(store).handle(records)
    assert outcome.retries == {} and outcome.rejected == []
    assert {t: (r.rev, r.activity_rev) for t, r in store.threads.items()} == before
    assert await counts(store, "a") == {"a": 2}


async def test_a_thread_the_store_refuses_for_good_is_dead_lettered_and_the_rest_commit() -> None:
    store = MemoryThreadStore()
    store.refuse = {"big": "document too large"}
    outcome = await projector(store).handle(batch("a", "big", "c"))
    assert {r.key for r, _ in outcome.rejected} == {b"big"}
    assert {why.code for _, why in outcome.rejected} == {"write_failed"}
    assert "document too large" in outcome.rejected[0][1].detail
    assert outcome.applied == 6
    assert await counts(store, "a", "big", "c") == {"a": 2, "c": 2}


async def test_most_of_a_batch_refused_is_an_outage_the_batch_waits_for() -> None:
    store, causes = MemoryThreadStore(), list[str]()
    store.refuse = {"a": "refused", "b": "refused"}  # two of three: not bad data
    handling = asyncio.create_task(projector(store, causes).handle(batch("a", "b", "c")))
    await eventually(lambda: causes.count("failed") >= 2)
    assert not handling.done()
    store.refuse = {}
    outcome = await asyncio.wait_for(handling, 5)
    assert outcome.rejected == [] and outcome.applied == 9
    assert await counts(store, "a", "b", "c") == {"a": 2, "b": 2, "c": 2}


async def test_one_refused_thread_with_a_store_that_takes_no_write_is_an_outage() -> None:
    store, causes = MemoryThreadStore(), list[str]()
    store.refuse = {"a": "refused"}
    writer = projector(store, causes)
    original = store.probe

    async def probe() -> None:  # the store takes no write at all while a is refused
        if store.refuse:
            raise Unavailable("no writes")
        await original()

    store.probe = probe  # type: ignore[method-assign]
    handling = asyncio.create_task(writer.handle(batch("a", "b", "c")))
    await eventually(lambda: "failed" in causes)
    assert writer.failing_since is not None
    store.refuse = {}
    outcome = await asyncio.wait_for(handling, 5)
    assert outcome.rejected == [] and writer.failing_since is None


async def test_refused_targets_hold_the_batch_writing_nothing_until_they_change() -> None:
    store, refusing = MemoryThreadStore(), ["another fold version"]

    async def targets() -> Sequence[ThreadWriter]:
        if refusing:
            raise Refused(refusing[0])
        return [store]

    writer = Projector(targets, max_backoff=0.05)
    assert await writer.check() == "another fold version"
    handling = asyncio.create_task(writer.handle(batch("a")))
    await asyncio.sleep(0.2)
    assert not handling.done() and store.calls == [] and writer.refused
    refusing.clear()
    outcome = await asyncio.wait_for(handling, 5)
    assert outcome.applied == 3 and writer.refused is None and await writer.check() is None


@pytest.mark.parametrize("at", range(4))
async def test_a_failure_at_any_call_ends_in_the_same_view(at: int) -> None:
    clean = MemoryThreadStore()
    await projector(clean).handle(batch("a", "b"))
    store = MemoryThreadStore()
    store.conflict_next = {"b"}
    store.fail = [*([None] * at), Unavailable("now")]
    await projector(store).handle(batch("a", "b"))
    assert len(store.calls) > at  # the failure was reached
    assert [v async for v in store.documents()] == [v async for v in clean.documents()]
