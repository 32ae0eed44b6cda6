"""The shared watcher of what the view holds (services.applied): waits end when the offsets
pass the token, or at their time; one reader for every waiter; bounded."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.applied import Applied, Beyond, TooManyWaiting
from services.consistency import Token


class Log:
    """A fake group: committed offsets that a test moves on, and the topic's ends."""

    def __init__(self) -> None:
        self.at = {0: 10, 1: 5}
        self.end = {0: 100, 1: 100}
        self.reads = 0
        self.failing = False

    async def committed(self) -> dict[int, int]:
        self.reads += 1
        if self.failing:
            raise ConnectionError("broker away")
        return dict(self.at)

    async def ends(self) -> dict[int, int]:
        return dict(self.end)


def watcher(log: Log, idle: float = 0.05, max_waiting: int = 256) -> Applied:
    return Applied(log.committed, log.ends, interval=0.01, idle=idle, max_waiting=max_waiting)


async def test_a_token_already_applied_answers_without_another_read() -> None:
    log = Log()
    applied = watcher(log)
    assert await applied.wait(Token({0: 10, 1: 5}), 5)
    assert await applied.wait(Token({0: 3}), 5)
    assert log.reads <= 2  # the first read (and the first waiter's); none for the second
    await applied.close()


async def test_many_waiters_share_one_reader_and_all_wake_when_it_passes() -> None:
    log = Log()
    applied = watcher(log)
    waits = [asyncio.create_task(applied.wait(Token({0: 20 + i % 3}), 5)) for i in range(200)]
    await asyncio.sleep(0.2)
    assert not any(w.done() for w in waits) and applied.waiting == 200
    reads_while_waiting = log.reads
    assert reads_while_waiting < 40  # ~one read per 10 ms, whatever the number of waiters
    log.at[0] = 23
    assert all(await asyncio.gather(*waits))
    assert applied.waiting == 0
    await asyncio.sleep(0.05)
    assert applied._reader is None or applied._reader.done()  # nobody waits: no reads
    await applied.close()


async def test_a_wait_ends_at_its_time_and_says_so() -> None:
    applied = watcher(Log())
    started = time.monotonic()
    assert not await applied.wait(Token({1: 50}), 0.2)
    assert 0.19 <= time.monotonic() - started < 1.0
    await applied.close()


async def test_an_unreadable_group_lets_waits_time_out_and_recovers() -> None:
    log = Log()
    applied = watcher(log)
    log.failing = True
    assert not await applied.wait(Token({0: 11}), 0.1)
    log.failing, log.at[0] = False, 11
    assert await applied.wait(Token({0: 11}), 1)
    await applied.close()


@pytest.mark.parametrize("positions", [{0: 101}, {7: 1}])
async def test_a_token_past_the_end_or_of_no_partition_is_refused(
    positions: dict[int, int],
) -> None:
    with pytest.raises(Beyond):
        await watcher(Log()).wait(Token(positions), 1)


async def test_one_waiter_more_than_allowed_is_refused_at_once() -> None:
    applied = watcher(Log(), max_waiting=2)
    waits = [asyncio.create_task(applied.wait(Token({0: 50}), 1)) for _ in range(2)]
    await asyncio.sleep(0.05)
    with pytest.raises(TooManyWaiting):
        await applied.wait(Token({0: 50}), 1)
    for w in waits:
        w.cancel()
    await asyncio.gather(*waits, return_exceptions=True)
    assert applied.waiting == 0
    await applied.close()


async def test_what_is_known_is_read_in_the_background_and_never_goes_backwards() -> None:
    log = Log()
    applied = watcher(log)
    assert applied.known() == {}  # nothing read yet: a token of nothing, never waited for
    await asyncio.sleep(0.01)
    assert applied.known() == {0: 10, 1: 5}
    log.at = {0: 4, 1: 6}
    await asyncio.sleep(0.06)
    applied.known()
    await asyncio.sleep(0.01)
    assert applied.known() == {0: 10, 1: 6}
    assert log.reads == 2
    await applied.close()


async def test_ends_read_a_moment_ago_never_refuse_a_token_the_topic_has_reached_since() -> None:
    log = Log()
    applied = watcher(log, idle=60)
    assert await applied.wait(Token({0: 50}), 0.05) is False  # reads the ends: 100
    log.end[0] = 200  # the topic grew; the ends read above are not older than `idle`
    assert await applied.wait(Token({0: 150}), 0.05) is False  # waited for, not refused
    with pytest.raises(Beyond):
        await applied.wait(Token({0: 201}), 0.05)
    await applied.close()


async def test_a_domain_wait_ends_when_the_view_shows_the_thread_and_message() -> None:
    from services.applied import Sightings
    from services.query import Scope
    from testkit.memory import MemoryThreadStore
    from testkit.threads import created, message, state_of

    log, store = Log(), MemoryThreadStore()
    applied = watcher(log)
    sightings = Sightings(applied)
    mine, theirs = Scope(("org_1",)), Scope(("org_2",))
    waits = [
        asyncio.create_task(sightings.wait(store, mine, ("t", "m1"), 5)),
        asyncio.create_task(sightings.wait(store, mine, ("t", None), 5)),
        asyncio.create_task(sightings.wait(store, theirs, ("t", None), 0.3)),
    ]
    await asyncio.sleep(0.1)
    assert not any(w.done() for w in waits) and applied.waiting == 3
    await store.save([(state_of(created("t"), message("t", 1)), None)])
    assert await asyncio.gather(*waits) == [True, True, False]  # never another tenant's
    assert applied.waiting == 0 and sightings._groups == {}
    assert await sightings.wait(store, mine, ("t", "m1"), 0)  # shown: at once
    await applied.close()
