"""How threadview-dlq prints: a report streamed as records come (a table, or one JSON
document), and text where a record holds text.

What came from a producer (keys, headers, values, reasons) is printed with its control
characters escaped (services.logs.printable), so a dead letter cannot move the cursor, clear
the screen or forge a line; ``--json`` prints the same values exactly, as JSON with C1
controls escaped too.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import typer

from services.logs import printable

SHORT_REASON = 60  # characters of a reason a terminal table shows


def render_value(raw: bytes | None) -> tuple[str | None, str]:
    """A record value and how it is written: as text, or base64 when it is not UTF-8."""
    if raw is None:
        return None, "null"
    try:
        return raw.decode(), "text"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), "base64"


def time(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="milliseconds")


def short(text: str, width: int = SHORT_REASON) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


_NOT_JSON_SAFE = re.compile(r"[\x7f-\x9f\u2028\u2029]")


def to_json(value: Any) -> str:
    """``value`` as JSON on one line, non-ASCII text kept, except what a terminal would act
    on: JSON escapes C0 controls already, this escapes C1 controls (U+009B opens an ANSI
    sequence too) and the Unicode line separators. The result is still the same JSON."""
    return _NOT_JSON_SAFE.sub(
        lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, default=str, ensure_ascii=False)
    )


class Report:
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
            typer.echo(to_json(head)[:-1] + ("," if head else "") + f"{to_json(name)}:[", nl=False)

    def add(self, item: dict[str, Any], row: Sequence[str | None]) -> None:
        if self.as_json:
            typer.echo(("," if self.count else "") + to_json(item), nl=False)
        else:
            if not self.count:
                self._line(self.header)
            self._line([printable(cell or "") for cell in row])
        self.count += 1

    def end(self, tail: dict[str, Any]) -> None:
        if self.as_json:
            typer.echo("]" + ("," if tail else "") + to_json(tail)[1:])
        elif self.count:
            typer.echo("")

    def _line(self, cells: Sequence[str]) -> None:
        self.widths = [max(w, len(c)) for w, c in zip(self.widths, cells, strict=True)]
        padded = (cell.ljust(width) for cell, width in zip(cells, self.widths, strict=True))
        typer.echo("  ".join(padded).rstrip())
