"""Each message counted once without transactions (services.mongo.writes), against the real store:
a writer killed before or after any of its store calls, zombies holding stale revisions,
records inserted late, and redelivery, in any mix hypothesis finds."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.sample import cloud_event
from services.decoding import EVENT_MODELS, decode
from services.documents import message_key
from services.events import Event
from services.mongo import writes
from services.mongo.bootstrap import Services
from services.mongo.store import MongoThreadStore
from services.ports import WriteConflict
from services.projection import fold

pytestmark = pytest.mark.integration

POOL = [f"msg_{n}" for n in range(14)]
STEPS = ("recorded_keys", "_bulk", "record", "_clear")


class Killed(Exception):
    """The writer died here: nothing after this point of its save happens."""


def message(thread: str, message_id: str, second: int) -> Event:
    at = f"2025-11-17T10:00:{second:02d}Z"
    data = {"message_id": message_id, "model": f"model_{second % 3}"}
    value = json.dumps(cloud_event("thread.message_added", thread, at, data)).encode()
    decoded = decode(thread.encode(), value, [])
    assert isinstance(decoded, EVENT_MODELS)
    return decoded


class Killer:
    """Wraps the store calls of services.mongo.writes; kills the writer at the ``at``-th call,
    before it or after it, and keeps the message records a killed writer had not inserted yet (a
    zombie may insert them whenever it wakes)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.at: int | None = None
        self.after = False
        self.calls = 0
        self.late: list[list[str]] = []
        for name in STEPS:
            monkeypatch.setattr(writes, name, self._wrapped(name, getattr(writes, name)))

    def arm(self, at: int | None, after: bool) -> None:
        self.at, self.after, self.calls = at, after, 0

    def _wrapped(self, name: str, call: Callable[..., Awaitable[Any]]) -> Any:
        async def wrapped(*args: Any) -> Any:
            self.calls += 1
            if self.calls != self.at:
                return await call(*args)
            self.at = None
            if not self.after:
                if name == "record":
                    self.late.append(list(args[1]))
                raise Killed(name)
            await call(*args)
            raise Killed(name)

        return wrapped

    async def wake_zombies(self, store: MongoThreadStore) -> None:
        for keys in self.late:
            await writes.record(store.layout.messages, keys)


@pytest.fixture(scope="module")
def killer() -> Iterator[Killer]:
    with pytest.MonkeyPatch.context() as patch:
        yield Killer(patch)


async def apply(store: MongoThreadStore, events: list[Event]) -> None:
    """The projector's path for one thread: load, fold, save; reload on a conflict."""
    thread = events[0].subject
    while True:
        current = (await store.load([thread])).get(thread)
        folded = fold(current.state if current else None, events)
        try:
            await store.save([(folded, current)])
            return
        except WriteConflict:
            continue


batches = st.lists(
    st.tuples(
        st.lists(st.sampled_from(POOL), min_size=1, max_size=6),  # a batch's message ids
        st.one_of(st.none(), st.integers(1, 6)),  # the store call the writer dies at
        st.booleans(),  # before it or after it
        st.booleans(),  # a zombie loaded before this batch and writes it after
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(batches=batches)
async def test_every_message_is_counted_once_whatever_dies(
    services: Services, killer: Killer, batches: Any
) -> None:
    store, thread = services.store, f"thrd_{uuid4().hex[:8]}"
    killer.late.clear()
    seen: list[Event] = []
    for n, (ids, at, after, zombie) in enumerate(batches):
        events = [message(thread, m, n * 6 + i) for i, m in enumerate(ids)]
        stale = (await store.load([thread])).get(thread) if zombie else None
        killer.arm(at, after)
        try:
            await apply(store, events)
            killer.arm(None, False)  # it lived: the kill came after its last call
        except Killed:
            killer.arm(None, False)
            await apply(store, events)  # the batch is delivered again, to the next owner
        seen += events
        if zombie:  # it writes from what it loaded before: refused, or nothing left to do
            folded = fold(stale.state if stale else None, events)
            with contextlib.suppress(WriteConflict):
                await store.save([(folded, stale)])
    await killer.wake_zombies(store)

    expected = fold(None, seen)
    stored = (await store.load([thread]))[thread]
    keys = [message_key(thread, m) for m in POOL]
    found = await writes.by_id(store.layout.messages, keys, {"_id": True})
    recorded = {m for m in POOL if message_key(thread, m) in found}
    assert stored.state.counted == len(expected.message_ids)
    assert recorded | stored.pending == expected.message_ids
    assert recorded <= expected.message_ids  # only counted messages are ever recorded
    assert stored.state.last_message_at == expected.last_message_at
    assert stored.state.last_model == expected.last_model
    assert len(stored.pending) <= 6


async def test_a_long_thread_is_counted_in_rounds_and_leaves_no_long_pending(
    services: Services,
) -> None:
    store, thread = services.store, "thrd_long"
    events = [message(thread, f"msg_{n:05d}", n % 60) for n in range(2 * writes.PENDING_MAX + 7)]
    await apply(store, events)
    await apply(store, events[:10] + [message(thread, "msg_last", 59)])  # one more, some again
    stored = (await store.load([thread]))[thread]
    assert stored.state.counted == len(events) + 1
    assert len(stored.pending) <= writes.PENDING_KEEP
    assert await store.layout.messages.count_documents({}) >= len(events) + 1 - len(stored.pending)
