"""Plain aiokafka helpers for tests and benchmarks: produce records, read a topic to its end."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

Raw = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]  # key, value, headers


def structured(event: dict[str, Any]) -> Raw:
    """An event as a record in CloudEvents structured mode, keyed by its thread."""
    return (
        event["subject"].encode(),
        json.dumps(event).encode(),
        [("content-type", b"application/cloudevents+json")],
    )


async def produce(bootstrap: str, topic: str, records: Sequence[Raw]) -> list[tuple[int, int]]:
    """Publish ``records`` in order; return each one's (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, value, key=key, headers=headers)
            for key, value, headers in records
        ]
        await producer.flush()
        return [(m.partition, m.offset) for m in [await f for f in sent]]
    finally:
        await producer.stop()


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, replication_factor=1)])
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    """Deletes the topics whose names start with ``prefix``; their names."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if topics:
            await admin.delete_topics(topics)
        return topics
    finally:
        await admin.close()


async def lag(bootstrap: str, topic: str, group: str) -> int:
    """How many records of ``topic`` the group has not committed yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        described = await admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]]
        assert partitions, f"no partitions for {topic}"
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group)
        return sum(
            end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items()
        )
    finally:
        await consumer.stop()
        await admin.close()


async def read_all(
    bootstrap: str, topic: str, expect: int, timeout_ms: int = 30_000
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic``, waiting up to ``timeout_ms`` for at least ``expect`` of them."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",  # dead letters are published in transactions
    )
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        waited = 0
        while waited < timeout_ms:
            batch = await consumer.getmany(timeout_ms=500)
            found += [record for records in batch.values() for record in records]
            waited += 500
            if len(found) >= expect and not batch:
                break
    finally:
        await consumer.stop()
    return found
