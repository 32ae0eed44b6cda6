"""The projector's Prometheus metrics, beside FastStream's own (KafkaPrometheusMiddleware).

Names are documented in docs/operations.md and used by docs/grafana/. Every label
value is bounded whatever producers send: event types become labels only while few and sane
(:class:`BoundedLabels`), reasons are the fixed rejection codes, partitions are the topic's.

Why this module is longer than ~200 lines: it declares every metric of the projector (the
dashboard's contract, docs/grafana/threadview.json) in one place, with the lag watcher that
feeds several of them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from consumers.topics import admin_client, committed_offsets, reader, topic_offsets
from services.projector import Outcome, Record
from services.settings import Settings

log = logging.getLogger("threadview.projector")

Partition = tuple[str, int]  # topic, partition
OTHER = "other"
FRESHNESS_HELP = (
    "Per partition this instance holds: 0 when no record waits (the last lag measure, less "
    "the batches applied since), else now minus the broker timestamp of the newest record "
    "applied; absent while records wait and none of that partition was applied yet."
)


class BoundedLabels:
    """Label values taken from what producers send, bounded: a value is its own label only if
    it matches ``pattern`` and fewer than ``limit`` values were taken; all others are ``other``.
    2,000 unknown types of 1 kB each once made /metrics 4.3 MB."""

    def __init__(self, limit: int = 32, pattern: str = r"[A-Za-z0-9._-]{1,64}") -> None:
        self.limit = limit
        self.pattern = re.compile(pattern)
        self.taken: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.taken:
            return value
        if len(self.taken) < self.limit and self.pattern.fullmatch(value):
            self.taken.add(value)
            return value
        return OTHER


class ProjectorMetrics:
    """The projector's own series, and the state /readyz decides on.

    Args:
        registry: where the series are registered.
        assigned: the partitions this instance holds now (default: every partition seen).
        failing_since: when the current run of failing store writes began, or None.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        assigned: Callable[[], Iterable[Partition]] | None = None,
        failing_since: Callable[[], float | None] = lambda: None,
    ) -> None:
        self.applied = Counter(
            "threadview_events_applied", "Events folded into the view.", registry=registry
        )
        self.skipped = Counter(
            "threadview_events_skipped",
            "Well-formed events of unknown types, skipped: by type, for the first 32 types "
            "matching [A-Za-z0-9._-]{1,64}; every other under type=other.",
            ["type"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "threadview_events_dead_lettered",
            "Records sent to the dead-letter topic, by reason (the rejection code).",
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
            "Store writes tried again, by cause (conflict, unavailable, failed).",
            ["cause"],
            registry=registry,
        )
        self.lag = Gauge(
            "threadview_consumer_lag_records",
            "End offset minus the group's committed offset, per partition.",
            ["topic", "partition"],
            registry=registry,
        )
        self.last_batch = Gauge(
            "threadview_last_batch_timestamp_seconds",
            "Unix time of the last batch applied.",
            registry=registry,
        )
        self.store_failing = Gauge(
            "threadview_store_failing_seconds",
            "How long the store's writes have been failing without a success (0 when fine).",
            registry=registry,
        )
        self.types = BoundedLabels()
        self.last_batch_at = 0.0
        self.newest: dict[Partition, tuple[int, int]] = {}  # next offset, its broker timestamp
        self.measured: dict[Partition, tuple[int, int]] = {}  # end offset, committed offset
        self.behind_since: dict[Partition, float] = {}  # when measured behind, without a break
        self.assigned = assigned or (lambda: {*self.measured, *self.newest})
        self.failing_since = failing_since
        self.store_failing.set_function(self._store_failing)
        registry.register(_Freshness(self))
        for cause in ("conflict", "unavailable", "failed"):
            self.retries.labels(cause)  # present at 0 from the start; see retried

    def retried(self, cause: str) -> None:
        """A store write tried again (services.projector's on_retry), counted as it happens."""
        self.retries.labels(cause).inc()

    def _store_failing(self) -> float:
        since = self.failing_since()
        return 0.0 if since is None else max(0.0, time.time() - since)

    def batch_done(self, records: Sequence[Record], outcome: Outcome, store_seconds: float) -> None:
        """Count a committed batch, and remember each partition's newest record in it."""
        self.batch.observe(len(records))
        self.store_write.observe(store_seconds)
        self.applied.inc(outcome.applied)
        for kind, count in outcome.unknown.items():
            self.skipped.labels(self.types(kind)).inc(count)
        for _, rejection in outcome.rejected:
            self.dead_lettered.labels(rejection.code).inc()
        for record in records:
            where = (record.topic, record.partition)
            if record.offset + 1 > self.newest.get(where, (0, 0))[0]:
                self.newest[where] = (record.offset + 1, record.timestamp)
        self.last_batch_at = time.time()
        self.last_batch.set(self.last_batch_at)

    def freshness(self, now: float) -> dict[Partition, float]:
        """Per held partition, how far the view is behind it, in seconds (FRESHNESS_HELP)."""
        found: dict[Partition, float] = {}
        for where in self.assigned():
            applied, stamp = self.newest.get(where, (0, 0))
            end, committed = self.measured.get(where, (-1, 0))
            if max(applied, committed) >= end >= 0:
                found[where] = 0.0
            elif stamp > 0:  # a record without a broker timestamp says nothing
                found[where] = max(0.0, now - stamp / 1000)
        return found

    def lagging_since(self) -> float | None:
        """Since when a partition this instance holds has been measured behind, or None."""
        held = set(self.assigned())
        return min((t for where, t in self.behind_since.items() if where in held), default=None)

    def lag_measured(self, topic: str, ends: dict[int, int], committed: dict[int, int]) -> None:
        now = time.time()
        for partition, end in ends.items():
            where, done = (topic, partition), committed.get(partition, 0)
            self.measured[where] = (end, done)
            self.lag.labels(topic, str(partition)).set(max(0, end - done))
            if end > done:
                self.behind_since.setdefault(where, now)
            else:
                self.behind_since.pop(where, None)

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
                    self.lag_measured(
                        settings.topic, ends, await committed_offsets(settings, admin)
                    )
                except Exception as exc:  # Kafka unreachable: try again next time
                    log.info("consumer lag not measured: %s", exc)
                await asyncio.sleep(settings.lag_interval_seconds)
        finally:
            await admin.close()
            await consumer.stop()


class _Freshness(Collector):
    """threadview_projection_freshness_seconds, computed at each scrape."""

    def __init__(self, metrics: ProjectorMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily("threadview_projection_freshness_seconds", FRESHNESS_HELP)]

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "threadview_projection_freshness_seconds",
            FRESHNESS_HELP,
            labels=["topic", "partition"],
        )
        for (topic, partition), seconds in sorted(self.metrics.freshness(time.time()).items()):
            family.add_metric([topic, str(partition)], seconds)
        yield family
