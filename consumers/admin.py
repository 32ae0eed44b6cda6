"""threadview-admin: the store's schema for this release (and the Kafka topics), the only DDL.

A release: `migrate` (expand: add what it needs beside what the running release uses), deploy
it, then `contract` once no process of the previous release runs (drop the indexes only older
versions use). `status` says what is missing or left over; it exits 1 when the store is not
ready for this release. Every step may be run again, run twice at once, or killed and run
again (services.mongo.migration argues why). Configured by the THREADVIEW_* variables; run it with
the admin's store credential (THREADVIEW_MONGO_URL).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from pymongo.asynchronous.database import AsyncDatabase

from consumers import cli
from consumers.topics import ensure_topics
from services.logs import configure as configure_logging
from services.mongo import migration, schema
from services.mongo.bootstrap import connect
from services.settings import get_settings
from services.views import ViewError

app = typer.Typer(
    help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
)
T = TypeVar("T")
Database = AsyncDatabase[dict[str, Any]]
Json = Annotated[bool, typer.Option("--json", help="JSON on stdout, for scripts")]


def _run(work: Callable[[Database, bool], Awaitable[T]]) -> T:
    async def connected() -> T:
        client, database = connect(get_settings())
        try:
            return await work(database, await schema.walks_one_way(database))
        finally:
            await client.close()

    return cli.run(connected, "threadview-admin", (ViewError,))


def _show(report: migration.Report, as_json: bool, verb: str) -> None:
    if as_json:
        typer.echo(json.dumps(report.__dict__))
        return
    for line in report.done:
        typer.echo(f"{verb} {line}")
    for line in report.missing:
        typer.echo(line)
    for line in report.older:
        typer.echo(f"older, dropped by contract: {line}")
    for line in report.newer:
        typer.echo(f"newer release's, kept: {line}")


@app.command()
def migrate(
    topics: Annotated[
        bool, typer.Option(help="also create the events and dead-letter topics (Kafka)")
    ] = True,
    as_json: Json = False,
) -> None:
    """Expand: create the collections, indexes and catalog documents this release needs (and
    the topics), those missing; never drops anything."""
    report = _run(migration.migrate)
    if topics:
        cli.run(lambda: ensure_topics(get_settings()), "threadview-admin", ())
    _show(report, as_json, "created")
    if not as_json:
        typer.echo("store ready for this release" + ("" if report.done else " (nothing to do)"))


@app.command()
def contract(
    dry_run: Annotated[bool, typer.Option(help="list what would be dropped")] = False,
    as_json: Json = False,
) -> None:
    """Drop the list indexes only older releases use (never this release's, never a newer
    one's). Run it once every process of the previous release has stopped."""
    report = _run(lambda d, desc: migration.contract(d, desc, dry_run))
    _show(report, as_json, "would drop" if dry_run else "dropped")
    if not as_json and not report.done:
        typer.echo("nothing to drop")


@app.command()
def status(as_json: Json = False) -> None:
    """What migrate would create and contract would drop; exit 1 when the store is not ready
    for this release."""
    report = _run(migration.status)
    _show(report, as_json, "")
    if report.missing:
        if not as_json:
            typer.echo(f"store not migrated for this release ({schema.MIGRATE})", err=True)
        raise typer.Exit(1)
    if not as_json:
        typer.echo("store ready for this release")


def main() -> None:
    configure_logging(get_settings())
    app()


if __name__ == "__main__":
    main()
