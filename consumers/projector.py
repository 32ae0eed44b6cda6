"""The projector: a FastStream Kafka batch subscriber that folds thread events into the store.

Why this module is longer than ~200 lines: the FastStream app, its batch handler, the commit
after the store write and the partition-revocation drain are one protocol (the offsets committed
only for what the store holds), which reads best in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import uvicorn
from aiokafka import ConsumerRebalanceListener, ConsumerRecord
from faststream import AckPolicy
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.kafka import KafkaBroker, Topic
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.message import StreamMessage
from prometheus_client import CollectorRegistry, make_asgi_app

from consumers.committer import TransactionalCommitter
from consumers.kafka_security import broker_security, client_options
from consumers.metrics import ProjectorMetrics
from consumers.replay import to_record
from consumers.topics import ensure_topics
from services.decoding import Bounds
from services.logs import configure as configure_logging
from services.mongo.bootstrap import bootstrap
from services.projector import Projector, Record
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
        self.assigned: set[Any] = set()  # what Kafka gave this instance (readiness)

    async def on_partitions_revoked(self, revoked: Any) -> None:
        try:
            await asyncio.wait_for(self.idle.wait(), self.timeout)
        except TimeoutError:
            log.warning("batch still in flight after %.0fs; giving up %s", self.timeout, revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.assigned = set(assigned)


def create_app(settings: Settings | None = None) -> AsgiFastStream:
    """The projector, with its HTTP port: /healthz, /readyz and /metrics."""
    settings = settings or get_settings()
    registry = CollectorRegistry()
    running: dict[str, Any] = {}
    idle = asyncio.Event()
    idle.set()
    listener = DrainOnRevoke(idle, timeout=60)
    metrics = ProjectorMetrics(
        registry,
        assigned=lambda: {(tp.topic, tp.partition) for tp in listener.assigned},
        # Projector.failing_since: when its current run of failing store attempts began
        failing_since=lambda: getattr(running.get("projector"), "failing_since", None),
    )
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=broker_security(settings),
        client_id="threadview-projector",
        metadata_max_age_ms=settings.kafka_metadata_max_age_ms,
        logger=logging.getLogger("threadview.faststream"),
        log_level=logging.DEBUG,  # its "Received"/"Processed" per batch: our batch line says more
        middlewares=[KafkaPrometheusMiddleware(registry=registry, app_name="threadview-projector")],
    )

    @get(include_in_schema=False)
    async def healthz(scope: Any) -> AsgiResponse:
        return AsgiResponse(b'{"status": "alive"}', 200, {"content-type": "application/json"})

    @get(include_in_schema=False)
    async def readyz(scope: Any) -> AsgiResponse:
        """Ready unless a rule of :func:`readiness_problems` says otherwise."""
        services = running.get("services")
        answers = services is not None and await services.ping(settings.ready_timeout_ms)
        problems = readiness_problems(
            time.time(),
            store_answers=answers,
            assigned=bool(listener.assigned),
            last_batch_at=metrics.last_batch_at,
            lagging_since=metrics.lagging_since(),
            failing_since=metrics.failing_since(),
            stall_seconds=settings.stall_seconds,
            refused=await refusal(running.get("projector"), settings.ready_timeout_ms),
        )
        return readiness(problems)

    app = AsgiFastStream(
        broker,
        asgi_routes=[
            ("/healthz", healthz),
            ("/readyz", readyz),
            ("/metrics", make_asgi_app(registry)),
        ],
        logger=log,
    )

    @app.on_startup
    async def start() -> None:
        await ensure_topics(settings)
        # on a store not migrated for this release: unready, writing nothing, until it is
        services = await bootstrap(settings, unmigrated=True)
        committer = TransactionalCommitter(
            client_options(settings),
            settings.dlq_topic,
            settings.consumer_group,
            settings.instance_id,
            dlq_max_bytes=settings.dlq_max_bytes,
        )
        await committer.start()
        running.update(services=services, committer=committer)
        running["projector"] = Projector(
            services.written_stores,
            bounds=Bounds.from_settings(settings),
            on_retry=metrics.retried,
        )
        # views of another fold version: said (ERROR) and unready now, not at the first batch
        await running["projector"].check()
        running["lag"] = asyncio.create_task(metrics.watch_lag(settings))

    @app.after_shutdown
    async def stop() -> None:
        running["lag"].cancel()
        await running["committer"].stop()
        await running["services"].close()

    @broker.subscriber(
        # created (or found) by ensure_topics at start, with the settings a replayable log
        # needs; FastStream's own attempt needs the CREATE a least-privilege user lacks
        Topic(settings.topic, declare=False),
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
        listener=listener,
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
            metrics.batch_done(records, outcome, written - started)
            where = offsets(records)
            log.info(
                "batch of %d: %d applied, %d of unknown types skipped, %d dead letters; "
                "store %.0f ms, commit %.0f ms; %s %s",
                len(records),
                outcome.applied,
                sum(outcome.unknown.values()),
                len(outcome.rejected),
                (written - started) * 1000,
                (time.perf_counter() - written) * 1000,
                settings.topic,
                " ".join(f"{p}:{first}-{last}" for p, (first, last) in where.items()),
                extra={"topic": settings.topic, "partitions": where},
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


def offsets(records: list[Record]) -> dict[int, tuple[int, int]]:
    """Per partition, the first and last offset of a batch (for its log line)."""
    found: dict[int, tuple[int, int]] = {}
    for record in records:
        first, last = found.get(record.partition, (record.offset, record.offset))
        found[record.partition] = (min(first, record.offset), max(last, record.offset))
    return found


async def refusal(projector: Projector | None, timeout_ms: int) -> str | None:
    """Why the projector refuses to write the views (:attr:`Projector.refused`), asked again
    while it does, so that an idle projector turns ready once a swap fixed it."""
    if projector is None or projector.refused is None:
        return None
    with contextlib.suppress(Exception):  # the store not answering is a problem of its own
        return await asyncio.wait_for(projector.check(), timeout_ms / 1000)
    return projector.refused


def readiness_problems(
    now: float,
    *,
    store_answers: bool,
    assigned: bool,
    last_batch_at: float,
    lagging_since: float | None,
    failing_since: float | None,
    stall_seconds: float,
    refused: str | None = None,
) -> list[str]:
    """Why the projector is not ready (none: ready). It is not when it refuses to write the
    views (built by another fold version: at once, with the reason); when the store does not
    answer a ping; when Kafka gave it no partitions and it applied no batch in the last minute
    (one of several instances may hold none); when a partition it holds has had records
    waiting for ``stall_seconds`` and no batch was committed in that time (stalled: whatever
    the cause, a record, the store or Kafka); or when the store has been failing that long.

    Args:
        now: the time, in seconds since the epoch, as every other argument.
        store_answers: the store answered a ping in time.
        assigned: Kafka gave this instance partitions.
        last_batch_at: when the last batch was committed (0: never).
        lagging_since: since when a partition it holds has been measured behind, or None.
        failing_since: since when the store's attempts have been failing, or None.
        stall_seconds: how long either may last.
        refused: why it refuses to write the views, or None.
    """
    problems = [refused] if refused else []
    if not store_answers:
        problems.append("store not answering")
    if not assigned and now - last_batch_at >= 60:
        problems.append("no partitions assigned and no batch applied in the last minute")
    if lagging_since is not None:
        stalled = now - max(lagging_since, last_batch_at)
        if stalled >= stall_seconds:
            problems.append(
                f"stalled: records waiting and no batch committed for {stalled:.0f} s "
                f"(limit {stall_seconds:g} s)"
            )
    if failing_since is not None and now - failing_since >= stall_seconds:
        problems.append(
            f"store writes failing for {now - failing_since:.0f} s (limit {stall_seconds:g} s)"
        )
    return problems


def readiness(problems: list[str]) -> AsgiResponse:
    body = json.dumps({"status": "unready" if problems else "ready", "problems": problems})
    return AsgiResponse(
        body.encode(), 503 if problems else 200, {"content-type": "application/json"}
    )


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.projector_host,
        port=settings.projector_port,
        log_config=None,  # our handlers (services.logs), no colour
        access_log=False,
    )


if __name__ == "__main__":
    main()
