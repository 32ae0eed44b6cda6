"""The response models of the published API page (../shared/spec/list-threads.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer


def _format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Time = Annotated[datetime, PlainSerializer(_format_time, return_type=str)]


PAGE_EXAMPLE: dict[str, Any] = {
    "object": "list",
    "data": [
        {
            "id": "thrd_def456",
            "object": "thread",
            "created_at": "2025-11-17T10:10:00Z",
            "updated_at": "2025-11-17T10:10:00Z",
            "last_message_at": "2025-11-17T10:10:00Z",
            "metadata": {},
            "assistant_id": None,
            "organization_id": "org_12345",
            "user_id": "usr_abc123",
            "title": "Another Thread",
            "status": "inactive",
            "message_count": 0,
            "visible_in_ui": True,
            "last_model_used": None,
            "is_pinned": False,
            "pinned_at": None,
            "space_ids": [],
            "deleted_at": None,
        },
        {
            "id": "thrd_abc123",
            "object": "thread",
            "created_at": "2025-11-17T10:00:00Z",
            "updated_at": "2025-11-17T10:05:00Z",
            "last_message_at": "2025-11-17T10:05:00Z",
            "metadata": {"user_id": "user_abc"},
            "assistant_id": "asst_abc123",
            "organization_id": "org_12345",
            "user_id": "usr_abc123",
            "title": "Aitronos Inquiry",
            "status": "inactive",
            "message_count": 5,
            "visible_in_ui": True,
            "last_model_used": "gpt-4o",
            "is_pinned": False,
            "pinned_at": None,
            "space_ids": ["space_xyz789"],
            "deleted_at": None,
        },
    ],
    "first_id": "thrd_def456",
    "last_id": "thrd_abc123",
    "has_more": False,
    "limit": 20,
    "total": None,
}


class Thread(BaseModel):
    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [PAGE_EXAMPLE["data"][1]]}
    )

    id: str
    object: Literal["thread"] = "thread"
    created_at: Time
    updated_at: Time
    last_message_at: Time | None
    metadata: dict[str, str]
    assistant_id: str | None
    organization_id: str
    user_id: str
    title: str | None
    status: str
    message_count: int
    visible_in_ui: bool
    last_model_used: str | None
    is_pinned: bool
    pinned_at: Time | None
    space_ids: list[str]
    deleted_at: Time | None


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
