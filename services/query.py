"""What a list request selects, as a MongoDB filter and sort. Pure; no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING

Order = Literal["asc", "desc"]


@dataclass(frozen=True)
class ThreadQuery:
    limit: int = 20
    order: Order = "desc"
    visible_in_ui: bool = True
    include_deleted: bool = False


def list_filter(query: ThreadQuery) -> dict[str, Any]:
    selected: dict[str, Any] = {"listed": True, "visible_in_ui": query.visible_in_ui}
    if not query.include_deleted:
        selected["is_deleted"] = False
    return selected


def sort_keys(order: Order) -> list[tuple[str, int]]:
    direction = DESCENDING if order == "desc" else ASCENDING
    return [("created_at", direction), ("_id", direction)]
