"""Replays a range of the log: read a partition between two offsets, decode, fold.

Used by the rebuild (a partition folded in memory-bounded chunks, each merged into the view)
and by the swap's catch-up (small ranges, applied through the projector's load-fold-save).

Why this module is longer than ~200 lines: the rebuild's replay of one partition (chunked folds,
checkpoints, the absorb, the retries) is one protocol whose kill -9 argument spans the
checkpoint and the absorb.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import resource
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from consumers.topics import reader
from services import failpoints
from services.decoding import DEFAULT_BOUNDS, Bounds, Rejected, Unknown, decode
from services.events import Event, LogPosition
from services.mongo.bootstrap import connect
from services.mongo.store import MongoThreadStore, transient
from services.mongo.views import MongoViewCatalog
from services.ports import ThreadStore
from services.projection import ThreadState, fold
from services.projector import Record
from services.settings import Settings

T = TypeVar("T")
log = logging.getLogger(__name__)

FETCH = {
    "max_partition_fetch_bytes": 8 * 1024 * 1024,
    "fetch_max_bytes": 16 * 1024 * 1024,
    "fetch_max_wait_ms": 100,
}
STORE_PATIENCE = 300.0  # seconds a worker waits for an unavailable store before it fails
READ_BATCH = 5000  # records folded between two looks at the memory budget
WRITE_CHUNK = 1000  # states merged into the view per round trip

# What a thread's state costs in a worker's memory, calibrated with tracemalloc on the bench
# log (bench/rebuild_log.py): ~1,400 bytes for a thread with its creation and registers, ~85
# for each message id besides its characters; the values' own characters come on top. SLACK
# covers what the allocator keeps beside what is live.
STATE_BYTES, MESSAGE_BYTES, SLACK = 1500, 90, 1.5


def to_record(raw: ConsumerRecord[bytes, bytes]) -> Record:
    return Record(
        topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        key=raw.key,
        value=raw.value,
        headers=[(name, value or b"") for name, value in raw.headers],
        timestamp=raw.timestamp,
    )


async def read_range(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, stop: int, max_records: int
) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """The committed records of ``tp`` from ``start`` up to (not including) ``stop``."""
    consumer.assign([tp])
    consumer.seek(tp, start)
    while start < stop and await consumer.position(tp) < stop:
        fetched = await consumer.getmany(tp, timeout_ms=1000, max_records=max_records)
        records = [r for r in fetched.get(tp, []) if r.offset < stop]
        if records:
            yield records


@dataclass
class Tally:
    """What became of the records read."""

    records: int = 0
    events: int = 0  # folded
    later: int = 0  # events after --as-of: left out
    unknown: int = 0  # of types this service does not know: skipped, as live
    rejected: int = 0  # bad records: the live projector sent them to the dead-letter topic
    threads: int = 0  # states written (a thread met in several chunks or partitions: several)
    flushes: int = 0  # chunks merged into the view (one per partition, if memory allows)
    merged: int = 0  # states merged into a stored document (met before, or on another partition)

    def add(self, other: Tally) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def fold_records(
    states: dict[str, ThreadState],
    records: list[ConsumerRecord[bytes, bytes]],
    as_of: datetime | None,
    tally: Tally,
    bounds: Bounds = DEFAULT_BOUNDS,
) -> list[str]:
    """Fold ``records`` into ``states`` (one fold per thread per call), counting outcomes;
    return the threads it folded.

    The same decoding, bounds and positions as the live projector's, so a rebuild agrees with
    it; a conflicting ``thread.created``, which the live projector dead-letters, changes nothing
    in the fold either way.
    """
    events: dict[str, list[Event]] = defaultdict(list)
    for raw in records:
        headers = [(k, v or b"") for k, v in raw.headers]
        decoded = decode(raw.key, raw.value, headers, raw.timestamp, bounds)
        if isinstance(decoded, Rejected):
            tally.rejected += 1
        elif isinstance(decoded, Unknown):
            tally.unknown += 1
        elif as_of is not None and decoded.time > as_of:
            tally.later += 1
        else:
            decoded.at(LogPosition(raw.timestamp, raw.partition, raw.offset))
            events[decoded.subject].append(decoded)
    tally.records += len(records)
    for thread_id, batch in events.items():
        states[thread_id] = fold(states.get(thread_id), batch)
        tally.events += len(batch)
    return list(events)


class Footprint:
    """An estimate of the bytes a worker's states take, kept up to date as they grow."""

    def __init__(self) -> None:
        self.bytes = 0
        self._of: dict[str, int] = {}

    def update(self, states: dict[str, ThreadState], touched: list[str]) -> None:
        for thread_id in touched:
            state = states[thread_id]
            now = int(SLACK * (STATE_BYTES + _message_bytes(state) + _value_bytes(state)))
            self.bytes += now - self._of.get(thread_id, 0)
            self._of[thread_id] = now

    def clear(self) -> None:
        self.bytes = 0
        self._of.clear()


def _message_bytes(state: ThreadState) -> int:
    if not state.message_ids:
        return 0
    sample = next(iter(state.message_ids))  # ids of one thread are alike; the cost is per id
    return len(state.message_ids) * (MESSAGE_BYTES + len(sample))


def _value_bytes(state: ThreadState) -> int:
    values: list[Any] = [r.value for r in (state.title, state.metadata, state.space_ids) if r]
    if state.creation is not None:
        values.append(state.creation.initial)
    return sum(len(repr(value)) for value in values)


# --- the rebuild's worker processes: one partition at a time each ---

_progress: Any = None  # a multiprocessing queue of (partition, records read since last report)
_parent: int | None = None  # the rebuild's process


def init_worker(progress: Any, parent: int) -> None:
    """Set up a worker of the rebuild process ``parent``, which may die before this runs."""
    global _progress, _parent
    _progress, _parent = progress, parent

    def exit_with_parent() -> None:  # a killed rebuild must not leave workers writing on
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=exit_with_parent, daemon=True).start()


def rebuild_partition(*job: Any) -> dict[str, Any]:
    """Run :func:`load_partition` in this worker process (arguments as there).

    The cyclic garbage collector is off: the worker holds up to its budget of fold states
    (millions of objects, none in a cycle), which every full collection would walk again,
    and each flush collects once instead (:func:`load_partition`)."""
    gc.disable()
    try:
        return asyncio.run(load_partition(*job))
    finally:
        gc.enable()


@dataclass(frozen=True)
class Job:
    """One partition of a rebuild, from its checkpoint to the rebuild's end offset."""

    view: str  # the view's name (its catalog entry holds the checkpoints)
    collection: str
    partition: int
    start: int  # the checkpoint: the first offset not yet merged into the view
    stop: int
    as_of: datetime | None
    budget: int  # bytes of fold states held before they are merged into the view
    counts: dict[str, int]  # the partition's tally up to ``start``


async def load_partition(settings: Settings, job: Job) -> dict[str, Any]:
    """Fold one partition's records in ``[job.start, job.stop)`` into the view, in chunks.

    The states are held until they pass the memory budget, then merged into the stored
    documents (:meth:`~services.mongo.store.MongoThreadStore.absorb`), and only then is the
    checkpoint (the next offset, the tally so far) written. A kill -9 anywhere leaves a
    checkpoint at or behind what was merged, never ahead of it: a resumed rebuild reads the
    records after the checkpoint again, and merging what was merged already changes nothing.
    Memory holds one chunk's threads, not the partition's; a thread whose records sit on other
    partitions too (the topic gained partitions, producers hash differently) is merged with
    what their workers wrote, under the store's revision check. Returns the partition's tally
    (``counts``) and the worker's peak RSS (``peak_rss_mb``).
    """
    tally = Tally(**job.counts)
    states: dict[str, ThreadState] = {}
    footprint = Footprint()
    client, database = connect(settings)
    store = MongoThreadStore(database, collection=job.collection)
    catalog = MongoViewCatalog(database)

    async def flush(offset: int) -> None:
        tally.add(await retrying(lambda: _absorb(store, states, job.partition)))
        failpoints.reach("rebuild.flushed", _parent)  # merged, checkpoint not yet written
        checkpoint = {"offset": offset, "counts": tally.as_dict()}
        await retrying(
            lambda: catalog.update(job.view, **{f"checkpoint.{job.partition}": checkpoint})
        )
        states.clear()
        footprint.clear()
        gc.collect()  # what cycles the chunk left (the collector is off in workers)

    consumer = reader(settings, **FETCH)
    try:
        await consumer.start()
        tp, bounds = TopicPartition(settings.topic, job.partition), Bounds.from_settings(settings)
        async for records in read_range(consumer, tp, job.start, job.stop, READ_BATCH):
            footprint.update(states, fold_records(states, records, job.as_of, tally, bounds))
            if _progress is not None:
                _progress.put((job.partition, len(records)))
            if footprint.bytes >= job.budget:
                await flush(records[-1].offset + 1)
        await flush(job.stop)
    finally:
        await consumer.stop()
        await client.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # Linux: KiB
    return {"counts": tally.as_dict(), "peak_rss_mb": peak_mb}


async def _absorb(store: ThreadStore, states: dict[str, ThreadState], partition: int) -> Tally:
    """Merge ``states`` into the view; what was written (threads, flushes, merged)."""
    found = list(states.values())
    written = Tally(threads=len(found), flushes=1 if found else 0)
    chunks = [found[i : i + WRITE_CHUNK] for i in range(0, len(found), WRITE_CHUNK)]
    limit = asyncio.Semaphore(2)

    async def write(chunk: list[ThreadState]) -> None:
        async with limit:
            written.merged += (await store.absorb(chunk, partition)).merged

    await asyncio.gather(*(write(chunk) for chunk in chunks))
    return written


async def retrying(work: Callable[[], Awaitable[T]]) -> T:
    """``work()``, again and again while the store's errors are transient (an election, a
    restart, the network), for up to STORE_PATIENCE seconds: a flush and a checkpoint are
    idempotent, and a rebuild should not fail for a store that comes back."""
    delay, waited = 0.5, 0.0
    while True:
        try:
            return await work()
        except Exception as exc:
            if not transient(exc) or waited >= STORE_PATIENCE:
                raise
            log.warning("store unavailable, retrying in %.1fs: %r", delay, exc)
            await asyncio.sleep(delay)
            waited, delay = waited + delay, min(2 * delay, 10.0)


def worker_context() -> Any:
    """Fresh interpreters: forking a process that runs an event loop and drivers is unsafe."""
    return multiprocessing.get_context("spawn")
