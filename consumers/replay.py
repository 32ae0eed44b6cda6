"""Replays a range of the log: read a partition between two offsets, decode, fold.

Used by the rebuild (a whole partition folded in memory, then written once per thread) and by
the swap's catch-up (small ranges, applied through the projector's load-fold-save).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from consumers.topics import reader
from services.bootstrap import connect
from services.decoding import DEFAULT_BOUNDS, Bounds, Rejected, Unknown, decode
from services.events import Event, LogPosition
from services.projection import ThreadState, fold
from services.projector import Record
from services.settings import Settings
from services.store import MongoThreadStore

FETCH = {
    "max_partition_fetch_bytes": 32 * 1024 * 1024,
    "fetch_max_bytes": 64 * 1024 * 1024,
    "fetch_max_wait_ms": 100,
}
INSERT_CHUNK = 1000


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
    threads: int = 0  # documents written

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
) -> None:
    """Fold ``records`` into ``states`` (one fold per thread per call), counting outcomes.

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


# --- the rebuild's worker processes: one partition at a time each ---

_progress: Any = None  # a multiprocessing queue of (partition, records read since last report)


def init_worker(progress: Any, parent: int) -> None:
    """Set up a worker of the rebuild process ``parent``, which may die before this runs."""
    global _progress
    _progress = progress

    def exit_with_parent() -> None:  # a killed rebuild must not leave workers writing on
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=exit_with_parent, daemon=True).start()


def rebuild_partition(*job: Any) -> dict[str, int]:
    """Run :func:`load_partition` in this worker process (arguments as there)."""
    return asyncio.run(load_partition(*job))


async def load_partition(
    settings: Settings,
    collection: str,
    partition: int,
    start: int,
    stop: int,
    as_of: datetime | None,
) -> dict[str, int]:
    """Fold one partition's records in ``[start, stop)`` and insert every thread once.

    All events of a thread share a partition, so the partition's states are final once it is
    read; memory holds one partition's threads. Threads already in the view (a resumed
    rebuild writes the same documents again) are left as they are.
    """
    tally = Tally()
    states: dict[str, ThreadState] = {}
    consumer = reader(settings, **FETCH)
    await consumer.start()
    try:
        tp, bounds = TopicPartition(settings.topic, partition), Bounds.from_settings(settings)
        async for records in read_range(consumer, tp, start, stop, max_records=10_000):
            fold_records(states, records, as_of, tally, bounds)
            if _progress is not None:
                _progress.put((partition, len(records)))
    finally:
        await consumer.stop()
    client, database = connect(settings)
    try:
        store = MongoThreadStore(database, collection=collection)
        found = list(states.values())
        chunks = [found[i : i + INSERT_CHUNK] for i in range(0, len(found), INSERT_CHUNK)]
        limit = asyncio.Semaphore(2)

        async def insert(chunk: list[ThreadState]) -> None:
            async with limit:
                await store.insert_new(chunk)

        await asyncio.gather(*(insert(chunk) for chunk in chunks))
        tally.threads = len(found)
    finally:
        await client.close()
    return tally.as_dict()


def worker_context() -> Any:
    """Fresh interpreters: forking a process that runs an event loop and drivers is unsafe."""
    return multiprocessing.get_context("spawn")
