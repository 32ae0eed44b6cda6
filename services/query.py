"""What a list request selects: filters, the caller's scope and keyset cursors. Pure; no I/O.

Threads are ordered by ``(created_at, id)``. A cursor is a thread id; its position in that
order bounds the page, so a page deep in the list costs what the first page costs (no skip),
and threads created meanwhile never shift the pages a client is walking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING

Order = Literal["asc", "desc"]


@dataclass(frozen=True)
class Scope:
    """What an API key may see: its organizations' threads, or only its user's among them."""

    organization_ids: tuple[str, ...]
    user_id: str | None = None  # None: a service key, every thread of its organizations


@dataclass(frozen=True)
class ThreadQuery:
    limit: int = 20
    order: Order = "desc"
    after: str | None = None
    before: str | None = None
    organization_id: str | None = None
    assistant_id: str | None = None
    workflow_id: str | None = None
    is_pinned: bool | None = None
    visible_in_ui: bool = True
    include_deleted: bool = False
    include_total: bool = False


@dataclass(frozen=True, order=True)
class Position:
    """Where a thread stands in the list order."""

    created_at: datetime
    id: str


@dataclass(frozen=True)
class Plan:
    """How the store fetches one page: ``filter`` and ``sort``, ``limit + 1`` documents (the
    extra one says whether there is more), reversed before returning when ``reverse``."""

    filter: dict[str, Any]
    sort: list[tuple[str, int]]
    reverse: bool


def visible_filter(scope: Scope) -> dict[str, Any]:
    """The threads a scope may see at all (cursor look-ups and single-thread reads)."""
    selected: dict[str, Any] = {"organization_id": {"$in": list(scope.organization_ids)}}
    if scope.user_id is not None:
        selected["user_id"] = scope.user_id
    return selected


def match_filter(query: ThreadQuery, scope: Scope) -> dict[str, Any]:
    """The threads the query's filters select within the scope, cursors aside.

    Every field of the list indexes' prefix is constrained (``$in`` over both booleans where
    the query leaves one open), so MongoDB walks the index in sort order, merging the
    intervals, instead of sorting in memory.
    """
    selected = visible_filter(scope)
    if query.organization_id is not None:  # never wider than the scope, whoever calls
        allowed = query.organization_id in scope.organization_ids
        selected["organization_id"] = {"$in": [query.organization_id] if allowed else []}
    selected["visible_in_ui"] = query.visible_in_ui
    selected["is_deleted"] = {"$in": [False, True]} if query.include_deleted else False
    selected["is_pinned"] = {"$in": [False, True]} if query.is_pinned is None else query.is_pinned
    if query.assistant_id is not None:
        selected["assistant_id"] = query.assistant_id
    if query.workflow_id is not None:
        selected["workflow_id"] = query.workflow_id
    return selected


def plan(query: ThreadQuery, scope: Scope, after: Position | None, before: Position | None) -> Plan:
    """The page after ``after`` (forward), before ``before`` (backward), or between both."""
    conditions = [match_filter(query, scope)]
    forward_descends = query.order == "desc"
    if after is not None:
        conditions.append(_beyond(after, descending=forward_descends))
    if before is not None:
        conditions.append(_beyond(before, descending=not forward_descends))
    backward = before is not None and after is None
    descending = forward_descends != backward
    direction = DESCENDING if descending else ASCENDING
    return Plan(
        filter=conditions[0] if len(conditions) == 1 else {"$and": conditions},
        sort=[("created_at", direction), ("_id", direction)],
        reverse=backward,
    )


def _beyond(position: Position, descending: bool) -> dict[str, Any]:
    """Threads strictly past ``position`` when walking the order down (or up)."""
    op = "$lt" if descending else "$gt"
    return {
        "$or": [
            {"created_at": {op: position.created_at}},
            {"created_at": position.created_at, "_id": {op: position.id}},
        ]
    }
