"""The thread event contract v1 (../shared/spec/events.md) as pydantic models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
MetadataKey = Annotated[str, StringConstraints(max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)]
Role = Literal["user", "assistant", "system", "tool"]


def _utc_millis(value: datetime) -> datetime:
    # BSON dates hold milliseconds: fold on exactly what the store can keep, so that a
    # document read back compares equal to the one folded in memory.
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


EventTime = Annotated[AwareDatetime, AfterValidator(_utc_millis)]


class _Data(BaseModel):
    # Tolerant reader: unknown fields are ignored; known fields are strictly typed.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class ThreadCreatedData(_Data):
    """The thread exists from this event on; its ``time`` is the thread's ``created_at``."""

    organization_id: Id
    user_id: Id
    assistant_id: Id | None = None
    workflow_id: Id | None = None
    title: str | None = None
    metadata: Metadata = Field(default_factory=dict)
    visible_in_ui: bool = True
    space_ids: list[Id] = Field(default_factory=list)
    status: str = "inactive"


class MessageAddedData(_Data):
    """Counts once per distinct ``message_id``; ``model`` is the model that wrote it."""

    message_id: Id
    role: Role | None = None
    model: str | None = None


def _absent(value: Any) -> Any:
    # a default that stays out of the JSON Schema: for thread.updated, absent means untouched
    return Field(default_factory=lambda: value)


class ThreadUpdatedData(_Data):
    """Only the fields present change (``model_fields_set`` tells which); ``metadata``
    replaces the whole map."""

    title: str | None = _absent(None)
    metadata: Metadata = _absent({})
    status: str = _absent("inactive")
    space_ids: list[Id] = _absent([])
    visible_in_ui: bool = _absent(True)


class EmptyData(_Data):
    pass


class Envelope(BaseModel):
    """The CloudEvents 1.0 attributes every event carries, with ``data`` still untyped."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    specversion: Literal["1.0"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    type: Annotated[str, StringConstraints(min_length=1)]
    source: Annotated[str, StringConstraints(min_length=1)]
    subject: Id
    time: EventTime
    datacontenttype: str | None = None
    data: dict[str, Any]


class _Event(Envelope):
    @property
    def thread_id(self) -> str:
        return self.subject


class ThreadCreated(_Event):
    type: Literal["thread.created"]
    data: ThreadCreatedData  # type: ignore[assignment]


class MessageAdded(_Event):
    type: Literal["thread.message_added"]
    data: MessageAddedData  # type: ignore[assignment]


class ThreadUpdated(_Event):
    type: Literal["thread.updated"]
    data: ThreadUpdatedData  # type: ignore[assignment]


class ThreadPinned(_Event):
    type: Literal["thread.pinned"]
    data: EmptyData  # type: ignore[assignment]


class ThreadUnpinned(_Event):
    type: Literal["thread.unpinned"]
    data: EmptyData  # type: ignore[assignment]


class ThreadDeleted(_Event):
    type: Literal["thread.deleted"]
    data: EmptyData  # type: ignore[assignment]


class ThreadRestored(_Event):
    type: Literal["thread.restored"]
    data: EmptyData  # type: ignore[assignment]


Event = (
    ThreadCreated
    | MessageAdded
    | ThreadUpdated
    | ThreadPinned
    | ThreadUnpinned
    | ThreadDeleted
    | ThreadRestored
)

EVENT_TYPES: dict[str, type[Event]] = {
    "thread.created": ThreadCreated,
    "thread.message_added": MessageAdded,
    "thread.updated": ThreadUpdated,
    "thread.pinned": ThreadPinned,
    "thread.unpinned": ThreadUnpinned,
    "thread.deleted": ThreadDeleted,
    "thread.restored": ThreadRestored,
}
