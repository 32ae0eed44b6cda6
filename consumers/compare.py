"""Two views compared thread by thread, and a view exported in the API's field names."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from api.models import Thread
from services.documents import view_from_document
from services.store import MongoThreadStore

SAMPLE = 10


def comparable(document: dict[str, Any]) -> dict[str, Any]:
    """What a thread is, for comparing views: the API's fields and the set of message ids
    (not the fold's clocks, nor the revision, which counts writes)."""
    compared = _view(document)
    compared["message_ids"] = sorted(document.get("message_ids", []))
    return compared


def _view(document: dict[str, Any]) -> dict[str, Any]:
    """The API's fields of a document read with ``MongoThreadStore.documents``."""
    return view_from_document({k: v for k, v in document.items() if k != "message_ids"})


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


async def diff(a: MongoThreadStore, b: MongoThreadStore) -> Difference:
    """Walk both views in ``_id`` order side by side (memory: one batch of each)."""
    found = Difference()
    left, right = aiter(a.documents()), aiter(b.documents())
    x, y = await anext(left, None), await anext(right, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x["_id"] < y["_id"]):
            assert x is not None
            found.only_a += 1
            found.note(x["_id"], "only in A")
            x = await anext(left, None)
        elif x is None or y["_id"] < x["_id"]:
            found.only_b += 1
            found.note(y["_id"], "only in B")
            y = await anext(right, None)
        else:
            ca, cb = comparable(x), comparable(y)
            fields = sorted(k for k in ca.keys() | cb.keys() if ca.get(k) != cb.get(k))
            if fields:
                found.changed += 1
                found.note(x["_id"], "changed", fields)
            else:
                found.same += 1
            x, y = await anext(left, None), await anext(right, None)
    return found


async def exported(store: MongoThreadStore) -> AsyncIterator[dict[str, Any]]:
    """Every thread the API can list, as the API renders it (JSON values), by id."""
    async for document in store.documents():
        view = _view(document)
        if view["listed"]:
            yield Thread.model_validate(view).model_dump(mode="json")


async def export(store: MongoThreadStore, out: TextIO, format: str) -> int:
    """Write the view as JSON lines or CSV (lists and maps as JSON text, null as empty)."""
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


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, dict | list | bool) else value
