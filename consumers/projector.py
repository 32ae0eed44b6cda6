"""The projector: a FastStream Kafka batch subscriber that folds thread events into the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiokafka import ConsumerRebalanceListener, ConsumerRecord
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker, Topic
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage

from consumers.committer import TransactionalCommitter
from consumers.replay import to_record
from consumers.topics import ensure_topics
from services.bootstrap import bootstrap
from services.projection import FOLD_VERSION
from services.projector import Projector
from services.settings import Settings, get_settings

log = logging.getLogger("threadview.projector")

Records = tuple[ConsumerRecord[bytes, bytes], ...]


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


class DrainOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before giving partitions up, let the batch in flight finish and commit, so that the
    next owner starts from its committed offsets and no two processes write one thread at
    once (each would keep refolding on the other's revision). Waits on an event, not a lock shared
    with the fetch loop, so it cannot deadlock; gives up after ``timeout`` seconds."""

    def __init__(self, idle: asyncio.Event, timeout: float) -> None:
        self.idle = idle
        self.timeout = timeout

    async def on_partitions_revoked(self, revoked: Any) -> None:
        try:
            await asyncio.wait_for(self.idle.wait(), self.timeout)
        except TimeoutError:
            log.warning("batch still in flight after %.0fs; giving up %s", self.timeout, revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        pass


def create_app(settings: Settings | None = None) -> FastStream:
    settings = settings or get_settings()
    broker = KafkaBroker(settings.kafka_bootstrap_servers, client_id="threadview-projector")
    app = FastStream(broker)
    running: dict[str, Any] = {}
    idle = asyncio.Event()
    idle.set()

    @app.on_startup
    async def start() -> None:
        await ensure_topics(settings)
        services = await bootstrap(settings)
        live = await services.catalog.require("live")
        if live.fold_version != FOLD_VERSION:
            log.warning(
                "the live view %r was built by fold version %s; this projector folds with "
                "version %s: rebuild it (threadview-rebuild run, then swap)",
                live.name,
                live.fold_version,
                FOLD_VERSION,
            )
        committer = TransactionalCommitter(
            settings.kafka_bootstrap_servers,
            settings.dlq_topic,
            settings.consumer_group,
            settings.instance_id,
        )
        await committer.start()
        running.update(services=services, committer=committer)
        running["projector"] = Projector(services.written_stores)

    @app.after_shutdown
    async def stop() -> None:
        await running["committer"].stop()
        await running["services"].close()

    @broker.subscriber(
        Topic(settings.topic, num_partitions=settings.topic_partitions),
        group_id=settings.consumer_group,
        # static membership: a restarted instance takes its partitions back without a
        # rebalance, instead of the group waiting for the dead member's session to expire
        group_instance_id=settings.instance_id,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        auto_offset_reset="earliest",
        # records of aborted transactions are never applied, and a record is seen only once
        # its transaction commits: the rebuild and the swap's handover read the same way
        isolation_level="read_committed",
        # offsets are committed by the committer's transaction, after the store write
        ack_policy=AckPolicy.MANUAL,
        listener=DrainOnRevoke(idle, timeout=60),
        parser=lenient_parser,
        decoder=no_decoding,
    )
    async def project(message: KafkaMessage) -> None:
        records = [to_record(r) for r in message.raw_message]
        idle.clear()
        try:
            started = time.perf_counter()
            outcome = await running["projector"].handle(records)
            written = time.perf_counter()
            await running["committer"].commit(records, outcome.rejected)
            log.info(
                "batch of %d: %d applied, %d of unknown types skipped, %d dead letters; "
                "store %.0f ms, commit %.0f ms",
                len(records),
                outcome.applied,
                outcome.unknown,
                len(outcome.rejected),
                (written - started) * 1000,
                (time.perf_counter() - written) * 1000,
            )
        except BaseException:
            # not committed: seek back so this batch is consumed again, never skipped (on
            # shutdown the consumer may be gone already; then the next owner starts from the
            # committed offsets anyway)
            with contextlib.suppress(Exception):
                await message.nack()
            raise
        finally:
            idle.set()

    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(create_app().run())


if __name__ == "__main__":
    main()
