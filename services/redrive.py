"""Re-driving dead letters: what a dead-letter copy says of itself, and sending it back to the
events topic once each. The use case of ``threadview-dlq redrive`` (consumers.dlq), typed on
the ports below: the marks (:class:`RedriveMarks`, services.mongo.redrive_marks) and the events
topic's producer (:class:`Sender`, consumers.dlq_send); the records to re-drive come as any
async iterable (consumers.dlq_topic reads them from the dead-letter topic one fetch at a time).

Once each: every record sent is marked (its :func:`mark_id`, ``<dlq topic>:<partition>:<offset>``,
the same text as the ``threadview.redriven_from`` header it gets), and a marked record is
skipped. Per record :func:`redrive` checks the mark, sends (the sender's producer is idempotent,
``acks=all``), waits for the broker's acknowledgement, and only then writes the mark: a mark
therefore always means "on the topic".

Killed at any point (kill -9 included), a redrive leaves every marked record on the topic, and
at most the one record it was sending sent but unmarked: between the acknowledgement and the
mark, nothing else happens. A rerun sends that record again, which is harmless: the projector's
fold is idempotent (README, "The event contract"), so an event applied twice gives the same
document. A kill before the acknowledgement leaves the record unsent or sent, and unmarked: the
same case. Two redrives at the same time may both send a record; the second mark is dropped
(:meth:`RedriveMarks.add`), the first kept, and both copies fold to the same document.

A copy the projector cut to fit the dead-letter budget (header ``dlq.truncated``) is not the
record: it is never re-driven, only reported; its original is still at
``dlq.topic:partition:offset``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from services.projector import Record

Headers = list[tuple[str, bytes]]

REDRIVEN_FROM = "threadview.redriven_from"
DLQ_PREFIX = "dlq."  # the headers the dead-letter path adds (consumers.dead_letters)
REASON = "dlq.reason"
TRUNCATED = "dlq.truncated"  # consumers.dead_letters.TRUNCATED (tests/unit/test_redrive.py)

REDRIVEN = "re-driven"
WOULD = "would re-drive"
ALREADY = "already re-driven"
SKIPPED_TRUNCATED = "truncated, skipped"


# --- what a dead-letter copy says: its own dlq.* headers ---


def header(record: Record, name: str) -> str | None:
    """The dead-letter header ``name``, as text. The projector's own come last, from the last
    ``dlq.reason`` on: a producer's header of the same name, among the original headers
    before them, is not it (a whole copy of a record carrying its own ``dlq.truncated``
    must still be redriven)."""
    names = [n for n, _ in record.headers]
    start = len(names) - 1 - names[::-1].index(REASON) if REASON in names else 0
    values = [v for n, v in record.headers[start:] if n == name]
    return text(values[-1]) if values else None


def reason(record: Record) -> str:
    return header(record, REASON) or ""


def origin(record: Record) -> str:
    """Where the refused record is: ``topic:partition:offset`` of the events topic."""
    return ":".join(header(record, f"dlq.{n}") or "?" for n in ("topic", "partition", "offset"))


def text(raw: bytes | None) -> str | None:
    """Header values and keys as text, or ``hex:...`` when they are not UTF-8."""
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return f"hex:{raw.hex()}"


def mark_id(record: Record) -> str:
    """The dead letter's name everywhere it is remembered: the mark's id and the header."""
    return f"{record.topic}:{record.partition}:{record.offset}"


def redriven_headers(record: Record, mark: str) -> Headers:
    """The original headers — without the dead-letter path's, and without the mark of an
    earlier redrive of the same event — plus where this copy came from (``mark``, its
    :func:`mark_id`)."""
    kept = [
        (name, value)
        for name, value in record.headers
        if not name.startswith(DLQ_PREFIX) and name != REDRIVEN_FROM
    ]
    return [*kept, (REDRIVEN_FROM, mark.encode())]


# --- the ports ---


@dataclass(frozen=True)
class Target:
    """Where a re-driven record landed on the events topic."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True)
class Mark:
    """A dead letter re-driven: its :func:`mark_id`, where it was sent, why it had failed."""

    id: str
    target: Target
    reason: str
    redriven_at: datetime


class RedriveMarks(Protocol):
    """The dead letters re-driven so far."""

    async def find(self, mark_id: str) -> Target | None:
        """Where the dead letter ``mark_id`` was re-driven to, or None if it was not."""
        ...

    async def add(self, mark: Mark) -> None:
        """Remember ``mark``; a mark of the same id already there (a redrive running at the
        same time sent the record too) is kept, and that is no error."""
        ...


class Sender(Protocol):
    """The events topic, as a redrive writes to it."""

    async def send(self, key: bytes | None, value: bytes | None, headers: Headers) -> Target:
        """Produce one record and wait for the broker's acknowledgement (of all in-sync
        replicas); where it landed."""
        ...


# --- the use case ---


@dataclass(frozen=True)
class Outcome:
    """What became of one selected dead letter."""

    record: Record
    status: str  # REDRIVEN, WOULD, ALREADY or SKIPPED_TRUNCATED
    target: Target | None = None  # where it was (or had been) sent


async def redrive_one(record: Record, marks: RedriveMarks, sender: Sender | None) -> Outcome:
    """Skip it if truncated or marked; else (unless ``sender`` is None: a dry run) send it,
    wait for the acknowledgement, then mark it."""
    if header(record, TRUNCATED):
        return Outcome(record, SKIPPED_TRUNCATED)
    name = mark_id(record)
    marked = await marks.find(name)
    if marked is not None:
        return Outcome(record, ALREADY, marked)
    if sender is None:
        return Outcome(record, WOULD)
    sent = await sender.send(record.key, record.value, redriven_headers(record, name))
    await marks.add(Mark(name, sent, reason(record), datetime.now(UTC)))
    return Outcome(record, REDRIVEN, sent)


async def redrive(
    records: AsyncIterable[Record], marks: RedriveMarks, sender: Sender | None
) -> AsyncIterator[Outcome]:
    """Re-drive ``records`` one by one, in their order, each outcome given as soon as it is
    known (so a caller stopped between two has reported every record marked); ``sender``
    None: a dry run, which sends and marks nothing."""
    async for record in records:
        yield await redrive_one(record, marks, sender)
