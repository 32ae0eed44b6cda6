"""The simplest possible projector, for comparison only: FastStream defaults (one message per
call, ACK_FIRST auto-commit), and one store read and one store write per event."""

from __future__ import annotations

import asyncio
from typing import Any

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from consumers.projector import no_decoding
from services.bootstrap import bootstrap
from services.decoding import decode
from services.documents import from_document, to_document
from services.events import EVENT_TYPES
from services.projection import fold
from services.settings import get_settings


def create_app() -> FastStream:
    settings = get_settings()
    broker = KafkaBroker(settings.kafka_bootstrap_servers)
    app = FastStream(broker)
    running: dict[str, Any] = {}

    @app.on_startup
    async def start() -> None:
        running["services"] = await bootstrap(settings)

    @broker.subscriber(
        settings.topic,
        group_id=settings.consumer_group,
        auto_offset_reset="earliest",
        decoder=no_decoding,
    )
    async def project(message: KafkaMessage) -> None:
        raw = message.raw_message
        event = decode(raw.key, raw.value, [(k, v or b"") for k, v in raw.headers])
        if not isinstance(event, tuple(EVENT_TYPES.values())):
            return
        threads = running["services"].store.threads
        found = await threads.find_one({"_id": event.subject})
        state = fold(from_document(found) if found else None, [event])
        await threads.replace_one({"_id": state.id}, to_document(state, 1), upsert=True)

    return app


if __name__ == "__main__":
    asyncio.run(create_app().run())
