"""What the live view is known to hold, and waiting until it holds a consistency token.

One :class:`Applied` per API process watches the projector group's committed offsets (the
projector commits a batch only after its store write, so they are what the view holds); every
request that waits sleeps on it, doing no work of its own: one reader polls the offsets every
``interval`` seconds while anyone waits (and at most every ``idle`` seconds otherwise, for the
token each response carries), and wakes every waiter after each read. Waiting is bounded: at
most ``max_waiting`` requests at a time (one more gets :class:`TooManyWaiting` at once), each
for at most what it asked, capped by the caller.

Offsets only grow, so a token taken from the offsets read *before* a page's store read is one
the page holds: the response's token never claims more than what it was served from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol

from services.consistency import BadToken, Token
from services.query import Scope

log = logging.getLogger(__name__)

Offsets = Mapping[int, int]  # partition -> next offset


class TooManyWaiting(Exception):
    """The process has as many requests waiting as it allows."""


class Beyond(BadToken):
    """A token names positions past the end of the topic (or a partition it lacks)."""


def _past(token: Token, ends: Mapping[int, int]) -> dict[int, int]:
    return {p: o for p, o in token.positions.items() if p not in ends or o > ends[p]}


class Applied:
    """The shared watcher. ``committed`` reads the group's committed offsets, ``ends`` the
    topic's end offsets (asked only for a token ahead of what is applied)."""

    def __init__(
        self,
        committed: Callable[[], Awaitable[dict[int, int]]],
        ends: Callable[[], Awaitable[dict[int, int]]],
        interval: float = 0.05,
        idle: float = 1.0,
        max_waiting: int = 256,
    ) -> None:
        self.committed, self.ends = committed, ends
        self.interval, self.idle, self.max_waiting = interval, idle, max_waiting
        self.offsets: dict[int, int] = {}
        self.read_at = float("-inf")  # time.monotonic() of the last successful read
        self.waiting = 0
        self.followers = 0  # watches (services.watching): they keep the reads going too
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._ends: tuple[float, dict[int, int]] = (float("-inf"), {})
        self._refreshing = False
        self._refresh: asyncio.Task[None] | None = None

    def known(self) -> dict[int, int]:
        """The offsets known applied, at once; when the last read is older than ``idle``, one
        more is started in the background (a request never waits on the broker for this)."""
        if time.monotonic() - self.read_at > self.idle and not self._refreshing:
            self._refreshing = True
            self._refresh = asyncio.create_task(self._read())
        return dict(self.offsets)

    async def wait(self, token: Token, seconds: float) -> bool:
        """Whether the view holds ``token`` within ``seconds`` (False: it ran out).

        Raises:
            Beyond: the token names a position the topic has not reached (or a partition it
                lacks): it can never be applied.
            TooManyWaiting: ``max_waiting`` requests wait already.
        """
        if not token.behind(self.known()):
            return True
        await self._check_ends(token)
        deadline = time.monotonic() + seconds
        with self.waiter():
            while token.behind(self.offsets):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.next_read(), left)
            return True

    @contextlib.contextmanager
    def waiter(self) -> Iterator[None]:
        """One more request waiting while the block runs: the offsets are read every
        ``interval`` meanwhile.

        Raises:
            TooManyWaiting: ``max_waiting`` requests wait already.
        """
        if self.waiting >= self.max_waiting:
            raise TooManyWaiting(f"{self.waiting} requests are waiting already")
        self.waiting += 1
        self._start()
        try:
            yield
        finally:
            self.waiting -= 1

    def next_read(self) -> Coroutine[Any, Any, Literal[True]]:
        """Until the next successful read after this call (a failed one wakes nobody): the
        event is taken now, so a read between this call and the first await still counts."""
        return self._changed.wait()

    async def close(self) -> None:
        for task in (self._reader, self._refresh):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def read_now(self) -> dict[int, int]:
        """The offsets, read now (what is known when the broker does not answer)."""
        await self._read()
        return dict(self.offsets)

    def follow(self) -> None:
        """One more watch: offsets read every ``interval`` while it lasts (:meth:`unfollow`)."""
        self.followers += 1
        self._start()

    def unfollow(self) -> None:
        self.followers -= 1

    def _start(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        """Read while anyone waits; each read wakes every waiter."""
        while self.waiting or self.followers:
            await self._read()
            await asyncio.sleep(self.interval)

    async def _read(self) -> None:
        try:
            found = await self.committed()
        except Exception as exc:  # noqa: BLE001 - waiters time out; the next read may work
            log.warning("could not read the projector's committed offsets: %r", exc)
            return
        finally:
            self._refreshing = False
        for partition, offset in found.items():  # never backwards (a lagging replica, a reset)
            self.offsets[partition] = max(offset, self.offsets.get(partition, 0))
        self.read_at = time.monotonic()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _check_ends(self, token: Token) -> None:
        """Raise Beyond when the token is past the topic's ends, as read now: ends read less
        than ``idle`` ago only ever let a token through (ends only grow)."""
        at, ends = self._ends
        if time.monotonic() - at > self.idle or _past(token, ends):
            ends = await self.ends()
            self._ends = (time.monotonic(), ends)
        if past := _past(token, ends):
            partition, offset = next(iter(sorted(past.items())))
            end = ends.get(partition)
            where = "no such partition" if end is None else f"its end is {end}"
            raise Beyond(f"the token names offset {offset} of partition {partition}: {where}")


Wanted = tuple[str, str | None]  # a thread, and one of its messages (None: the thread alone)


class Shows(Protocol):
    async def shows(self, scope: Scope, wanted: Sequence[Wanted]) -> set[Wanted]: ...


Group = tuple[Shows, dict[Wanted, list["asyncio.Future[None]"]]]  # a view's waiters of a scope


class Sightings:
    """Domain waits, for producers that cannot know offsets (an outbox relay): until the view
    shows thread T (listed, within the caller's scope) and, if named, its message M (counted).
    Each time the watcher reads the offsets, one read per view and scope answers every waiter
    of that view and scope; a waiter counts against the watcher's ``max_waiting``."""

    def __init__(self, applied: Applied) -> None:
        self.applied = applied
        self._groups: dict[tuple[int, Scope], Group] = {}
        self._checker: asyncio.Task[None] | None = None

    async def wait(self, store: Shows, scope: Scope, wanted: Wanted, seconds: float) -> bool:
        """Whether the view shows ``wanted`` within ``seconds``.

        Raises:
            TooManyWaiting: the watcher's ``max_waiting`` requests wait already.
        """
        if wanted in await store.shows(scope, [wanted]):
            return True
        found: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self.applied.waiter():
            group = self._groups.setdefault((id(store), scope), (store, {}))
            group[1].setdefault(wanted, []).append(found)
            if self._checker is None or self._checker.done():
                self._checker = asyncio.create_task(self._check())
            try:
                await asyncio.wait_for(asyncio.shield(found), seconds)
                return True
            except TimeoutError:
                return False
            finally:
                self._forget(store, scope, wanted, found)

    def _forget(
        self, store: Shows, scope: Scope, wanted: Wanted, found: asyncio.Future[None]
    ) -> None:
        group = self._groups.get((id(store), scope))
        if group is None or found not in group[1].get(wanted, []):
            return
        waiters = group[1]
        waiters[wanted].remove(found)
        if not waiters[wanted]:
            del waiters[wanted]
        if not waiters:
            del self._groups[(id(store), scope)]

    async def _check(self) -> None:
        """After each read of the offsets, one look per view and scope for all its waiters."""
        while self._groups:
            await self.applied.next_read()
            for (_, scope), (store, waiters) in list(self._groups.items()):
                try:
                    shown = await store.shows(scope, list(waiters))
                except Exception as exc:  # noqa: BLE001 - the waits time out; looked again next
                    log.warning("could not look for awaited threads: %r", exc)
                    continue
                for item in shown & set(waiters):
                    for future in waiters.get(item, []):
                        if not future.done():
                            future.set_result(None)
