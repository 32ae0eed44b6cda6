"""Threads too heavy for the store: what a very long thread reached before its message ids
left the document (issue 17), made on purpose to test what a refused write does."""

from __future__ import annotations

import bson

from consumers.sample import cloud_event
from services.documents import to_document
from services.projection import ThreadState, fold
from tests.unit.strategies import to_event

LIMIT = 16 * 1024 * 1024  # the server's largest document


def nearly_full(thread: str, organization: str = "org_1") -> ThreadState:
    """A thread whose document is within 300 bytes of the server's limit: three more message
    ids of 128 characters and no write of it can succeed any more."""
    owner = {"organization_id": organization, "user_id": "usr_1"}
    created = cloud_event("thread.created", thread, "2025-11-17T10:00:00Z", owner, id=f"{thread}_c")
    state = fold(None, [to_event(created)])
    size = _size(state)
    state.message_ids = {f"{'m' * 100}{i:010d}" for i in range((LIMIT - size) // 130)}
    size, i = _size(state), len(state.message_ids)
    while size < LIMIT - 300:  # top it up, in few rounds
        for _ in range(max(1, (LIMIT - 300 - size) // 140)):
            state.message_ids.add(f"{'n' * 100}{i:010d}")
            i += 1
        size = _size(state)
    assert LIMIT - 300 <= size < LIMIT
    return state


def _size(state: ThreadState) -> int:
    return len(bson.encode({**to_document(state, 1), "wid": "w" * 32}))
