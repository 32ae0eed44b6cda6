"""The thread as clients see it: the published page's fields, names and JSON types
(../shared/spec/list-threads.md, with api.md's ``deleted_at``). The API's responses and the
rebuild's exports (consumers.compare) both render a view document through :class:`Thread`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer


def _format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Time = Annotated[datetime, PlainSerializer(_format_time, return_type=str)]

# the published page's two threads, as its example shows them
THREAD_EXAMPLES: list[dict[str, Any]] = [
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
]


class Thread(BaseModel):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [THREAD_EXAMPLES[1]]})

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
