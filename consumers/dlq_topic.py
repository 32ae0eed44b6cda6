"""The dead-letter topic as threadview-dlq reads it: naming its records, selecting them, and
reading them one fetch at a time.

The topic is read outside any consumer group (nothing is committed, the live projector is
untouched) and read committed — dead letters are published in the projector's transactions,
so records of aborted transactions are never shown — from each partition's first offset to its
end offset captured at the start. A record is addressed as ``OFFSET`` when the topic has one
partition (the project creates it so) and as ``PARTITION:OFFSET`` otherwise;
``PARTITION:OFFSET`` always works.

Records are yielded one by one as they are read, never collected: memory holds one fetch
(:data:`FETCH_RECORDS`), whatever the selection's size.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.replay import read_range, to_record
from consumers.topics import Offsets, reader, topic_offsets
from services import redrive
from services.projector import Record
from services.settings import Settings

FETCH_RECORDS = 500


class DlqError(Exception):
    """A request that cannot be served, with a one-line message for the operator."""


@dataclass(frozen=True)
class Topic:
    """The dead-letter topic as read at the start: its partitions and their offsets."""

    name: str
    offsets: Offsets

    @property
    def partitions(self) -> list[int]:
        return sorted(self.offsets.end)

    @property
    def single(self) -> bool:
        return len(self.offsets.end) == 1

    def address(self, record: Record) -> str:
        """How the operator names a record: its offset, prefixed by its partition if needed."""
        return str(record.offset) if self.single else f"{record.partition}:{record.offset}"

    def address_width(self) -> int:
        """How wide the widest address can be."""
        last = max(self.offsets.end.values(), default=0)
        return len(str(last)) if self.single else len(f"{max(self.partitions, default=0)}:{last}")

    def parse(self, text: str) -> tuple[int, int]:
        """``OFFSET`` (one partition only) or ``PARTITION:OFFSET`` as (partition, offset)."""
        parts = text.strip().split(":")
        if len(parts) == 1 and self.single:
            parts = [str(self.partitions[0]), parts[0]]
        elif len(parts) == 1:
            raise DlqError(
                f"{text!r}: {self.name} has {len(self.partitions)} partitions, "
                "so give PARTITION:OFFSET"
            )
        if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
            raise DlqError(f"bad offset {text!r}: expected OFFSET or PARTITION:OFFSET")
        partition, offset = int(parts[0]), int(parts[1])
        if partition not in self.offsets.end:
            raise DlqError(f"{self.name} has no partition {partition} (it has {self.partitions})")
        return partition, offset


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command acts on: by reason, and by position, in the order of
    (partition, offset) — on a one-partition topic, simply an offset range."""

    reason: str | None = None
    first: tuple[int, int] | None = None
    last: tuple[int, int] | None = None

    def span(self, partition: int, begin: int, end: int) -> tuple[int, int] | None:
        """The offsets of ``partition`` to read, [start, stop), or None for none."""
        start, stop = begin, end
        if self.first is not None:
            if partition < self.first[0]:
                return None
            if partition == self.first[0]:
                start = max(start, self.first[1])
        if self.last is not None:
            if partition > self.last[0]:
                return None
            if partition == self.last[0]:
                stop = min(stop, self.last[1] + 1)
        return (start, stop) if start < stop else None

    def matches(self, record: Record) -> bool:
        return self.reason is None or self.reason.casefold() in redrive.reason(record).casefold()


async def _open(settings: Settings) -> tuple[AIOKafkaConsumer, Topic]:
    consumer = reader(settings, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        offsets = await topic_offsets(consumer, settings.dlq_topic)
        return consumer, Topic(settings.dlq_topic, offsets)
    except BaseException:
        await consumer.stop()
        raise


async def records(
    consumer: AIOKafkaConsumer, topic: Topic, selection: Selection
) -> AsyncIterator[Record]:
    """The selected dead letters, partition by partition, in offset order, as they are read:
    at most one fetch (FETCH_RECORDS) is held at a time, whatever the selection's size."""
    for partition in topic.partitions:
        span = selection.span(
            partition, topic.offsets.begin[partition], topic.offsets.end[partition]
        )
        if span is None:
            continue
        tp = TopicPartition(topic.name, partition)
        async for batch in read_range(consumer, tp, *span, FETCH_RECORDS):
            for raw in batch:
                record = to_record(raw)
                if selection.matches(record):
                    yield record


@contextlib.asynccontextmanager
async def selected(
    settings: Settings, reason: str | None, first: str | None, last: str | None
) -> AsyncIterator[tuple[Topic, AsyncIterator[Record]]]:
    """The topic and its selected dead letters, to be read while the block runs (a bad
    ``--from`` or ``--to`` is refused before anything is read)."""
    consumer, topic = await _open(settings)
    try:
        selection = Selection(
            reason,
            topic.parse(first) if first is not None else None,
            topic.parse(last) if last is not None else None,
        )
        yield topic, records(consumer, topic, selection)
    finally:
        await consumer.stop()


_selected = selected  # the name tests/integration/test_dlq_output.py knows it by


async def one(settings: Settings, text: str) -> tuple[Topic, Record]:
    """The dead letter ``text`` names (OFFSET or PARTITION:OFFSET), and the topic."""
    consumer, topic = await _open(settings)
    try:
        partition, offset = topic.parse(text)
        begin, end = topic.offsets.begin[partition], topic.offsets.end[partition]
        if not begin <= offset < end:
            held = f"offsets {begin} to {end - 1}" if begin < end else "no records"
            raise DlqError(f"no dead letter at {text}: partition {partition} holds {held}")
        tp = TopicPartition(topic.name, partition)
        async for batch in read_range(consumer, tp, offset, offset + 1, 1):
            for raw in batch:
                if raw.offset == offset:
                    return topic, to_record(raw)
        raise DlqError(
            f"no dead letter at {text}: that offset holds a transaction marker or an aborted record"
        )
    finally:
        await consumer.stop()
