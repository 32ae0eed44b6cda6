"""threadview-dlq: see what the projector dead-lettered, and send records back once fixed.

The command: its arguments, and what it prints (consumers.dlq_output). The dead-letter topic
is read by consumers.dlq_topic (outside any consumer group, read committed, one fetch at a
time; records named ``OFFSET`` or ``PARTITION:OFFSET``); ``redrive`` is the use case
services.redrive (once each, marks in the store, why a kill leaves nothing to fix), run on the
producer and the marks consumers.dlq_send opens. Records are printed (or re-driven) one by one
as they are read, never collected.

Over ~200 lines (about 240) because it holds three commands, each with its own columns and
summary; what they share is consumers.dlq_output's and consumers.dlq_topic's already.

Configured by the same THREADVIEW_* variables as the projector and the API.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from consumers import cli
from consumers.dlq_output import SHORT_REASON, Report, render_value, short, time, to_json
from consumers.dlq_send import redriving
from consumers.dlq_topic import DlqError, one, selected
from services import redrive as core
from services.logs import printable
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


def _run(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` (consumers.cli.run): a bad offset or a missing topic exits 2, an
    unreachable broker or store 1; SIGTERM stops a redrive between records, like Ctrl-C, and
    every record it marked is on the topic."""
    return cli.run(work, "threadview-dlq", (DlqError, ViewError))


@app.command("list")
def list_(
    reason: Reason = None, first: First = None, last: Last = None, as_json: Json = False
) -> None:
    """One line per dead letter, then how many there are per kind of reason."""
    settings = get_settings()
    _run(lambda: _list(settings, reason, first, last, as_json))


def reason_prefix(reason: str) -> str:
    """What went wrong, without the detail: the text before the first ':'."""
    return reason.split(":", 1)[0].strip() or "(no reason)"


async def _list(
    settings: Settings, reason: str | None, first: str | None, last: str | None, as_json: bool
) -> None:
    async with selected(settings, reason, first, last) as (topic, records):
        head = {"topic": topic.name, "partitions": len(topic.partitions)}
        columns = [
            ("OFFSET", topic.address_width()),
            ("FAILED AT", len("2025-11-17T10:00:00.000+00:00")),
            ("REASON", SHORT_REASON),
            ("ORIGIN", len(f"{settings.topic}:0:0000000")),
            ("KEY", 0),
        ]
        report = Report(as_json, head, "dead_letters", columns)
        reasons: Counter[str] = Counter()
        async for record in records:
            d: dict[str, Any] = {
                "address": topic.address(record),
                "partition": record.partition,
                "offset": record.offset,
                "failed_at": core.header(record, "dlq.failed_at"),
                "reason": core.reason(record),
                "origin": core.origin(record),
                "key": core.text(record.key),
            }
            reasons[reason_prefix(d["reason"])] += 1
            report.add(d, (d["address"], d["failed_at"], short(d["reason"]), d["origin"], d["key"]))
    counted = reasons.most_common()
    report.end({"count": report.count, "reasons": dict(counted)} if as_json else {})
    if not as_json:
        typer.echo(f"{report.count} dead letters in {topic.name}")
        for prefix, count in counted:
            typer.echo(f"  {count:>6}  {printable(prefix)}")


@app.command()
def show(
    offset: Annotated[str, typer.Argument(help="OFFSET, or PARTITION:OFFSET")],
    as_json: Json = False,
) -> None:
    """Everything about one dead letter: key, every header, the value, size and time."""
    settings = get_settings()
    topic, record = _run(lambda: one(settings, offset))
    value, encoding = render_value(record.value)
    shown: dict[str, Any] = {
        "topic": topic.name,
        "address": topic.address(record),
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": time(record.timestamp),
        "key": core.text(record.key),
        "headers": [{"name": n, "value": core.text(v)} for n, v in record.headers],
        "value": value,
        "value_encoding": encoding,
        "size": len(record.value or b""),
        "truncated": core.header(record, core.TRUNCATED),  # None: the copy is the whole record
    }
    if as_json:
        typer.echo(to_json(shown))
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
                f"{core.header(record, 'dlq.original_size')} bytes of value, "
                f"is at {core.origin(record)})"
            )
        )


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
    _run(lambda: _redrive(settings, reason, first, last, dry_run, as_json))


async def _redrive(
    settings: Settings,
    reason: str | None,
    first: str | None,
    last: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Re-drive the selection record by record, each reported as soon as it is done."""
    async with selected(settings, reason, first, last) as (topic, records):
        head = {"topic": topic.name, "to": settings.topic, "dry_run": dry_run}
        columns = [
            ("OFFSET", topic.address_width()),
            ("STATUS", len(core.SKIPPED_TRUNCATED)),
            ("TARGET", len(f"{settings.topic}:0:0000000")),
            ("REASON", SHORT_REASON),
            ("KEY", 0),
        ]
        report = Report(as_json, head, "records", columns)
        counts: Counter[str] = Counter()
        async with redriving(settings, dry_run) as (marks, sender):
            async for o in core.redrive(records, marks, sender):
                counts[o.status] += 1
                item = _outcome(topic.address(o.record), o)
                row = (item["address"], o.status, item["target"], short(item["reason"]))
                report.add(item, (*row, item["key"]))
    summary = {
        "selected": report.count,
        "redriven": counts[core.REDRIVEN],
        "would_redrive": counts[core.WOULD],
        "already_redriven": counts[core.ALREADY],
        "truncated": counts[core.SKIPPED_TRUNCATED],
    }
    report.end(summary if as_json else {})
    if as_json:
        return
    done = (
        f"would re-drive {summary['would_redrive']}"
        if dry_run
        else f"re-driven {summary['redriven']}"
    )
    typer.echo(
        f"selected {report.count}, {done}, already re-driven (skipped) "
        f"{summary['already_redriven']} ({topic.name} -> {settings.topic})"
    )
    if summary["truncated"]:
        typer.echo(
            f"{summary['truncated']} truncated copies skipped: each lacks part of its record; "
            "re-publish the original from its ORIGIN (threadview-dlq list) instead"
        )


def _outcome(address: str, o: core.Outcome) -> dict[str, Any]:
    return {
        "address": address,
        "id": core.mark_id(o.record),
        "status": o.status,
        "target": str(o.target) if o.target is not None else None,
        "reason": core.reason(o.record),
        "origin": core.origin(o.record),
        "key": core.text(o.record.key),
    }


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    app()


if __name__ == "__main__":
    main()
