"""The projector: a FastStream Kafka batch subscriber that folds thread events into the store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiokafka import ConsumerRecord
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker, Topic
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage

from consumers.dead_letters import KafkaDeadLetters
from services.bootstrap import bootstrap
from services.projector import Projector, Record
from services.settings import Settings, get_settings

log = logging.getLogger("threadview.projector")

Records = tuple[ConsumerRecord[bytes, bytes], ...]


def to_record(raw: ConsumerRecord[bytes, bytes]) -> Record:
    return Record(
        topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        key=raw.key,
        value=raw.value,
        headers=[(name, value or b"") for name, value in raw.headers],
        timestamp=raw.timestamp,
    )


async def lenient_parser(
    records: Records, parse: Callable[[Records], Awaitable[StreamMessage[Records]]]
) -> StreamMessage[Records]:
    """FastStream decodes every header as UTF-8 and fails the whole batch on one that is not:
    let it parse text-safe copies, then hand the handler the untouched records."""
    safe = tuple(
        replace(
            r, headers=[(k, (v or b"").decode(errors="replace").encode()) for k, v in r.headers]
        )
        for r in records
    )
    message = await parse(safe)
    message.raw_message = records
    return message


async def no_decoding(message: StreamMessage[Records]) -> None:
    """The projector reads the raw records; bodies that are not JSON must not fail the batch."""
    return None


def create_app(settings: Settings | None = None) -> FastStream:
    settings = settings or get_settings()
    broker = KafkaBroker(settings.kafka_bootstrap_servers, client_id="threadview-projector")
    app = FastStream(broker)
    running: dict[str, Any] = {}

    @app.on_startup
    async def start() -> None:
        services = await bootstrap(settings)
        dead_letters = KafkaDeadLetters(settings.kafka_bootstrap_servers, settings.dlq_topic)
        await dead_letters.start()
        running.update(services=services, dead_letters=dead_letters)
        running["projector"] = Projector(services.store, dead_letters)

    @app.after_shutdown
    async def stop() -> None:
        await running["dead_letters"].stop()
        await running["services"].close()

    @broker.subscriber(
        Topic(settings.topic, num_partitions=settings.topic_partitions),
        group_id=settings.consumer_group,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        auto_offset_reset="earliest",
        # commit only after the handler returned, i.e. after the store write; on an error
        # seek back so the batch is consumed again rather than skipped
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=lenient_parser,
        decoder=no_decoding,
    )
    async def project(message: KafkaMessage) -> None:
        await running["projector"].handle([to_record(r) for r in message.raw_message])

    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(create_app().run())


if __name__ == "__main__":
    main()
