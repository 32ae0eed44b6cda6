"""A connector-style projector, for comparison only: what a team would otherwise deploy — a
Kafka sink that turns every event into an idempotent update operator and sends a batch's
events as one unordered bulk of upserts, reading nothing (as the MongoDB Kafka sink connector
does with a custom write model, or a hand-written equivalent).

Per event, by ``_id`` (the thread), with ``upsert``:

- ``thread.created``: ``$setOnInsert`` of the owner fields, ``$set`` of the initial fields;
- ``thread.message_added``: ``$addToSet`` of the message id, ``$max`` of ``last_message_at``
  and ``updated_at``, ``$set`` of ``last_model_used``;
- ``thread.updated``: ``$set`` of the fields it carries, ``$max`` of ``updated_at``;
- pinned, unpinned, deleted, restored: ``$set`` of the flag and its time.

It is weaker than the fold — the last arrival wins, not the latest event; the message count is
the array's size, recomputed by whoever reads; no dead letters, no owner rule, the whole id
array in the document — so it can only be faster: it is the throughput bar, not a
correctness peer. Batches of up to ``THREADVIEW_BATCH_MAX_RECORDS``; offsets committed after
the bulk write (at least once), as a sink connector commits after its flush.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage
from pymongo import UpdateOne

from bench.peers import peer_app
from consumers.projector import lenient_parser
from services import events as ev
from services.decoding import EVENT_MODELS, decode
from services.mongo.bootstrap import Services
from services.settings import get_settings

EVENTS = EVENT_MODELS


def operation(event: ev.Event) -> UpdateOne | None:
    """The upsert that applies ``event`` to its thread's document, reading nothing."""
    t = event.time
    update: dict[str, dict[str, Any]]
    match event:
        case ev.ThreadCreated(data=d):
            owner = {
                "organization_id": d.organization_id,
                "user_id": d.user_id,
                "assistant_id": d.assistant_id,
                "workflow_id": d.workflow_id,
                "created_at": t,
            }
            fields = {
                "title": d.title,
                "status": d.status,
                "space_ids": list(d.space_ids),
                "visible_in_ui": d.visible_in_ui,
                "metadata": [{"k": k, "v": v} for k, v in d.metadata.items()],
            }
            update = {"$setOnInsert": owner, "$set": fields, "$max": {"updated_at": t}}
        case ev.MessageAdded(data=d):
            update = {
                "$addToSet": {"message_ids": d.message_id},
                "$max": {"last_message_at": t, "updated_at": t},
            }
            if d.model is not None:
                update["$set"] = {"last_model_used": d.model}
        case ev.ThreadUpdated(data=d):
            given = {name: getattr(d, name) for name in d.model_fields_set}
            if "metadata" in given:
                given["metadata"] = [{"k": k, "v": v} for k, v in (given["metadata"] or {}).items()]
            update = {"$max": {"updated_at": t}} | ({"$set": given} if given else {})
        case ev.ThreadPinned() | ev.ThreadUnpinned():
            pinned = isinstance(event, ev.ThreadPinned)
            update = {"$set": {"is_pinned": pinned, "pinned_at": t if pinned else None}}
        case ev.ThreadDeleted() | ev.ThreadRestored():
            deleted = isinstance(event, ev.ThreadDeleted)
            update = {"$set": {"is_deleted": deleted, "deleted_at": t if deleted else None}}
        case _:
            return None
    return UpdateOne({"_id": event.subject}, update, upsert=True)


async def project(services: Services, message: KafkaMessage) -> None:
    operations = []
    for raw in message.raw_message:
        event = decode(raw.key, raw.value, [(k, v or b"") for k, v in raw.headers])
        if isinstance(event, EVENTS) and (found := operation(event)) is not None:
            operations.append(found)
    if operations:
        await services.store.threads.bulk_write(operations, ordered=False)


if __name__ == "__main__":
    settings = get_settings()
    app = peer_app(
        project,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        ack_policy=AckPolicy.ACK,  # committed once the handler returned: after the write
        parser=lenient_parser,
    )
    asyncio.run(app.run())
