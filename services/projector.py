"""Applies a batch of Kafka records to the store: decode, fold per thread, write once."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pymongo.errors import PyMongoError

from services.decoding import Headers, Rejected, Unknown, decode
from services.events import Event
from services.projection import fold
from services.store import MongoThreadStore, WriteConflict

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
    timestamp: int = 0


@dataclass(frozen=True)
class Outcome:
    """What became of a batch once its effects on the store are durable."""

    applied: int
    unknown: Counter[str]  # well-formed events of types this service does not know, by type
    rejected: list[tuple[Record, Rejected]]  # for the dead-letter topic, with the reason
    retries: Counter[str] = field(default_factory=Counter)  # "conflict", "unavailable"
    newest: datetime | None = None  # the latest time of an applied event


# the views a batch is written to, looked up for each batch after its records were fetched
Targets = Callable[[], Awaitable[Sequence[MongoThreadStore]]]


def only(store: MongoThreadStore) -> Targets:
    async def targets() -> Sequence[MongoThreadStore]:
        return [store]

    return targets


class Projector:
    """Folds batches of records into the thread store.

    Args:
        targets: the views to write, asked again for every batch (and every retry): the live
            view, and during a swap the next one too (see consumers.swap for why a batch must
            ask after its records were fetched).
        max_backoff: the longest pause between retries while the store is unreachable.
    """

    def __init__(self, targets: Targets, max_backoff: float = 10.0) -> None:
        self.targets = targets
        self.max_backoff = max_backoff

    async def handle(self, records: Sequence[Record]) -> Outcome:
        """Apply ``records`` to the store; return once the writes are durable.

        Retries store outages with backoff for as long as they last (consumption waits), so
        the caller may commit the batch's offsets, with its rejected records sent to the
        dead-letter topic, as soon as this returns.
        """
        events: dict[str, list[Event]] = defaultdict(list)
        rejected: list[tuple[Record, Rejected]] = []
        unknown: Counter[str] = Counter()
        for record in records:
            decoded = decode(record.key, record.value, record.headers)
            if isinstance(decoded, Rejected):
                rejected.append((record, decoded))
            elif isinstance(decoded, Unknown):
                unknown[decoded.type] += 1
            else:
                events[decoded.subject].append(decoded)
        retries = await self._retrying(events)
        applied = sum(len(batch) for batch in events.values())
        times = [event.time for batch in events.values() for event in batch]
        return Outcome(applied, unknown, rejected, retries, max(times, default=None))

    async def _retrying(self, events: dict[str, list[Event]]) -> Counter[str]:
        delay, retries = 0.1, Counter[str]()
        while True:
            try:
                stores = await self.targets()
                await asyncio.gather(*(self._write(store, events) for store in stores))
                return retries
            except WriteConflict as exc:
                retries["conflict"] += 1
                log.info("write conflict, reloading: %s", exc)
            except PyMongoError as exc:
                retries["unavailable"] += 1
                log.warning("store unavailable, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)

    @staticmethod
    async def _write(store: MongoThreadStore, events: dict[str, list[Event]]) -> None:
        if not events:
            return
        stored = await store.load(list(events))
        writes = []
        for thread_id, batch in events.items():
            current = stored.get(thread_id)
            state = fold(current.state if current else None, batch)
            if current is None or state != current.state:  # pure redeliveries write nothing
                writes.append((state, current.rev if current else None))
        await store.save(writes)
