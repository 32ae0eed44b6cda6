"""threadview-dlq: see what the projector dead-lettered, and send records back once fixed.

The dead-letter topic is read outside any consumer group (nothing is committed, the live
projector is untouched) and read committed — dead letters are published in the projector's
transactions, so records of aborted transactions are never shown — from each partition's first
offset to its end offset captured at the start. A record is addressed as ``OFFSET`` when the
topic has one partition (the project creates it so) and as ``PARTITION:OFFSET`` otherwise;
``PARTITION:OFFSET`` always works.

Records are read and printed (or re-driven) one by one, never collected: memory holds one
fetch, whatever the selection's size. What came from a producer (keys, headers, values,
reasons) is printed with its control characters escaped (services.logs.printable), so a dead
letter cannot move the cursor, clear the screen or forge a line; ``--json`` prints the same
values exactly, as JSON with C1 controls escaped too.

``redrive`` re-publishes dead letters to the events topic, once each: every record it sends is
marked in the store (collection ``dlq_redriven``, ``_id`` = ``<dlq topic>:<partition>:<offset>``,
the same text as the ``threadview.redriven_from`` header it adds), and a marked record is
skipped. Per record it checks the mark, produces (idempotent producer, ``acks=all``), waits for
the broker's acknowledgement, and only then writes the mark: a mark therefore always means
"on the topic". A crash between the acknowledgement and the mark leaves that one record
unmarked, and a rerun sends it again. That is harmless: the projector's fold is idempotent
(README, "The event contract"), so an event applied twice gives the same document. A copy the
projector cut to fit the dead-letter budget (header ``dlq.truncated``) is not the record: it is
never re-driven, only reported; its original is still at ``dlq.topic:partition:offset``.

Configured by the same THREADVIEW_* variables as the projector and the API.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from consumers import cli
from consumers.dead_letters import TRUNCATED
from consumers.kafka_security import client_options
from consumers.replay import read_range, to_record
from consumers.topics import Offsets, partitions_of, reader, topic_offsets
from services.logs import printable
from services.mongo.bootstrap import connect
from services.mongo.schema import require
from services.projector import Record
from services.settings import Settings, get_settings
from services.views import ViewError

app = typer.Typer(
    help=__doc__.split("\n\n")[0],
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
T = TypeVar("T")
Json = Annotated[bool, typer.Option("--json", help="JSON on stdout, for scripts")]
Reason = Annotated[
    str | None, typer.Option("--reason", help="only reasons containing this (any case)")
]
First = Annotated[
    str | None, typer.Option("--from", help="first record, OFFSET or PARTITION:OFFSET (inclusive)")
]
Last = Annotated[
    str | None, typer.Option("--to", help="last record, OFFSET or PARTITION:OFFSET (inclusive)")
]

MARKS = "dlq_redriven"
REDRIVEN_FROM = "threadview.redriven_from"
DLQ_PREFIX = "dlq."  # the headers the dead-letter path adds (consumers.dead_letters)
SKIPPED_TRUNCATED = "truncated, skipped"
SHORT_REASON = 60  # characters of a reason a terminal table shows
FETCH_RECORDS = 500


class DlqError(Exception):
    """A request that cannot be served, with a one-line message for the operator."""


def _run(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` (consumers.cli.run): a bad offset or a missing topic exits 2, an
    unreachable broker or store 1; SIGTERM stops a redrive between records, like Ctrl-C, and
    every record it marked is on the topic."""
    return cli.run(work, "threadview-dlq", (DlqError, ViewError))


# --- naming records: OFFSET or PARTITION:OFFSET, and selecting them ---


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

    def mark_id(self, record: Record) -> str:
        """The record's name everywhere it is remembered: the mark's _id and the header."""
        return f"{self.name}:{record.partition}:{record.offset}"


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
        return self.reason is None or self.reason.casefold() in _reason(record).casefold()


# --- reading the dead-letter topic ---


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
async def _selected(
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


# --- rendering: text where it is text ---


def _header(record: Record, name: str) -> str | None:
    """The dead-letter header ``name``, as text. The projector's own come last, from the last
    ``dlq.reason`` on: a producer's header of the same name, among the original headers
    before them, is not it (a whole copy of a record carrying its own ``dlq.truncated``
    must still be redriven)."""
    names = [n for n, _ in record.headers]
    start = len(names) - 1 - names[::-1].index("dlq.reason") if "dlq.reason" in names else 0
    values = [v for n, v in record.headers[start:] if n == name]
    return _text(values[-1]) if values else None


def _reason(record: Record) -> str:
    return _header(record, "dlq.reason") or ""


def reason_prefix(reason: str) -> str:
    """What went wrong, without the detail: the text before the first ':'."""
    return reason.split(":", 1)[0].strip() or "(no reason)"


def _origin(record: Record) -> str:
    return ":".join(_header(record, f"dlq.{n}") or "?" for n in ("topic", "partition", "offset"))


def _text(raw: bytes | None) -> str | None:
    """Header values and keys as text, or ``hex:...`` when they are not UTF-8."""
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return f"hex:{raw.hex()}"


def render_value(raw: bytes | None) -> tuple[str | None, str]:
    """A record value and how it is written: as text, or base64 when it is not UTF-8."""
    if raw is None:
        return None, "null"
    try:
        return raw.decode(), "text"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), "base64"


def _time(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="milliseconds")


def _summary(topic: Topic, record: Record) -> dict[str, Any]:
    return {
        "address": topic.address(record),
        "partition": record.partition,
        "offset": record.offset,
        "failed_at": _header(record, "dlq.failed_at"),
        "reason": _reason(record),
        "origin": _origin(record),
        "key": _text(record.key),
    }


def _short(text: str, width: int = SHORT_REASON) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


_NOT_JSON_SAFE = re.compile(r"[\x7f-\x9f\u2028\u2029]")


def _json(value: Any) -> str:
    """``value`` as JSON on one line, non-ASCII text kept, except what a terminal would act
    on: JSON escapes C0 controls already, this escapes C1 controls (U+009B opens an ANSI
    sequence too) and the Unicode line separators. The result is still the same JSON."""
    return _NOT_JSON_SAFE.sub(
        lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, default=str, ensure_ascii=False)
    )


def _echo_json(value: Any) -> None:
    typer.echo(_json(value))


class _Report:
    """What a command prints, as it goes: records are written as they are read, never held.

    With ``--json``, one JSON object on one line: the fields known at the start, the list of
    records (``name``), then the fields known at the end. Else a table whose columns start as
    wide as ``widths`` and widen when a wider cell comes (a row is printed before the next is
    read); every cell passes through services.logs.printable, since most come from producers.
    """

    def __init__(
        self, as_json: bool, head: dict[str, Any], name: str, columns: Sequence[tuple[str, int]]
    ) -> None:
        self.as_json, self.count = as_json, 0
        self.header = [title for title, _ in columns]
        self.widths = [max(len(title), width) for title, width in columns]
        if as_json:
            typer.echo(_json(head)[:-1] + ("," if head else "") + f"{_json(name)}:[", nl=False)

    def add(self, item: dict[str, Any], row: Sequence[str | None]) -> None:
        if self.as_json:
            typer.echo(("," if self.count else "") + _json(item), nl=False)
        else:
            if not self.count:
                self._line(self.header)
            self._line([printable(cell or "") for cell in row])
        self.count += 1

    def end(self, tail: dict[str, Any]) -> None:
        if self.as_json:
            typer.echo("]" + ("," if tail else "") + _json(tail)[1:])
        elif self.count:
            typer.echo("")

    def _line(self, cells: Sequence[str]) -> None:
        self.widths = [max(w, len(c)) for w, c in zip(self.widths, cells, strict=True)]
        padded = (cell.ljust(width) for cell, width in zip(cells, self.widths, strict=True))
        typer.echo("  ".join(padded).rstrip())


# --- the commands ---


@app.command("list")
def list_(
    reason: Reason = None, first: First = None, last: Last = None, as_json: Json = False
) -> None:
    """One line per dead letter, then how many there are per kind of reason."""
    settings = get_settings()
    _run(lambda: _list(settings, reason, first, last, as_json))


async def _list(
    settings: Settings, reason: str | None, first: str | None, last: str | None, as_json: bool
) -> None:
    async with _selected(settings, reason, first, last) as (topic, selected):
        head = {"topic": topic.name, "partitions": len(topic.partitions)}
        columns = [
            ("OFFSET", _address_width(topic)),
            ("FAILED AT", len("2025-11-17T10:00:00.000+00:00")),
            ("REASON", SHORT_REASON),
            ("ORIGIN", len(f"{settings.topic}:0:0000000")),
            ("KEY", 0),
        ]
        report = _Report(as_json, head, "dead_letters", columns)
        reasons: Counter[str] = Counter()
        async for record in selected:
            d = _summary(topic, record)
            reasons[reason_prefix(d["reason"])] += 1
            row = (d["address"], d["failed_at"], _short(d["reason"]), d["origin"], d["key"])
            report.add(d, row)
    counted = reasons.most_common()
    report.end({"count": report.count, "reasons": dict(counted)} if as_json else {})
    if not as_json:
        typer.echo(f"{report.count} dead letters in {topic.name}")
        for prefix, count in counted:
            typer.echo(f"  {count:>6}  {printable(prefix)}")


def _address_width(topic: Topic) -> int:
    """How wide the widest address of ``topic`` can be."""
    last = max(topic.offsets.end.values(), default=0)
    return len(str(last)) if topic.single else len(f"{max(topic.partitions, default=0)}:{last}")


@app.command()
def show(
    offset: Annotated[str, typer.Argument(help="OFFSET, or PARTITION:OFFSET")],
    as_json: Json = False,
) -> None:
    """Everything about one dead letter: key, every header, the value, size and time."""
    settings = get_settings()
    topic, record = _run(lambda: _one(settings, offset))
    value, encoding = render_value(record.value)
    shown: dict[str, Any] = {
        "topic": topic.name,
        "address": topic.address(record),
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": _time(record.timestamp),
        "key": _text(record.key),
        "headers": [{"name": n, "value": _text(v)} for n, v in record.headers],
        "value": value,
        "value_encoding": encoding,
        "size": len(record.value or b""),
        "truncated": _header(record, TRUNCATED),  # None: the copy is the whole record
    }
    if as_json:
        _echo_json(shown)
        return
    # as text, every part that came from a producer with its control characters escaped
    typer.echo(f"dead letter {shown['address']} of {topic.name}")
    cli.table(
        [
            ("timestamp", shown["timestamp"]),
            ("key", printable(shown["key"] or "(none)")),
            ("size", f"{shown['size']} bytes"),
        ]
    )
    typer.echo("headers:")
    cli.table(
        [("  " + printable(h["name"]), printable(h["value"] or "")) for h in shown["headers"]]
        or [("  (none)",)]
    )
    typer.echo(f"value ({encoding}):")
    typer.echo(printable(value or ""))
    if shown["truncated"]:
        typer.echo(
            printable(
                f"(a truncated copy, lacking part of its {shown['truncated']}: the whole record, "
                f"{_header(record, 'dlq.original_size')} bytes of value, is at {_origin(record)})"
            )
        )


async def _one(settings: Settings, text: str) -> tuple[Topic, Record]:
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


@dataclass(frozen=True)
class Outcome:
    """What became of one selected dead letter."""

    record: Record
    status: str  # "re-driven", "would re-drive", "already re-driven", SKIPPED_TRUNCATED
    target: str | None = None  # topic:partition:offset it was (or had been) sent to


@app.command()
def redrive(
    dry_run: Annotated[bool, typer.Option(help="list what would be sent; change nothing")] = False,
    reason: Reason = None,
    first: First = None,
    last: Last = None,
    as_json: Json = False,
) -> None:
    """Send the selected dead letters back to the events topic, once each."""
    settings = get_settings()
    _run(lambda: _redrive_selected(settings, reason, first, last, dry_run, as_json))


async def _redrive_selected(
    settings: Settings,
    reason: str | None,
    first: str | None,
    last: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Re-drive the selection record by record, each reported as soon as it is done."""
    async with _selected(settings, reason, first, last) as (topic, selected):
        head = {"topic": topic.name, "to": settings.topic, "dry_run": dry_run}
        target = len(f"{settings.topic}:0:0000000")
        columns = [
            ("OFFSET", _address_width(topic)),
            ("STATUS", len(SKIPPED_TRUNCATED)),
            ("TARGET", target),
            ("REASON", SHORT_REASON),
            ("KEY", 0),
        ]
        report = _Report(as_json, head, "records", columns)
        counts: Counter[str] = Counter()

        def done(o: Outcome) -> None:
            counts[o.status] += 1
            reason = _reason(o.record)
            item = {
                "address": topic.address(o.record),
                "id": topic.mark_id(o.record),
                "status": o.status,
                "target": o.target,
                "reason": reason,
                "origin": _origin(o.record),
                "key": _text(o.record.key),
            }
            row = (item["address"], o.status, o.target, _short(reason), item["key"])
            report.add(item, row)

        await _redrive(settings, topic, selected, dry_run, done)
    summary = {
        "selected": report.count,
        "redriven": counts["re-driven"],
        "would_redrive": counts["would re-drive"],
        "already_redriven": counts["already re-driven"],
        "truncated": counts[SKIPPED_TRUNCATED],
    }
    report.end(summary if as_json else {})
    if as_json:
        return
    done_text = (
        f"would re-drive {summary['would_redrive']}"
        if dry_run
        else f"re-driven {summary['redriven']}"
    )
    typer.echo(
        f"selected {report.count}, {done_text}, already re-driven (skipped) "
        f"{summary['already_redriven']} ({topic.name} -> {settings.topic})"
    )
    if summary["truncated"]:
        typer.echo(
            f"{summary['truncated']} truncated copies skipped: each lacks part of its record; "
            "re-publish the original from its ORIGIN (threadview-dlq list) instead"
        )


async def _redrive(
    settings: Settings,
    topic: Topic,
    selected: AsyncIterator[Record],
    dry_run: bool,
    done: Callable[[Outcome], None],
) -> None:
    await _require_target(settings)
    client, database = connect(settings)
    try:  # the marks' collection is migrate's to create (services.mongo.schema), never ours
        await require(database, False, views=(), catalog=(MARKS,))
    except BaseException:
        await client.close()
        raise
    marks = database[MARKS]
    producer = None
    if not dry_run:
        producer = AIOKafkaProducer(
            **client_options(settings),
            client_id="threadview-dlq",
            enable_idempotence=True,
            acks="all",
        )
        await producer.start()
    try:
        async for record in selected:
            done(await _redrive_one(topic, record, marks, producer, settings))
    finally:
        if producer is not None:
            await producer.stop()
        await client.close()


async def _require_target(settings: Settings) -> None:
    """Refuse to send to an events topic that does not exist (the broker might create one
    with its defaults, which a replayable log must not have)."""
    consumer = reader(settings)
    await consumer.start()
    try:
        await partitions_of(consumer, settings.topic)
    finally:
        await consumer.stop()


async def _redrive_one(
    topic: Topic,
    record: Record,
    marks: AsyncCollection[dict[str, Any]],
    producer: AIOKafkaProducer | None,
    settings: Settings,
) -> Outcome:
    """Skip if truncated or marked; else produce, wait for the acknowledgement, then mark."""
    if _header(record, TRUNCATED):
        return Outcome(record, SKIPPED_TRUNCATED)
    mark_id = topic.mark_id(record)
    marked = await marks.find_one({"_id": mark_id})
    if marked is not None:
        target = f"{marked['topic']}:{marked['partition']}:{marked['offset']}"
        return Outcome(record, "already re-driven", target)
    if producer is None:
        return Outcome(record, "would re-drive")
    sent = await producer.send_and_wait(
        settings.topic, record.value, key=record.key, headers=redriven_headers(record, mark_id)
    )
    # a redrive running at the same time may have sent and marked it too: harmless
    with contextlib.suppress(DuplicateKeyError):
        await marks.insert_one(
            {
                "_id": mark_id,
                "redriven_at": datetime.now(UTC),
                "topic": settings.topic,
                "partition": sent.partition,
                "offset": sent.offset,
                "reason": _reason(record),
            }
        )
    return Outcome(record, "re-driven", f"{settings.topic}:{sent.partition}:{sent.offset}")


def redriven_headers(record: Record, mark_id: str) -> list[tuple[str, bytes]]:
    """The original headers — without the dead-letter path's, and without the mark of an
    earlier redrive of the same event — plus where this copy came from."""
    kept = [
        (name, value)
        for name, value in record.headers
        if not name.startswith(DLQ_PREFIX) and name != REDRIVEN_FROM
    ]
    return [*kept, (REDRIVEN_FROM, mark_id.encode())]


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    app()


if __name__ == "__main__":
    main()
