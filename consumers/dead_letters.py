"""The dead-letter path: a record that breaks the contract goes to the DLQ topic, bytes intact."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from services.projector import Record


def dead_letter_headers(record: Record, reason: str) -> list[tuple[str, bytes]]:
    """The original headers, then why the record was refused, where it came from and when."""
    return [
        *record.headers,
        ("dlq.reason", reason.encode()),
        ("dlq.topic", record.topic.encode()),
        ("dlq.partition", str(record.partition).encode()),
        ("dlq.offset", str(record.offset).encode()),
        ("dlq.timestamp", str(record.timestamp).encode()),
        ("dlq.failed_at", datetime.now(UTC).isoformat(timespec="milliseconds").encode()),
    ]


class KafkaDeadLetters:
    """Publishes with a plain aiokafka producer: FastStream's publisher only takes text headers,
    and the original headers must go on as the bytes they were."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.topic = topic
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id="threadview-dead-letters",
            acks="all",
            enable_idempotence=True,
        )

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def send(self, record: Record, reason: str) -> None:
        await self.producer.send_and_wait(
            self.topic,
            value=record.value,
            key=record.key,
            headers=dead_letter_headers(record, reason),
        )
