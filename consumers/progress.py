"""How a long command shows its progress: a bar on a terminal, one line every few seconds in a
log, or JSON lines for scripts (``--json``)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

log = logging.getLogger("threadview.rebuild")


class Reporter(Protocol):
    def phase(self, name: str, total: int | None = None) -> None: ...
    def advance(self, done: int) -> None: ...
    def note(self, message: str) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...
    def close(self, summary: dict[str, Any]) -> None: ...


class Rate:
    """Records done, the rate since the phase began, and the time left at that rate."""

    def __init__(self) -> None:
        self.name, self.done, self.started = "", 0, time.monotonic()
        self.total: int | None = None

    def phase(self, name: str, total: int | None) -> None:
        self.name, self.total, self.done, self.started = name, total, 0, time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if self.total and rate else None
        return {
            "phase": self.name,
            "done": self.done,
            "total": self.total,
            "per_second": round(rate),
            "eta_seconds": None if left is None else round(left, 1),
        }


class JsonLines:
    """One JSON object per line on stdout: progress at most every ``every`` seconds, notes,
    and a last line with ``"event": "done"``."""

    def __init__(self, every: float = 1.0) -> None:
        self.rate, self.every, self.last = Rate(), every, 0.0

    def _emit(self, event: str, **values: Any) -> None:
        print(json.dumps({"event": event, **values}, default=str), flush=True)

    def phase(self, name: str, total: int | None = None) -> None:
        self.rate.phase(name, total)
        self._emit("phase", phase=name, total=total)

    def advance(self, done: int) -> None:
        self.rate.done = done
        if time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            self._emit("progress", **self.rate.snapshot())

    def note(self, message: str) -> None:
        self._emit("note", message=message)

    def snapshot(self) -> dict[str, Any]:
        return self.rate.snapshot()

    def close(self, summary: dict[str, Any]) -> None:
        self._emit("done", **summary)


class LogLines(JsonLines):
    """Plain log lines (output is not a terminal): progress every ``every`` seconds."""

    def __init__(self, every: float = 5.0) -> None:
        super().__init__(every)

    def _emit(self, event: str, **values: Any) -> None:
        if event == "progress":
            eta = values["eta_seconds"]
            log.info(
                "%s: %d/%s records, %d/s, ETA %s",
                values["phase"],
                values["done"],
                values["total"] if values["total"] is not None else "?",
                values["per_second"],
                "?" if eta is None else f"{eta:.0f}s",
            )
        elif event == "phase":
            log.info(
                "%s%s", values["phase"], f" ({values['total']} records)" * bool(values["total"])
            )
        elif event == "note":
            log.warning("%s", values["message"])
        else:
            log.info("done: %s", json.dumps(values, default=str))


class Bar:
    """A rich progress bar with rate and ETA, on a terminal."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.task: TaskID | None = None
        self.rate = Rate()

    def phase(self, name: str, total: int | None = None) -> None:
        if self.task is None:
            self.progress.start()
        elif self.rate.total:
            self.progress.update(self.task, completed=self.rate.total)
        self.rate.phase(name, total)
        self.task = self.progress.add_task(name, total=total, rate="")

    def advance(self, done: int) -> None:
        self.rate.done = done
        if self.task is not None:
            rate = f"{self.rate.snapshot()['per_second']:,}/s"
            self.progress.update(self.task, completed=done, rate=rate)

    def note(self, message: str) -> None:
        self.console.print(f"[yellow]{message}[/yellow]")

    def snapshot(self) -> dict[str, Any]:
        return self.rate.snapshot()

    def close(self, summary: dict[str, Any]) -> None:
        if self.task is not None:
            if self.rate.total:
                self.progress.update(self.task, completed=self.rate.total)
            self.progress.stop()
        self.console.print_json(json.dumps(summary, default=str))


def reporter(as_json: bool) -> Reporter:
    if as_json:
        return JsonLines()
    if sys.stderr.isatty():
        return Bar()
    return LogLines()
