"""What a list request selects and how its page is read: filters, scope, keyset cursors, and the
index walks that serve it. Pure; no I/O.

Threads are ordered by ``(created_at, id)``. A cursor is a thread id; its position in that
order bounds the page, so a page deep in the list costs what the first page costs (no skip),
and threads created meanwhile never shift the pages a client is walking.

A page is read as one or more *streams*: index walks whose every field before the sort key is
matched by equality. A request with several values for such a field (several organizations,
deleted and not, pinned and not) reads one stream per combination of values, ``limit + 1``
threads each, and the streams are merged here by ``(created_at, id)``. That keeps every walk
an ordered index scan on MongoDB and on DocumentDB, whose planner sorts the matches as soon as
a field before the sort key is matched by ``$in``.

A :class:`Plan` is neutral: equalities, keyset bounds and an order. The store's adapter renders
it in its own language (services.mongo.render); the in-memory store (testkit.memory) evaluates
it as it stands, and the contract test holds both to the same pages.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Order = Literal["asc", "desc"]

# filters a request may or may not carry; each combination of them has an index of its own
OPTIONAL_FIELDS = ("user_id", "assistant_id", "workflow_id")
# matched by equality on every stream, one value each
STREAM_FIELDS = ("organization_id", "visible_in_ui", "is_deleted", "is_pinned")
SORT_FIELDS = ("created_at", "_id")
ASCENDING, DESCENDING = 1, -1  # an index key's direction


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


@dataclass
class Budget:
    """What one request may spend in the store. The API gives each request its own (api/limits.py,
    in ``BUDGET``); a caller without one (tools, benchmarks' driver runs) is not bounded."""

    max_walks: int  # index walks one list request may read (services.threads)
    total_cap: int  # include_total counts at most this many threads (services.mongo.store)
    # the store's note for the response: "eq" (the total is exact), "gte" (it reached the cap)
    total_relation: str | None = None


BUDGET: ContextVar[Budget | None] = ContextVar("threadview_budget", default=None)


@dataclass(frozen=True, order=True)
class Position:
    """Where a thread stands in the list order."""

    created_at: datetime
    id: str


# The version in every list index's name (services.mongo.schema): bump it whenever the keys of
# ``ListIndex`` change, so that no name is ever reused with other keys. A release's migrate
# adds its indexes beside the older ones, which processes of the previous release still hint,
# and `threadview-admin contract` drops the older ones once no such process runs. Version 0:
# the unversioned names of the releases before migrations (list_org, ...).
INDEX_VERSION = 1


@dataclass(frozen=True)
class ListIndex:
    """The index that serves the streams whose optional filters are exactly ``leading``."""

    leading: tuple[str, ...]
    descending: bool = False

    @property
    def name(self) -> str:
        fields = "_".join(f.removesuffix("_id") for f in self.leading) or "org"
        return f"list_v{INDEX_VERSION}_{fields}" + ("_desc" if self.descending else "")

    @property
    def keys(self) -> list[tuple[str, int]]:
        direction = DESCENDING if self.descending else ASCENDING
        equal = [(f, ASCENDING) for f in (*self.leading, *STREAM_FIELDS)]
        return equal + [(f, direction) for f in SORT_FIELDS]


def list_indexes(descending_too: bool) -> list[ListIndex]:
    """One index per combination of optional filters (and per direction when asked: a store
    that cannot walk an index backwards needs both)."""
    combinations = [
        leading
        for size in range(len(OPTIONAL_FIELDS) + 1)
        for leading in itertools.combinations(OPTIONAL_FIELDS, size)
    ]
    directions = (False, True) if descending_too else (False,)
    return [ListIndex(leading, d) for d in directions for leading in combinations]


@dataclass(frozen=True)
class Bound:
    """The threads strictly past ``position`` when walking the order down (``descending``) or up."""

    position: Position
    descending: bool

    def admits(self, at: Position) -> bool:
        return at < self.position if self.descending else at > self.position


@dataclass(frozen=True)
class Plan:
    """How a store reads one page: one stream per entry of ``equalities`` (field: value, each
    matched exactly) within every one of ``bounds``, walked in ``descending`` order (of
    ``SORT_FIELDS``) through the index of ``leading``, ``limit + 1`` threads each; the streams
    merged in that order, the first ``limit + 1`` kept (the extra one says whether there is
    more), and the page reversed before returning when ``reverse``. A total counts the
    equalities' threads, bounds ignored."""

    equalities: list[dict[str, Any]]
    bounds: tuple[Bound, ...]
    leading: tuple[str, ...]
    descending: bool
    reverse: bool

    def index(self, descending_indexes: bool) -> ListIndex:
        return ListIndex(self.leading, self.descending and descending_indexes)


def match_filters(query: ThreadQuery, scope: Scope) -> list[dict[str, Any]]:
    """The threads the query selects within the scope, cursors aside: one equality filter per
    stream. Empty when the query names an organization outside the scope."""
    organizations = scope.organization_ids
    if query.organization_id is not None:  # never wider than the scope, whoever calls
        organizations = tuple(o for o in organizations if o == query.organization_id)
    leading = _optional_filters(query, scope)
    deleted = (False, True) if query.include_deleted else (False,)
    pinned = (False, True) if query.is_pinned is None else (query.is_pinned,)
    return [
        {
            **leading,
            "organization_id": organization,
            "visible_in_ui": query.visible_in_ui,
            "is_deleted": is_deleted,
            "is_pinned": is_pinned,
        }
        for organization in dict.fromkeys(organizations)
        for is_deleted in deleted
        for is_pinned in pinned
    ]


def _optional_filters(query: ThreadQuery, scope: Scope) -> dict[str, str]:
    """The optional equality filters the request carries, in ``OPTIONAL_FIELDS`` order."""
    values = (scope.user_id, query.assistant_id, query.workflow_id)
    return {f: v for f, v in zip(OPTIONAL_FIELDS, values, strict=True) if v is not None}


def plan(query: ThreadQuery, scope: Scope, after: Position | None, before: Position | None) -> Plan:
    """The page after ``after`` (forward), before ``before`` (backward), or between both."""
    forward_descends = query.order == "desc"
    bounds: list[Bound] = []
    if after is not None:
        bounds.append(Bound(after, descending=forward_descends))
    if before is not None:
        bounds.append(Bound(before, descending=not forward_descends))
    backward = before is not None and after is None
    return Plan(
        equalities=match_filters(query, scope),
        bounds=tuple(bounds),
        leading=tuple(_optional_filters(query, scope)),
        descending=forward_descends != backward,
        reverse=backward,
    )


def merge(
    streams: Iterable[Iterable[dict[str, Any]]], descending: bool, count: int
) -> list[dict[str, Any]]:
    """The first ``count`` documents of ``streams`` (each already in list order) in list order."""
    merged: Iterator[dict[str, Any]] = heapq.merge(
        *streams, key=lambda d: (d["created_at"], d["_id"]), reverse=descending
    )
    return list(itertools.islice(merged, count))
