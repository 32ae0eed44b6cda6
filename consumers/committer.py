"""Commits a batch: its dead letters and its offsets in one Kafka transaction.

The store write comes first and is idempotent; then one transaction publishes the batch's
rejected records to the dead-letter topic and commits the batch's offsets. A crash before the
commit aborts both, and the batch is consumed again: the store write repeats harmlessly and
the dead letters are published once more, in a transaction that does commit. Readers of the
dead-letter topic with ``isolation_level="read_committed"`` therefore see each bad record
exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import uuid4

from aiokafka import AIOKafkaProducer, TopicPartition

from services.decoding import Rejected
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


def next_offsets(records: Sequence[Record]) -> dict[TopicPartition, int]:
    """Per partition, the offset to resume from: one past the batch's last record."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        offsets[partition] = max(offsets.get(partition, 0), record.offset + 1)
    return offsets


class TransactionalCommitter:
    """A transactional aiokafka producer: FastStream's publisher takes only text headers and
    cannot commit offsets in a transaction, and the original headers must go on as bytes.

    Args:
        bootstrap_servers: the Kafka cluster.
        dlq_topic: where rejected records go.
        group_id: the consumer group whose offsets are committed.
        instance_id: a stable name per projector instance; a restarted instance with the
            same name fences and aborts its predecessor's open transaction at once.
    """

    def __init__(
        self, bootstrap_servers: str, dlq_topic: str, group_id: str, instance_id: str | None
    ) -> None:
        self.dlq_topic = dlq_topic
        self.group_id = group_id
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id="threadview-projector",
            transactional_id=f"threadview-projector-{instance_id or uuid4().hex}",
            enable_idempotence=True,
            acks="all",
            transaction_timeout_ms=15_000,
        )

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def commit(
        self, records: Sequence[Record], rejected: Sequence[tuple[Record, Rejected]]
    ) -> None:
        async with self.producer.transaction():
            for record, rejection in rejected:
                await self.producer.send(
                    self.dlq_topic,
                    value=record.value,
                    key=record.key,
                    headers=dead_letter_headers(record, rejection.reason),
                )
            await self.producer.send_offsets_to_transaction(next_offsets(records), self.group_id)
