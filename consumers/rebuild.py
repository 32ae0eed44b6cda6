"""threadview-rebuild: build views by replaying the log, swap one in, compare, export, list.

Configured by the same THREADVIEW_* variables as the projector and the API. An operator's
command: `run` creates the new view's collections and indexes with the code of
`threadview-admin migrate`, so it needs the admin's store credential (THREADVIEW_MONGO_URL), and
the store migrated for this release.
"""

# (not in the docstring above, which is the command's --help) The commands only: `run` is
# consumers.build, `swap` consumers.swap, `diff` and `export` consumers.compare; the catalog's
# rules (what gc removes, how status names a view) are services.rebuild's.
# Why this module is longer than ~200 lines: it is the command line of six commands (run, swap,
# status, diff, export, drop/gc) with their options and output; each command's logic lives
# elsewhere (above).

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from consumers import build, cli, compare
from consumers.progress import reporter
from consumers.swap import abort as abort_swap
from consumers.swap import swap as swap_view
from consumers.topics import committed_offsets, reader, topic_offsets
from services.logs import configure as configure_logging
from services.mongo.bootstrap import Services, bootstrap
from services.projection import FOLD_VERSION
from services.rebuild import collect, dead_swap, kind, swap_summary, truncation_warning
from services.rebuild import state as view_state
from services.settings import get_settings
from services.views import BUILDING, READY, ViewError, fold_refusal

app = typer.Typer(
    help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
)
T = TypeVar("T")
Json = Annotated[bool, typer.Option("--json", help="JSON on stdout, for scripts")]


def _run(work: Callable[[Services], Awaitable[T]]) -> T:
    """Run ``work`` with the composed services (consumers.cli.run: exit statuses, signals)."""

    async def composed() -> T:
        services = await bootstrap(get_settings())
        try:
            return await work(services)
        finally:
            await services.close()

    return cli.run(
        composed, "threadview-rebuild", (ViewError,), "interrupted: the live view is untouched"
    )


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _print(value: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(value, default=str))
    else:
        typer.echo(json.dumps(value, default=str, indent=2))


@app.command()
def run(
    name: Annotated[
        str | None, typer.Option(help="the view's name; default rebuild-<time>")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option(help="only events whose time is at most this (ISO 8601)")
    ] = None,
    as_was: Annotated[
        str | None, typer.Option(help="only records appended to the log by this time")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="processes folding partitions")] = 2,
    memory_mb: Annotated[
        int,
        typer.Option(
            min=1,
            help="about how much memory the rebuild's processes use together (MiB): each worker "
            "merges what it folded into the view whenever its share is full",
        ),
    ] = build.DEFAULT_MEMORY_MB,
    as_json: Json = False,
) -> None:
    """Build a view from the whole log (or resume one) without touching the live view; its
    collections and indexes are made by threadview-admin migrate's code (admin credential)."""
    chosen = name or datetime.now(UTC).strftime("rebuild-%Y%m%d-%H%M%S")
    shown = reporter(as_json)
    times = _time(as_of), _time(as_was)
    summary = _run(lambda s: build.run(s, chosen, shown, *times, workers, memory_mb))
    shown.close(summary)


@app.command()
def swap(
    name: Annotated[str | None, typer.Argument(help="the view to make live")] = None,
    abort: Annotated[
        bool,
        typer.Option("--abort", help="clear the swap in progress (a running one: with --force)"),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="with --abort: even if its command still runs")
    ] = False,
    as_json: Json = False,
) -> None:
    """Make a rebuilt view the live one (API and projector) while events keep arriving; resume
    a swap that died; or, with --abort, clear it."""
    if abort:
        _print(_run(lambda s: abort_swap(s, name, force)), as_json)
        return
    if name is None or force:
        raise typer.BadParameter("name the view to make live (--force goes with --abort)")
    shown = reporter(as_json)
    shown.close(_run(lambda s: swap_view(s, name, shown)))


@app.command()
def diff(
    a: Annotated[str, typer.Argument(help="a view, or `live`")],
    b: Annotated[str, typer.Argument(help="another view, or `live`")],
    as_json: Json = False,
) -> None:
    """Compare two views thread by thread; exit status 1 when they differ."""

    async def work(services: Services) -> compare.Difference:
        first, second = await services.catalog.require(a), await services.catalog.require(b)
        return await compare.diff(services.store_of(first), services.store_of(second))

    found = _run(work)
    _print(
        {
            "a": a,
            "b": b,
            "same": found.same,
            "only_in_a": found.only_a,
            "only_in_b": found.only_b,
            "changed": found.changed,
            "sample": found.sample,
        },
        as_json,
    )
    if found.differ:
        raise typer.Exit(1)


@app.command()
def export(
    name: Annotated[str, typer.Argument(help="a view, or `live`")],
    format: Annotated[str, typer.Option(help="jsonl or csv")] = "jsonl",
    out: Annotated[Path | None, typer.Option(help="a file; default stdout")] = None,
) -> None:
    """Write a view's threads in the API's field names (JSON lines or CSV)."""
    if format not in ("jsonl", "csv"):
        raise typer.BadParameter("--format is jsonl or csv")

    async def work(services: Services) -> int:
        store = services.store_of(await services.catalog.require(name))
        target = out.open("w", newline="") if out else nullcontext(sys.stdout)
        with target as stream:
            return await compare.export(store, stream, format)

    count = _run(work)
    typer.echo(f"exported {count} threads" + (f" to {out}" if out else ""), err=True)


@app.command()
def status(as_json: Json = False) -> None:
    """Every view, which one is live, how far each has read the topic, rebuilds in progress."""
    found = _run(_status)
    if as_json:
        _print(found, True)
        return
    for warning in found["warnings"]:
        typer.secho(f"warning: {warning}", fg="yellow", err=True)
    for name in found["settled"]:
        typer.echo(f"settled the last swap's catalog entry of {name}", err=True)
    typer.echo(
        f"topic {found['topic']}: {found['topic_records']} records, fold version {FOLD_VERSION}"
    )
    rows = [("VIEW", "STATE", "KIND", "FOLD", "THREADS", "BEHIND", "PROGRESS", "CREATED")]
    for v in found["views"]:
        progress = v["progress"]
        rows.append(
            (
                v["name"],
                v["state"],
                v["kind"],
                str(v["fold_version"]),
                str(v["threads"]),
                "" if v["behind"] is None else str(v["behind"]),
                _progress(progress) if v["state"] == BUILDING else "",
                str(v["created_at"])[:19],
            )
        )
    cli.table(rows)


async def _status(services: Services) -> dict[str, Any]:
    settings, catalog = services.settings, services.catalog
    consumer = reader(settings)
    await consumer.start()
    try:
        offsets = await topic_offsets(consumer, settings.topic)
    finally:
        await consumer.stop()
    settled = await catalog.settle()
    pointer = await catalog.pointer()
    committed = await committed_offsets(settings)
    catalogued = await catalog.all()
    warnings = [w for w in [truncation_warning(settings.topic, offsets.truncated())] if w]
    if refusal := fold_refusal(pointer, {v.name: v.fold_version for v in catalogued}, FOLD_VERSION):
        warnings.append(f"projectors of fold version {FOLD_VERSION} will not write: {refusal}")
    if dead := dead_swap(pointer):
        warnings.append(dead)
    views = []
    for view in catalogued:
        state = view_state(view, pointer)
        reached = committed if state == "live" else view.reached
        behind = sum(max(0, e - reached.get(p, 0)) for p, e in offsets.end.items())
        views.append(
            {
                "name": view.name,
                "collection": view.collection,
                "state": state,
                "kind": kind(view),
                "fold_version": view.fold_version,
                "threads": await services.store_of(view).threads.count_documents({}),
                "behind": behind if view.state == READY and not view.point_in_time else None,
                "progress": view.progress,
                "counts": view.counts,
                "created_at": view.created_at,
                "finished_at": view.finished_at,
                "live_since": view.live_since,
                "retired_at": view.retired_at,
                "error": view.error,
            }
        )
    return {
        "topic": settings.topic,
        "topic_records": offsets.total,
        "end_offsets": offsets.end,
        "live": pointer.live,
        "next": pointer.next,
        "swap": swap_summary(pointer),
        "settled": settled,
        "views": views,
        "warnings": warnings,
    }


def _progress(progress: dict[str, Any]) -> str:
    done, total, rate = progress.get("done", 0), progress.get("total"), progress.get("per_second")
    return f"{done}/{total} at {rate}/s"


@app.command()
def gc(
    dry_run: Annotated[bool, typer.Option(help="list what would go")] = False,
    as_json: Json = False,
) -> None:
    """Remove abandoned rebuilds and views retired by a swap (never live or named views)."""
    gone = _run(lambda s: collect(s.catalog, dry_run))
    _print({"removed" if not dry_run else "would_remove": gone}, as_json)


@app.command()
def drop(name: Annotated[str, typer.Argument(help="a view (`live` is refused)")]) -> None:
    """Delete one view: never the live one, one a swap is taking live, or one a rebuild is
    still building."""

    typer.echo(f"dropped {_run(lambda s: s.catalog.drop(name))}", err=True)


def main() -> None:
    configure_logging(get_settings())
    app()


if __name__ == "__main__":
    main()
