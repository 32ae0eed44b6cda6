"""The projection: a pure fold of thread events into one thread's state. No I/O.

Every rule is a merge that is commutative, associative and idempotent (a last-writer-wins
register per field keyed by ``(time, event id)``, a set of message ids, a maximum of times),
so the state depends only on the *set* of events folded: any arrival order and any number of
redeliveries give the same state. The live consumer, the rebuild and the tests all call
:func:`fold`; no second copy of these rules exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Generic, TypeVar

from services.events import (
    Event,
    MessageAdded,
    ThreadCreated,
    ThreadDeleted,
    ThreadPinned,
    ThreadRestored,
    ThreadUnpinned,
    ThreadUpdated,
)

T = TypeVar("T")

# Raise it whenever a change to the fold (a rule, a new field) changes the state some log folds
# to: every view records the version that built it, and the projector warns when the live view
# was built by another one (rebuild it: see the README's operator section).
FOLD_VERSION = 1

# the fields thread.created sets and thread.updated may change, each a last-writer-wins register
UPDATABLE = ("title", "metadata", "status", "space_ids", "visible_in_ui")


@dataclass(frozen=True, order=True)
class Stamp:
    """Orders writes to a field: the event with the latest ``(time, id)`` wins."""

    time: datetime
    id: str


@dataclass(frozen=True)
class Register(Generic[T]):
    value: T
    stamp: Stamp


@dataclass(frozen=True)
class Creation:
    organization_id: str
    user_id: str
    assistant_id: str | None
    workflow_id: str | None
    stamp: Stamp  # created_at is stamp.time


@dataclass
class ThreadState:
    id: str
    creation: Creation | None = None
    title: Register[str | None] | None = None
    metadata: Register[dict[str, str]] | None = None
    status: Register[str] | None = None
    space_ids: Register[tuple[str, ...]] | None = None
    visible_in_ui: Register[bool] | None = None
    pinned: Register[bool] | None = None
    deleted: Register[bool] | None = None
    last_model: Register[str] | None = None
    message_ids: set[str] = field(default_factory=set)
    last_message_at: datetime | None = None
    updated_at: datetime | None = None


def fold(state: ThreadState | None, events: Iterable[Event]) -> ThreadState:
    """Return the state after ``events``; ``state`` itself is left unchanged.

    Args:
        state: the thread's state so far, or None for a thread not seen yet.
        events: events of that one thread, in any order, duplicates allowed.
    """
    folded = replace(state, message_ids=set(state.message_ids)) if state else None
    for event in events:
        if folded is None:
            folded = ThreadState(id=event.subject)
        elif event.subject != folded.id:
            raise ValueError(f"event {event.id} is for {event.subject}, not {folded.id}")
        _apply(folded, event)
    if folded is None:
        raise ValueError("nothing to fold: no state and no events")
    return folded


def _apply(state: ThreadState, event: Event) -> None:
    stamp = Stamp(event.time, event.id)
    state.updated_at = _latest(state.updated_at, event.time)
    match event:
        case ThreadCreated(data=data):
            if state.creation is None or stamp < state.creation.stamp:
                state.creation = Creation(
                    data.organization_id, data.user_id, data.assistant_id, data.workflow_id, stamp
                )
            for name in UPDATABLE:
                _write(state, name, getattr(data, name), stamp)
        case ThreadUpdated(data=data):
            for name in UPDATABLE:
                if name in data.model_fields_set:
                    _write(state, name, getattr(data, name), stamp)
        case MessageAdded(data=data):
            state.message_ids.add(data.message_id)
            state.last_message_at = _latest(state.last_message_at, event.time)
            if data.model is not None:
                state.last_model = _lww(state.last_model, data.model, stamp)
        case ThreadPinned() | ThreadUnpinned():
            state.pinned = _lww(state.pinned, isinstance(event, ThreadPinned), stamp)
        case ThreadDeleted() | ThreadRestored():
            state.deleted = _lww(state.deleted, isinstance(event, ThreadDeleted), stamp)


def _write(state: ThreadState, name: str, value: Any, stamp: Stamp) -> None:
    if isinstance(value, list):
        value = tuple(value)
    setattr(state, name, _lww(getattr(state, name), value, stamp))


def _lww(current: Register[T] | None, value: T, stamp: Stamp) -> Register[T]:
    return Register(value, stamp) if current is None or stamp > current.stamp else current


def _latest(current: datetime | None, time: datetime) -> datetime:
    return time if current is None or time > current else current


def view(state: ThreadState) -> dict[str, Any]:
    """The thread as the API shows it (Python values), or as much of it as is known."""
    creation = state.creation
    pinned = state.pinned is not None and state.pinned.value
    deleted = state.deleted is not None and state.deleted.value
    return {
        "id": state.id,
        "listed": creation is not None,
        "created_at": creation.stamp.time if creation else None,
        "updated_at": state.updated_at,
        # the published example shows a thread without messages with last_message_at equal
        # to its created_at, never null
        "last_message_at": state.last_message_at or (creation.stamp.time if creation else None),
        "metadata": dict(state.metadata.value) if state.metadata else {},
        "assistant_id": creation.assistant_id if creation else None,
        "organization_id": creation.organization_id if creation else None,
        "user_id": creation.user_id if creation else None,
        "workflow_id": creation.workflow_id if creation else None,
        "title": state.title.value if state.title else None,
        "status": state.status.value if state.status else "inactive",
        "message_count": len(state.message_ids),
        "visible_in_ui": state.visible_in_ui.value if state.visible_in_ui else True,
        "last_model_used": state.last_model.value if state.last_model else None,
        "is_pinned": pinned,
        "pinned_at": state.pinned.stamp.time if pinned and state.pinned else None,
        "space_ids": list(state.space_ids.value) if state.space_ids else [],
        "is_deleted": deleted,
        "deleted_at": state.deleted.stamp.time if deleted and state.deleted else None,
    }
