"""Events and folded states of made-up threads, for tests that write a store directly."""

from __future__ import annotations

import json

from consumers.sample import cloud_event
from services.decoding import Rejected, Unknown, decode
from services.events import Event
from services.projection import ThreadState, fold


def event(type: str, subject: str, time: str, data: dict[str, object]) -> Event:
    """One event as the projector would decode it from a record."""
    value = json.dumps(cloud_event(type, subject, time, data)).encode()
    decoded = decode(subject.encode(), value, [])
    if isinstance(decoded, Unknown | Rejected):
        raise ValueError(f"not an event: {decoded}")
    return decoded


def created(
    subject: str, time: str = "2025-11-17T10:00:00Z", org: str = "org_1", **data: object
) -> Event:
    return event(
        "thread.created", subject, time, {"organization_id": org, "user_id": "usr_1", **data}
    )


def message(subject: str, n: int, model: str | None = None) -> Event:
    data: dict[str, object] = {"message_id": f"m{n}"}
    if model is not None:
        data["model"] = model
    return event(
        "thread.message_added", subject, f"2025-11-17T10:{n // 60:02d}:{n % 60:02d}Z", data
    )


def state_of(*events: Event) -> ThreadState:
    return fold(None, events)
