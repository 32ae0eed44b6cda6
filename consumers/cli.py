"""What the command-line tools (threadview-rebuild, threadview-dlq) share: how a command runs,
stops and fails, and how a table is printed."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import typer
from aiokafka.errors import KafkaError
from pymongo.errors import PyMongoError

T = TypeVar("T")


def run(
    work: Callable[[], Awaitable[T]],
    tool: str,
    mistakes: tuple[type[Exception], ...],
    interrupted: str = "interrupted",
) -> T:
    """Run ``work`` to its end. An operator's mistake (one of ``mistakes``) exits 2, an
    unreachable broker or store exits 1, each with one line on stderr.

    Ctrl-C and SIGTERM cancel it cleanly and exit 130 (its own clean-up runs: a rebuild is
    marked interrupted, a swap puts the pointer back, a redrive stops between records), even
    when started with SIGINT ignored, as a shell's background job is.
    """

    async def go() -> T:
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGTERM,
            asyncio.current_task().cancel,  # type: ignore[union-attr]
        )
        return await work()

    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return asyncio.run(go())
    except mistakes as exc:
        typer.echo(f"{tool}: {exc}", err=True)
        raise typer.Exit(2) from None
    except (KafkaError, PyMongoError) as exc:
        typer.echo(f"{tool}: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        typer.echo(interrupted, err=True)
        raise typer.Exit(130) from None


def table(rows: Sequence[Sequence[str]]) -> None:
    """Rows as left-aligned columns, the first row being the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        typer.echo("  ".join(cells).rstrip())
