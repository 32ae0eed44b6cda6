"""Plain aiokafka helpers for tests: produce records, read a topic to its end."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

Raw = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]  # key, value, headers


def structured(event: dict[str, Any]) -> Raw:
    """An event as a record in CloudEvents structured mode, keyed by its thread."""
    return (
        event["subject"].encode(),
        json.dumps(event).encode(),
        [("content-type", b"application/cloudevents+json")],
    )


async def produce(bootstrap: str, topic: str, records: Sequence[Raw]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send(topic, value, key=key, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


async def read_all(
    bootstrap: str, topic: str, expect: int, timeout_ms: int = 30_000
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic``, waiting up to ``timeout_ms`` for at least ``expect`` of them."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
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
