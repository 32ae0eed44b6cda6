"""Thread documents too heavy for the store, made on purpose to test what a refused write
does. Since message ids left the thread document (issue 17) no contract event makes one grow
past the server's limit, so the document is written outside the contract: padded to within
300 bytes of the limit, which any longer title then takes past it."""

from __future__ import annotations

from typing import Any

import bson

from consumers.sample import cloud_event
from services.documents import to_document
from services.mongo.store import MongoThreadStore
from services.projection import fold
from tests.unit.strategies import to_event

LIMIT = 16 * 1024 * 1024  # the server's largest document


async def store_nearly_full(store: MongoThreadStore, thread: str, org: str = "org_1") -> None:
    """Store a thread whose document is within 300 bytes of the server's limit."""
    owner = {"organization_id": org, "user_id": "usr_1"}
    created = cloud_event("thread.created", thread, "2025-11-17T10:00:00Z", owner, id=f"{thread}_c")
    document = {**to_document(fold(None, [to_event(created)]), 1), "wid": "w" * 32, "pad": ""}
    document["pad"] = "p" * (LIMIT - 300 - len(bson.encode(document)))
    assert LIMIT - 300 <= len(bson.encode(document)) < LIMIT
    await store.threads.insert_one(document)


def longer_title(thread: str, id: str, letter: str) -> dict[str, Any]:
    """An update no write of a nearly full thread can take: a title of 900 characters."""
    data = {"title": letter * 900}
    return cloud_event("thread.updated", thread, "2025-11-17T10:05:00Z", data, id=id)
