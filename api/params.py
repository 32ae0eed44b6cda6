"""The list endpoint's query parameters, with the published defaults and api.md's validation."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BeforeValidator

from services.query import Order, ThreadQuery


def _boolean(value: Any) -> Any:
    """api.md: booleans are true/false in any case, or 1/0; nothing else."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError("must be true, false, 1 or 0")


Boolean = Annotated[bool, BeforeValidator(_boolean)]
CursorId = Annotated[str, Query(min_length=1, max_length=128)]
FilterId = Annotated[str, Query(min_length=1, max_length=128)]


async def list_params(
    limit: Annotated[int, Query(ge=1, le=100, description="Number of threads, 1-100.")] = 20,
    order: Annotated[
        Order, Query(description="asc (oldest first) or desc (newest first).")
    ] = "desc",
    after: Annotated[
        CursorId | None, Query(description="Next page: threads after this id in the order.")
    ] = None,
    before: Annotated[
        CursorId | None, Query(description="Previous page: threads before this id.")
    ] = None,
    organization_id: Annotated[
        FilterId | None, Query(description="Only this organization.")
    ] = None,
    assistant_id: Annotated[
        FilterId | None, Query(description="Only threads of this assistant.")
    ] = None,
    workflow_id: Annotated[
        FilterId | None, Query(description="Only threads of this workflow.")
    ] = None,
    is_pinned: Annotated[
        Boolean | None, Query(description="Only pinned (true) or unpinned (false).")
    ] = None,
    visible_in_ui: Annotated[
        Boolean, Query(description="Visible (true) or hidden (false) threads.")
    ] = True,
    include_deleted: Annotated[Boolean, Query(description="Include soft-deleted threads.")] = False,
    include_total: Annotated[
        Boolean, Query(description="Count the threads matching the filters.")
    ] = False,
) -> ThreadQuery:
    return ThreadQuery(
        limit=limit,
        order=order,
        after=after,
        before=before,
        organization_id=organization_id,
        assistant_id=assistant_id,
        workflow_id=workflow_id,
        is_pinned=is_pinned,
        visible_in_ui=visible_in_ui,
        include_deleted=include_deleted,
        include_total=include_total,
    )
