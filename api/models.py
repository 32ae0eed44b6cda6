"""The response models of the published API page (../shared/spec/list-threads.md); the
thread itself is the core's (services.representation)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from services.representation import THREAD_EXAMPLES, Thread

__all__ = ["PAGE_EXAMPLE", "Thread", "ThreadList"]

PAGE_EXAMPLE: dict[str, Any] = {
    "object": "list",
    "data": THREAD_EXAMPLES,
    "first_id": "thrd_def456",
    "last_id": "thrd_abc123",
    "has_more": False,
    "limit": 20,
    "total": None,
}


class ThreadList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [PAGE_EXAMPLE]})

    object: Literal["list"] = "list"
    data: list[Thread]
    first_id: str | None
    last_id: str | None
    has_more: bool
    limit: int
    total: int | None = None

    @classmethod
    def of(
        cls, views: list[dict[str, Any]], has_more: bool, limit: int, total: int | None
    ) -> ThreadList:
        threads = [Thread.model_validate(v) for v in views]
        return cls(
            data=threads,
            first_id=threads[0].id if threads else None,
            last_id=threads[-1].id if threads else None,
            has_more=has_more,
            limit=limit,
            total=total,
        )
