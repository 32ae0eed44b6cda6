"""A neutral plan (services.query) in MongoDB's query language: filter documents, sorts and
hints. Pure; the store (services.mongo.store) sends what this renders."""

from __future__ import annotations

from typing import Any

from services.query import ASCENDING, DESCENDING, SORT_FIELDS, Bound, Plan, Scope


def scope_filter(scope: Scope) -> dict[str, Any]:
    """The threads a scope may see at all (cursor look-ups and single-thread reads)."""
    selected: dict[str, Any] = {"organization_id": {"$in": list(scope.organization_ids)}}
    if scope.user_id is not None:
        selected["user_id"] = scope.user_id
    return selected


def streams(chosen: Plan) -> list[dict[str, Any]]:
    """The filter of each of the plan's streams, bounds included."""
    return [stream_filter(equal, chosen.bounds) for equal in chosen.equalities]


def sort(chosen: Plan) -> list[tuple[str, int]]:
    direction = DESCENDING if chosen.descending else ASCENDING
    return [(f, direction) for f in SORT_FIELDS]


def stream_filter(equal: dict[str, Any], bounds: tuple[Bound, ...]) -> dict[str, Any]:
    """``equal`` within every bound: the ranges on ``created_at`` become the index walk's bounds,
    and the ties at a bound are settled by ``_id``."""
    if not bounds:
        return equal
    selected: dict[str, Any] = {**equal, "created_at": {}}
    ties = []
    for bound in bounds:
        rendered = _beyond(bound)
        selected["created_at"].update(rendered["created_at"])
        ties.append({"$or": rendered["$or"]})
    if len(ties) == 1:
        selected.update(ties[0])
    else:
        selected["$and"] = ties
    return selected


def _beyond(bound: Bound) -> dict[str, Any]:
    """Threads strictly past the bound's position: a range on ``created_at`` that includes the
    position's own instant, and among the threads of that instant only those past its id."""
    op = "$lt" if bound.descending else "$gt"
    at = bound.position
    return {
        "created_at": {op + "e": at.created_at},
        "$or": [{"created_at": {op: at.created_at}}, {"_id": {op: at.id}}],
    }
