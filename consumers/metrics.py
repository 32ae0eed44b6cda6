"""The projector's Prometheus metrics, beside FastStream's own (KafkaPrometheusMiddleware).

Names are documented in the README's operations section and used by docs/grafana/.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from consumers.topics import admin_client, committed_offsets, reader, topic_offsets
from services.projector import Outcome
from services.settings import Settings

log = logging.getLogger("threadview.projector")


class ProjectorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.applied = Counter(
            "threadview_events_applied", "Events folded into the view.", registry=registry
        )
        self.skipped = Counter(
            "threadview_events_skipped",
            "Well-formed events of unknown types, skipped.",
            ["type"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "threadview_events_dead_lettered",
            "Records sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.batch = Histogram(
            "threadview_batch_records",
            "Records per batch.",
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
            registry=registry,
        )
        self.store_write = Histogram(
            "threadview_store_write_seconds",
            "Store time per batch: load, fold and write, retries included.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.retries = Counter(
            "threadview_store_retries",
            "Store writes tried again, by cause (conflict, unavailable).",
            ["cause"],
            registry=registry,
        )
        self.lag = Gauge(
            "threadview_consumer_lag_records",
            "End offset minus the group's committed offset, per partition.",
            ["topic", "partition"],
            registry=registry,
        )
        self.freshness = Gauge(
            "threadview_projection_freshness_seconds",
            "Now minus the time of the newest event applied (NaN before the first).",
            registry=registry,
        )
        self.last_batch = Gauge(
            "threadview_last_batch_timestamp_seconds",
            "Unix time of the last batch applied.",
            registry=registry,
        )
        self.newest: datetime | None = None
        self.last_batch_at = 0.0
        self.freshness.set_function(self._freshness)
        for cause in ("conflict", "unavailable"):
            self.retries.labels(cause)  # present at 0 from the start

    def _freshness(self) -> float:
        if self.newest is None:
            return math.nan
        return max(0.0, (datetime.now(UTC) - self.newest).total_seconds())

    def batch_done(self, records: int, outcome: Outcome, store_seconds: float) -> None:
        self.batch.observe(records)
        self.store_write.observe(store_seconds)
        self.applied.inc(outcome.applied)
        for kind, count in outcome.unknown.items():
            self.skipped.labels(kind).inc(count)
        for _, rejection in outcome.rejected:
            self.dead_lettered.labels(rejection.code).inc()
        for cause, count in outcome.retries.items():
            self.retries.labels(cause).inc(count)
        if outcome.newest is not None and (self.newest is None or outcome.newest > self.newest):
            self.newest = outcome.newest
        self.last_batch_at = time.time()
        self.last_batch.set(self.last_batch_at)

    async def watch_lag(self, settings: Settings) -> None:
        """Every ``lag_interval_seconds``: each partition's end offset minus the committed one.

        Read from Kafka rather than from the batches, so the gauge keeps moving while the
        projector is stuck (store down) or stopped elsewhere.
        """
        consumer, admin = reader(settings), admin_client(settings)
        await consumer.start()
        await admin.start()
        try:
            while True:
                try:
                    ends = (await topic_offsets(consumer, settings.topic)).end
                    committed = await committed_offsets(settings, admin)
                    for partition, end in ends.items():
                        behind = max(0, end - committed.get(partition, 0))
                        self.lag.labels(settings.topic, str(partition)).set(behind)
                except Exception as exc:  # Kafka unreachable: try again next time
                    log.info("consumer lag not measured: %s", exc)
                await asyncio.sleep(settings.lag_interval_seconds)
        finally:
            await admin.close()
            await consumer.stop()
