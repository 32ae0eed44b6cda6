"""What ``threadview-dlq redrive`` runs on: the events topic's producer (the adapter of
services.redrive.Sender) and the marks in the store (services.mongo.redrive_marks), opened
together and closed together."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaProducer

from consumers.kafka_security import client_options
from consumers.topics import partitions_of, reader
from services.mongo.bootstrap import connect
from services.mongo.redrive_marks import MongoRedriveMarks
from services.redrive import Headers, RedriveMarks, Sender, Target
from services.settings import Settings


class KafkaSender:
    """The events topic through an idempotent producer that waits for all in-sync replicas."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer, self.topic = producer, topic

    async def send(self, key: bytes | None, value: bytes | None, headers: Headers) -> Target:
        sent = await self.producer.send_and_wait(self.topic, value, key=key, headers=headers)
        return Target(self.topic, sent.partition, sent.offset)


@contextlib.asynccontextmanager
async def redriving(
    settings: Settings, dry_run: bool
) -> AsyncIterator[tuple[RedriveMarks, Sender | None]]:
    """The marks and (unless ``dry_run``: None) the sender, for the block's time.

    Raises:
        services.views.ViewError: the events topic does not exist.
        services.mongo.schema.NotMigrated: the store lacks the marks' collection.
    """
    await _require_target(settings)
    client, database = connect(settings)
    try:
        marks = await MongoRedriveMarks.checked(database)
    except BaseException:
        await client.close()
        raise
    producer = None
    if not dry_run:
        producer = AIOKafkaProducer(
            **client_options(settings),
            client_id="threadview-dlq",
            enable_idempotence=True,
            acks="all",
        )
        await producer.start()
    try:
        yield marks, KafkaSender(producer, settings.topic) if producer is not None else None
    finally:
        if producer is not None:
            await producer.stop()
        await client.close()


async def _require_target(settings: Settings) -> None:
    """Refuse to send to an events topic that does not exist (the broker might create one
    with its defaults, which a replayable log must not have)."""
    consumer = reader(settings)
    await consumer.start()
    try:
        await partitions_of(consumer, settings.topic)
    finally:
        await consumer.stop()
