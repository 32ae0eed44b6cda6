"""The topics: created with the settings a replayable log needs, and where their offsets stand."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, TopicAuthorizationFailedError, for_code

from consumers.kafka_security import client_options
from services.settings import Settings
from services.views import ViewError

log = logging.getLogger(__name__)

# Events cannot be compacted (the key is the thread id: compaction would keep one event per
# thread), and a rebuild replays the log from its first record, so nothing may expire.
# LogAppendTime makes a record's timestamp the time the broker appended it, which is what
# `threadview-rebuild run --as-was` selects by.
TOPIC_CONFIG = {
    "cleanup.policy": "delete",
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "message.timestamp.type": "LogAppendTime",
}


async def ensure_topics(settings: Settings) -> None:
    """Create the events topic and the dead-letter topic unless they exist (then unchanged).

    The dead-letter topic has one partition: it is small, and its records are addressed by
    offset alone (threadview-dlq show OFFSET).
    """
    admin = admin_client(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        for name, partitions in (
            (settings.topic, settings.topic_partitions),
            (settings.dlq_topic, 1),
        ):
            if name in existing:
                continue
            topic = NewTopic(name, partitions, 1, topic_configs=TOPIC_CONFIG)
            response = await admin.create_topics([topic])
            (_, code, message), *_ = response.topic_errors
            if code == 0:
                log.info("created topic %s (%d partitions)", name, partitions)
            elif code == TopicAuthorizationFailedError.errno:
                # a principal with least privilege (README, "Kafka security") may neither
                # create a topic nor see one it does not use (the dead-letter topic, for a
                # producer of events): the topics are created by one that may
                log.warning("topic %s not seen and not created: this Kafka user may not", name)
            elif code != TopicAlreadyExistsError.errno:  # else created meanwhile by another
                raise for_code(code)(f"creating topic {name}: {message}")
    finally:
        await admin.close()


@dataclass(frozen=True)
class Offsets:
    """Per partition of a topic: its first offset still held, and its end (read committed:
    the first offset of a transaction still open, or one past the last record)."""

    begin: dict[int, int]
    end: dict[int, int]

    @property
    def total(self) -> int:
        return sum(self.end[p] - self.begin[p] for p in self.end)

    def truncated(self) -> list[int]:
        """Partitions whose first records were deleted (retention): a replay would miss them."""
        return sorted(p for p, first in self.begin.items() if first > 0)


def reader(settings: Settings, **config: int | str) -> AIOKafkaConsumer:
    """A consumer outside any group (nothing committed, the live projector untouched) that
    sees committed records only."""
    return AIOKafkaConsumer(
        **client_options(settings),
        client_id="threadview-rebuild",
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **config,
    )


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    for _ in range(50):  # a topic just created may take a moment to show in the metadata
        metadata = await consumer._client.fetch_all_metadata()
        partitions = metadata.partitions_for_topic(topic)
        if partitions:
            return sorted(partitions)
        await asyncio.sleep(0.1)
    raise ViewError(f"topic {topic!r} does not exist")


async def topic_offsets(
    consumer: AIOKafkaConsumer, topic: str, appended_by: datetime | None = None
) -> Offsets:
    """The topic's offsets now; with ``appended_by``, each end moved back to the first record
    appended after that time (so the records before it are the log as it was then)."""
    tps = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic)]
    begin = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)
    ends = {tp.partition: offset for tp, offset in end.items()}
    if appended_by is not None:
        after = int(appended_by.timestamp() * 1000) + 1
        found = await consumer.offsets_for_times({tp: after for tp in tps})
        for tp, at in found.items():
            if at is not None:
                ends[tp.partition] = min(ends[tp.partition], at.offset)
    return Offsets({tp.partition: o for tp, o in begin.items()}, ends)


def admin_client(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**client_options(settings), client_id="threadview-admin")


async def committed_offsets(
    settings: Settings, admin: AIOKafkaAdminClient | None = None
) -> dict[int, int]:
    """Per partition of the events topic, the projector group's committed offset; asked with
    ``admin`` when given (a caller asking again and again keeps one), else a client of its own.
    """
    if admin is not None:
        found = await admin.list_consumer_group_offsets(settings.consumer_group)
    else:
        own = admin_client(settings)
        await own.start()
        try:
            found = await own.list_consumer_group_offsets(settings.consumer_group)
        finally:
            await own.close()
    return {
        tp.partition: meta.offset
        for tp, meta in found.items()
        if tp.topic == settings.topic and meta.offset >= 0
    }
