"""A deliberately naive reference model of the fold rules of events.md (not services.projection)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from services.events import Event

UPDATABLE = ("title", "metadata", "status", "space_ids", "visible_in_ui")

# the defaults of events.md for thread.created, and what the view shows when nothing set a field
DEFAULTS: dict[str, Any] = {
    "title": None,
    "metadata": {},
    "status": "inactive",
    "space_ids": [],
    "visible_in_ui": True,
}


def _order(event: Event) -> tuple[datetime, str]:
    return (event.time, event.id)


def _log_order(event: Event) -> tuple[bool, tuple[int, int, int], tuple[datetime, str]]:
    """Where a record stands in the log: events without a position first, then by position."""
    position = event.position
    where = (position.timestamp, position.partition, position.offset) if position else (0, 0, 0)
    return (position is not None, where, _order(event))


def _latest(events: Sequence[Event]) -> Event | None:
    return max(events, key=_order) if events else None


def _sent(event: Event) -> dict[str, Any]:
    """The data fields the producer actually wrote (JSON values)."""
    return event.data.model_dump(mode="json", exclude_unset=True)


def _sets(event: Event) -> dict[str, Any]:
    """The updatable fields an event sets, with their values."""
    if event.type == "thread.created":
        # the first thread.created sets every updatable field: absent ones take the defaults
        sent = _sent(event)
        return {name: sent.get(name, DEFAULTS[name]) for name in UPDATABLE}
    if event.type == "thread.updated":
        return {name: value for name, value in _sent(event).items() if name in UPDATABLE}
    return {}


def expected_view(events: Sequence[Event]) -> dict[str, Any]:
    """The view of one thread after all of ``events`` (any order, duplicates allowed)."""
    assert events, "the reference needs at least one event"
    thread_ids = {e.subject for e in events}
    assert len(thread_ids) == 1, f"events of several threads: {thread_ids}"
    of_type: dict[str, list[Event]] = {}
    for event in events:
        of_type.setdefault(event.type, []).append(event)

    def all_of(*types: str) -> list[Event]:
        return [e for t in types for e in of_type.get(t, [])]

    view: dict[str, Any] = {"id": events[0].subject}
    view.update({name: DEFAULTS[name] for name in ("title", "status", "visible_in_ui")})
    view["metadata"] = {}
    view["space_ids"] = []

    # creation: the first thread.created in log order; every other create is ignored whole
    created = all_of("thread.created")
    first = min(created, key=_log_order) if created else None
    view["listed"] = first is not None
    view["created_at"] = first.time if first else None
    for name in ("organization_id", "user_id", "assistant_id", "workflow_id"):
        view[name] = _sent(first).get(name) if first else None

    # each updatable field: the latest (time, id) of the first create and the updates setting it
    for name in UPDATABLE:
        setting = [e for e in [first, *all_of("thread.updated")] if e and name in _sets(e)]
        winner = _latest(setting)
        if winner is not None:
            view[name] = _sets(winner)[name]

    pin = _latest(all_of("thread.pinned", "thread.unpinned"))
    view["is_pinned"] = pin is not None and pin.type == "thread.pinned"
    view["pinned_at"] = pin.time if view["is_pinned"] and pin else None

    delete = _latest(all_of("thread.deleted", "thread.restored"))
    view["is_deleted"] = delete is not None and delete.type == "thread.deleted"
    view["deleted_at"] = delete.time if view["is_deleted"] and delete else None

    messages = all_of("thread.message_added")
    view["message_count"] = len({_sent(m)["message_id"] for m in messages})
    # no messages: created_at, as the published example shows (None while not created)
    view["last_message_at"] = max((m.time for m in messages), default=view["created_at"])
    with_model = [m for m in messages if _sent(m).get("model") is not None]
    last = _latest(with_model)
    view["last_model_used"] = _sent(last)["model"] if last else None

    counted = [e for e in events if e.type != "thread.created"] + ([first] if first else [])
    view["updated_at"] = max((e.time for e in counted), default=None)
    return view
