"""The simplest possible projector, for comparison only: FastStream defaults (one message per
call, ACK_FIRST auto-commit), and one store read and one store write per event."""

from __future__ import annotations

import asyncio

from faststream.kafka.annotations import KafkaMessage

from bench.peers import peer_app
from services.decoding import EVENT_MODELS, decode
from services.documents import from_document, to_document
from services.mongo.bootstrap import Services
from services.projection import fold


async def project(services: Services, message: KafkaMessage) -> None:
    raw = message.raw_message
    assert not isinstance(raw, tuple)  # one record per call: the app does not subscribe in batches
    event = decode(raw.key, raw.value, [(k, v or b"") for k, v in raw.headers])
    if not isinstance(event, EVENT_MODELS):
        return
    threads = services.store.threads
    found = await threads.find_one({"_id": event.subject})
    state = fold(from_document(found) if found else None, [event])
    await threads.replace_one({"_id": state.id}, to_document(state, 1), upsert=True)


if __name__ == "__main__":
    asyncio.run(peer_app(project).run())
