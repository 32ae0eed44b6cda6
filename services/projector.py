"""Applies a batch of Kafka records to the store: decode, fold per thread, write once.

What can go wrong, and what each gets (docs/projector.md, "The projector", says it for operators):

- **A record that breaks the contract** (decoding, bounds, a conflicting ``thread.created``):
  a rejection, dead-lettered with the batch's commit. Nothing else waits for it.
- **A revision conflict** (another writer changed a thread since it was loaded): only the
  threads that conflicted are reloaded and refolded, after a short jittered pause. Which ones
  conflicted is read back by the write's token (``wid``), not guessed from revision numbers.
- **A transient store error** (network, server selection, an election, a time limit): the
  batch waits with exponential backoff for as long as it lasts; nothing is skipped.
- **Views this projector must not write** (``targets()`` raises :class:`Refused`: a view
  built by another fold version): the batch waits, with the same backoff, writing and
  committing nothing, logged at ERROR once per reason and exposed as :attr:`Projector.refused`
  (readiness) at once; when the views change (a swap to a view of this fold version) it goes
  on from where it stalled, so the view stays exact.
- **A permanent write error** (the store refuses a thread's document for good: over 16 MB,
  invalid): the batch's writes are retried one thread at a time to find which; each refused
  thread has its events of the batch dead-lettered (``write_failed``) and the rest commit.
  Redriving them after a fix gives the exact view, because the fold depends only on the set of
  events. But when more than half of the batch's threads fail that way (two at least), or the
  store takes no write at all (the store's ``probe``), it is an outage or a bug, not bad data:
  the batch stalls and retries, logged at ERROR and counted as ``failed``, and the projector's
  readiness reports it after a while.

Every path ends with the batch durable in the store (or its records dead-lettered), so the
caller commits its offsets; none of them raises out of :meth:`Projector.handle` but
cancellation. A kill -9 at any step (between the bulk write and the token read-back, in the
middle of the one-by-one writes, before the commit) leaves the offsets uncommitted: the batch
comes again, every thread is refolded from what the store holds, threads already written fold
to no change, and a refused thread is refused again, so the next owner ends where this one
would have.

Why this module is longer than ~200 lines: every failure path of a batch (above) ends in the
same commit, and the argument that a kill -9 anywhere leaves a recoverable state reads across
all of them; the paths share the retry state of one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from uuid import uuid4

from services.decoding import DEFAULT_BOUNDS, Bounds, Headers, Rejected, Unknown, decode
from services.events import Event, LogPosition, MessageAdded, ThreadCreated
from services.ports import Stored, ThreadWriter, WriteConflict
from services.projection import ThreadState, create_conflict, creation_of, first_creation, fold
from services.projection import log_order as _log_order

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """A consumed Kafka record, as the projector needs it (and the dead-letter path keeps it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp: int = -1  # the broker timestamp, ms (-1: unknown)


Dead = list[tuple[Record, Rejected]]


@dataclass(frozen=True)
class Outcome:
    """What became of a batch once its effects on the store are durable."""

    applied: int  # events folded into the view
    unknown: Counter[str]  # well-formed events of types this service does not know, by type
    rejected: Dead  # for the dead-letter topic, with the reason
    retries: Counter[str] = field(default_factory=Counter)  # conflict, unavailable, failed


# the views a batch is written to, looked up for each batch after its records were fetched
Targets = Callable[[], Awaitable[Sequence[ThreadWriter]]]


class Refused(Exception):
    """Raised by a :data:`Targets`: this projector must not write the views it would hand out
    (they were built by another fold version). Not a store failure: the message says what to
    do."""


def only(store: ThreadWriter) -> Targets:
    async def targets() -> Sequence[ThreadWriter]:
        return [store]

    return targets


Items = dict[str, list[tuple[Record, Event]]]  # per thread, its events with their records


def _counts(event: Event) -> bool:
    """Whether the event changes the activity document alone (services.documents)."""
    return isinstance(event, MessageAdded)


@dataclass
class _Pass:
    """What one attempt at writing the pending threads to one store found."""

    written: int = 0  # threads whose document had to change
    conflicted: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)  # thread -> why the store refused it
    creates: dict[str, Dead] = field(default_factory=dict)  # conflicting creates per thread


class Projector:
    """Folds batches of records into the thread store.

    Args:
        targets: the views to write, asked again for every batch (and every retry): the live
            view, and during a swap the next one too (see consumers.swap for why a batch must
            ask after its records were fetched).
        max_backoff: the longest pause between retries while the store is unreachable.
        bounds: what a record may be (services.decoding).
        on_retry: told each retry's cause as it happens (metrics: a stalled batch never ends,
            so its retries cannot wait for its outcome to be counted).
    """

    def __init__(
        self,
        targets: Targets,
        max_backoff: float = 10.0,
        bounds: Bounds = DEFAULT_BOUNDS,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.targets = targets
        self.max_backoff = max_backoff
        self.bounds = bounds
        self.on_retry = on_retry
        # time.time() when the current run of failing store attempts began (readiness)
        self.failing_since: float | None = None
        self.refused: str | None = None  # why targets() refuses now (readiness), or None
        self._stores: Sequence[ThreadWriter] = ()  # the views targets() last handed out

    async def handle(self, records: Sequence[Record]) -> Outcome:
        """Apply ``records`` to the store; return once the writes are durable.

        The caller may then commit the batch's offsets, with the rejected records sent to the
        dead-letter topic.
        """
        items: Items = defaultdict(list)
        rejected: Dead = []
        unknown: Counter[str] = Counter()
        for record in records:
            decoded = decode(
                record.key, record.value, record.headers, record.timestamp, self.bounds
            )
            if isinstance(decoded, Rejected):
                rejected.append((record, decoded))
            elif isinstance(decoded, Unknown):
                unknown[decoded.type] += 1
            else:
                decoded.at(LogPosition(record.timestamp, record.partition, record.offset))
                items[decoded.subject].append((record, decoded))
        retries: Counter[str] = Counter()
        dead = await self._apply(items, retries)
        applied = sum(len(batch) for batch in items.values()) - len(dead)
        return Outcome(applied, unknown, rejected + dead, retries)

    async def _apply(self, items: Items, retries: Counter[str]) -> Dead:
        """Write every thread of ``items``; return the records that must be dead-lettered."""
        pending, dead = dict(items), Dead()
        creates: dict[str, Dead] = {}
        delay, conflicts = 0.1, 0
        while pending:
            try:
                stores = await self._targets()
                passes = await asyncio.gather(
                    *(self._write(store, pending, i == 0) for i, store in enumerate(stores))
                )
            except Refused:  # told by _targets; nothing was written
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            except Exception as exc:  # noqa: BLE001 - the batch waits; it is never skipped
                level = logging.WARNING if self._transient(exc) else logging.ERROR
                log.log(level, "store unavailable, retrying in %.1fs: %r", delay, exc)
                delay = await self._back_off("unavailable", delay, retries)
                continue
            if passes:
                creates.update(passes[0].creates)
            failed = {t: why for p in passes for t, why in p.failed.items()}
            if failed and await self._outage(stores, passes, failed):
                log.error(
                    "the store refused %d of the batch's threads (%s): an outage or a bug, not "
                    "bad data; retrying in %.1fs",
                    len(failed),
                    next(iter(failed.values())),
                    delay,
                )
                delay = await self._back_off("failed", delay, retries)
                continue
            for thread_id, why in failed.items():
                log.error(
                    "thread %s: the store refused its write for good; its %d events of this "
                    "batch go to the dead-letter topic: %s",
                    thread_id,
                    len(pending[thread_id]),
                    why,
                )
                dead += [
                    (record, Rejected("write_failed", why)) for record, _ in pending[thread_id]
                ]
                creates.pop(thread_id, None)
            conflicted = set().union(*(p.conflicted for p in passes)) - set(failed)
            pending = {t: pending[t] for t in conflicted}
            if conflicted:
                self._retry("conflict", retries)
                conflicts += 1
                log.info("write conflict on %d threads, reloading them", len(conflicted))
                await asyncio.sleep(random.uniform(0, min(1.0, 0.01 * 2**conflicts)))
        self.failing_since = None
        return dead + [rejection for refused in creates.values() for rejection in refused]

    async def _targets(self) -> Sequence[ThreadWriter]:
        """The views to write; a refusal is logged when its reason is new, and kept in
        :attr:`refused` until targets() hands out views again."""
        try:
            stores = await self.targets()
        except Refused as refusal:
            if str(refusal) != self.refused:
                log.error("not writing; the batch waits: %s", refusal)
            self.refused = str(refusal)
            raise
        if self.refused is not None:
            log.info("writing again; no longer refused: %s", self.refused)
            self.refused = None
        self._stores = stores
        return stores

    def _transient(self, exc: BaseException) -> bool:
        """Whether the views last handed out call ``exc`` transient (for the log's level)."""
        return any(store.transient(exc) for store in self._stores)

    async def check(self) -> str | None:
        """Ask targets() once, writing nothing: why this projector may not write now, or None.
        The readiness probe asks while a refusal stands, so that an idle projector turns ready
        once the views change."""
        with contextlib.suppress(Refused):
            await self._targets()
        return self.refused

    def _retry(self, cause: str, retries: Counter[str]) -> None:
        retries[cause] += 1
        if self.on_retry is not None:
            self.on_retry(cause)

    async def _back_off(self, cause: str, delay: float, retries: Counter[str]) -> float:
        """Count a failed attempt of the batch, wait ``delay``; the next delay, doubled."""
        self._retry(cause, retries)
        if self.failing_since is None:
            self.failing_since = time.time()
        await asyncio.sleep(delay)
        return min(delay * 2, self.max_backoff)

    @staticmethod
    async def _outage(
        stores: Sequence[ThreadWriter], passes: Sequence[_Pass], failed: dict[str, str]
    ) -> bool:
        """Whether refused writes mean the store (or this code) is broken, not the data."""
        written = max(p.written for p in passes)
        if len(failed) >= 2 and 2 * len(failed) > written:
            return True
        try:
            for store in stores:
                await store.probe()
        except Exception:  # noqa: BLE001 - any failure to take a tiny write is an outage
            return True
        return False

    @staticmethod
    async def _write(store: ThreadWriter, items: Items, check_creates: bool) -> _Pass:
        """Load, fold and write the threads of ``items`` to one view.

        Creates are judged against the creation stored (and each other) in log order; the
        first view written decides which are dead-lettered, and every view folds the same:
        a losing create changes nothing.
        """
        messages = {t for t, batch in items.items() if any(_counts(e) for _, e in batch)}
        others = [t for t, batch in items.items() if not all(_counts(e) for _, e in batch)]
        stored = await store.load(list(items), threads=others, activity=list(messages))
        found = _Pass()
        writes: list[tuple[ThreadState, Stored | None]] = []
        for thread_id, batch in items.items():
            current = stored.get(thread_id)
            state = current.state if current else None
            creation = state.creation if state else None
            kept: list[Event] = []
            for record, event in sorted(batch, key=lambda item: _log_order(item[1])):
                if isinstance(event, ThreadCreated):
                    if why := create_conflict(creation, event):
                        if check_creates:
                            refused = found.creates.setdefault(thread_id, [])
                            refused.append((record, Rejected("create_conflict", why)))
                        continue
                    creation = first_creation(creation, creation_of(event))
                kept.append(event)
            folded = fold(state, kept) if kept else state
            if folded is not None and (current is None or folded != current.state):
                writes.append((folded, current))  # redeliveries: none but their message ids
        found.written = len(writes)
        try:
            await store.save(writes, uuid4().hex)
        except WriteConflict as conflict:
            found.conflicted = conflict.threads
        except Exception as exc:  # noqa: BLE001 - told apart below
            if store.transient(exc):
                raise
            await Projector._one_by_one(store, writes, found)
        return found

    @staticmethod
    async def _one_by_one(
        store: ThreadWriter, writes: list[tuple[ThreadState, Stored | None]], found: _Pass
    ) -> None:
        """After a bulk write the store refused: find the threads it refuses on their own.

        Writes of the bulk that went through show up here as conflicts (their revision moved),
        which reload and find nothing left to write.
        """
        for write in writes:
            try:
                await store.save([write])
            except WriteConflict:
                found.conflicted.add(write[0].id)
            except Exception as exc:  # noqa: BLE001
                if store.transient(exc):
                    raise
                found.failed[write[0].id] = f"{type(exc).__name__}: {str(exc)[:300]}"
