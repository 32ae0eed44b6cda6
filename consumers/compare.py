"""Two views compared thread by thread, and a view exported in the API's field names."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from services.ports import ThreadStore
from services.representation import Thread

SAMPLE = 10


@dataclass
class Difference:
    only_a: int = 0
    only_b: int = 0
    changed: int = 0
    same: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)

    @property
    def differ(self) -> bool:
        return bool(self.only_a or self.only_b or self.changed)

    def note(self, thread_id: str, kind: str, fields: list[str] | None = None) -> None:
        if len(self.sample) < SAMPLE:
            self.sample.append({"id": thread_id, "kind": kind, "fields": fields or []})


async def diff(a: ThreadStore, b: ThreadStore) -> Difference:
    """Walk both views' listed threads in ``_id`` order side by side (memory: one batch of
    each)."""
    found = Difference()
    left, right = aiter(_listed(a)), aiter(_listed(b))
    x, y = await anext(left, None), await anext(right, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x["id"] < y["id"]):
            assert x is not None
            found.only_a += 1
            found.note(x["id"], "only in A")
            x = await anext(left, None)
        elif x is None or y["id"] < x["id"]:
            found.only_b += 1
            found.note(y["id"], "only in B")
            y = await anext(right, None)
        else:
            ca, cb = x, y
            fields = sorted(k for k in ca.keys() | cb.keys() if ca.get(k) != cb.get(k))
            if fields:
                found.changed += 1
                found.note(x["id"], "changed", fields)
            else:
                found.same += 1
            x, y = await anext(left, None), await anext(right, None)
    return found


async def _listed(store: ThreadStore) -> AsyncIterator[dict[str, Any]]:
    """The threads a client could see: a thread not created yet (messages or updates only) is
    compared once it is, since fold version 3 keeps no thread document for messages alone."""
    async for view in store.documents():
        if view["listed"]:
            yield view


async def exported(store: ThreadStore) -> AsyncIterator[dict[str, Any]]:
    """Every thread the API can list, as the API renders it (JSON values), by id."""
    async for view in store.documents():
        if view["listed"]:
            yield Thread.model_validate(view).model_dump(mode="json")


async def export(store: ThreadStore, out: TextIO, format: str) -> int:
    """Write the view as JSON lines or CSV (lists and maps as JSON text, null as empty, a
    text that a spreadsheet would take for a formula prefixed with ``'``; JSON lines as they
    are)."""
    count = 0
    writer = csv.DictWriter(out, fieldnames=list(Thread.model_fields)) if format == "csv" else None
    if writer:
        writer.writeheader()
    async for thread in exported(store):
        if writer:
            writer.writerow({k: _cell(v) for k, v in thread.items()})
        else:
            out.write(json.dumps(thread) + "\n")
        count += 1
    return count


# what makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list | bool):
        return json.dumps(value)
    return neutralised(value) if isinstance(value, str) else value


def neutralised(text: str) -> str:
    """A text cell a spreadsheet shows as text: one that would start a formula (a title
    ``=HYPERLINK(...)``, ``-1+1``) is prefixed with a single quote, as OWASP advises."""
    return f"'{text}" if text.startswith(FORMULA_START) else text
