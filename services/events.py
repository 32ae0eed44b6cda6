"""The thread event contract v1 (../shared/spec/events.md) as pydantic models."""

from __future__ import annotations

from dataclasses import dataclass
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

# The contract's limits (events.md, "Bounds and trust"): every string and list a producer
# controls is bounded, so a document, a log line or a label has a known worst case.
# docs/projector.md ("Bounds") and the generated JSON Schema state them; a field over its limit
# makes the record an invalid_event dead letter.
ID_MAX = 128  # thread, organization, user, assistant, workflow, space and message ids
EVENT_ID_MAX = 256
TYPE_MAX = 128
SOURCE_MAX = 256
TITLE_MAX = 1000
STATUS_MAX = 64
MODEL_MAX = 128
SPACE_IDS_MAX = 100
METADATA_KEYS_MAX, METADATA_KEY_MAX, METADATA_VALUE_MAX = 16, 64, 512  # OpenAI's metadata rule


Id = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX)]
Title = Annotated[str, StringConstraints(max_length=TITLE_MAX)]
Status = Annotated[str, StringConstraints(max_length=STATUS_MAX)]
Model = Annotated[str, StringConstraints(max_length=MODEL_MAX)]
MetadataKey = Annotated[str, StringConstraints(max_length=METADATA_KEY_MAX)]
MetadataValue = Annotated[str, StringConstraints(max_length=METADATA_VALUE_MAX)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=METADATA_KEYS_MAX)]
SpaceIds = Annotated[list[Id], Field(max_length=SPACE_IDS_MAX)]
Role = Literal["user", "assistant", "system", "tool"]


def _utc_millis(value: datetime) -> datetime:
    # BSON dates hold milliseconds: fold on exactly what the store can keep, so that a
    # document read back compares equal to the one folded in memory.
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+00:01 is before year 1 in UTC
        raise ValueError("time out of range once converted to UTC") from None
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
    title: Title | None = None
    metadata: Metadata = Field(default_factory=dict)
    visible_in_ui: bool = True
    space_ids: SpaceIds = Field(default_factory=list)
    status: Status = "inactive"


class MessageAddedData(_Data):
    """Counts once per distinct ``message_id``; ``model`` is the model that wrote it."""

    message_id: Id
    role: Role | None = None
    model: Model | None = None


def _absent(value: Any) -> Any:
    # a default that stays out of the JSON Schema: for thread.updated, absent means untouched
    return Field(default_factory=lambda: value)


class ThreadUpdatedData(_Data):
    """Only the fields present change (``model_fields_set`` tells which); ``metadata``
    replaces the whole map."""

    title: Title | None = _absent(None)
    metadata: Metadata = _absent({})
    status: Status = _absent("inactive")
    space_ids: SpaceIds = _absent([])
    visible_in_ui: bool = _absent(True)


class EmptyData(_Data):
    pass


@dataclass(frozen=True, order=True)
class LogPosition:
    """Where a record sits in the log: its broker timestamp (ms), then partition and offset.

    Orders the records of a topic the same way on every replay, when the topic stamps records
    with ``LogAppendTime`` (the project's topics do); a thread's owner is taken from its first
    ``thread.created`` in this order (services.projection).
    """

    timestamp: int
    partition: int
    offset: int


class Envelope(BaseModel):
    """The CloudEvents 1.0 attributes every event carries, with ``data`` still untyped."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    # Where the event was read from, set by whoever read it from Kafka (never from the JSON).
    # Kept in the instance's __dict__ beside the fields rather than as a pydantic private
    # attribute, whose set-up on every instance cost a sixth of a rebuild worker's CPU; the
    # fields' validation, serialization and hash ignore it, equality compares it as before.

    @property
    def position(self) -> LogPosition | None:
        return self.__dict__.get("_position")

    def at(self, position: LogPosition) -> None:
        """Record where this event was read from."""
        object.__setattr__(self, "_position", position)

    specversion: Literal["1.0"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=EVENT_ID_MAX)]
    type: Annotated[str, StringConstraints(min_length=1, max_length=TYPE_MAX)]
    source: Annotated[str, StringConstraints(min_length=1, max_length=SOURCE_MAX)]
    subject: Id
    time: EventTime
    datacontenttype: Annotated[str, StringConstraints(max_length=TYPE_MAX)] | None = None
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
