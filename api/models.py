"""The response models of the published API page (../shared/spec/list-threads.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer


def _format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Time = Annotated[datetime, PlainSerializer(_format_time, return_type=str)]


class Thread(BaseModel):
    model_config = ConfigDict(extra="ignore")

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
