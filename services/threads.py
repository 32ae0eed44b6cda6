"""The read side's use cases: a page of threads, one thread, each within the caller's scope."""

from __future__ import annotations

from typing import Any

from services.ports import Page, ThreadReader
from services.query import BUDGET, Scope, ThreadQuery, match_filters


class Forbidden(Exception):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class TooWide(Exception):
    """A list request that would read more index walks than its budget allows."""

    def __init__(self, walks: int, allowed: int) -> None:
        super().__init__(
            f"this request would read {walks} index walks (one per organization of the key, "
            f"times deleted or not, times pinned or not), more than the {allowed} one request "
            "may: pass organization_id (and is_pinned) to narrow it"
        )
        self.walks = walks


async def thread_page(store: ThreadReader, query: ThreadQuery, scope: Scope) -> Page:
    """One page of the list, exactly as the API spec defines it.

    Raises:
        Forbidden: ``organization_id`` names an organization outside the scope.
        TooWide: the request reads more index walks than the request's budget allows.
        CursorNotFound: a cursor names no thread the scope may see.
    """
    if query.organization_id is not None and query.organization_id not in scope.organization_ids:
        raise Forbidden("organization_id", "you do not belong to that organization")
    budget = BUDGET.get()
    if budget is not None and (walks := len(match_filters(query, scope))) > budget.max_walks:
        raise TooWide(walks, budget.max_walks)
    return await store.page(query, scope)


async def thread(store: ThreadReader, thread_id: str, scope: Scope) -> dict[str, Any] | None:
    """The thread's view, or None when it does not exist or the scope may not see it."""
    return await store.get(thread_id, scope)
