"""The projector's metrics and readiness: bounded labels whatever producers send, freshness from
broker timestamps per partition, and the rules that make /readyz fail."""

from __future__ import annotations

import random
import string
import time
from collections import Counter

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consumers.metrics import OTHER, BoundedLabels, ProjectorMetrics
from consumers.projector import readiness_problems
from services.decoding import Rejected
from services.projector import Outcome, Record

TOPIC = "threads.events"


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
        if s.name == name
    }


def outcome(unknown: Counter[str] | None = None, rejected: int = 0) -> Outcome:
    record = Record(TOPIC, 0, 0, b"k", b"v", [])
    return Outcome(
        applied=0,
        unknown=unknown or Counter(),
        rejected=[(record, Rejected("not_json", "x"))] * rejected,
    )


def records(partition: int, offsets: range, stamp_ms: int) -> list[Record]:
    return [Record(TOPIC, partition, o, b"k", b"v", [], stamp_ms) for o in offsets]


def test_two_thousand_unknown_types_keep_the_exposition_small() -> None:
    # given: 2,000 distinct types of about 1 kB, 32 sane ones first, each sent a few times
    rng = random.Random(15)
    sane = [f"thread.custom_{n}" for n in range(40)]
    junk = ["".join(rng.choices(string.printable, k=1000)) for _ in range(2000 - len(sane))]
    sent = Counter({kind: rng.randint(1, 5) for kind in [*sane, *junk]})
    registry = CollectorRegistry()
    metrics = ProjectorMetrics(registry)

    # when: they arrive over many batches
    kinds = list(sent.items())
    for start in range(0, len(kinds), 100):
        metrics.batch_done([], outcome(Counter(dict(kinds[start : start + 100]))), 0.01)

    # then: /metrics stays small, the first 32 sane types are labels, and nothing is lost
    assert len(generate_latest(registry)) < 20_000
    found = samples(registry, "threadview_events_skipped_total")
    labels = {dict(labels)["type"] for labels in found}
    assert labels == {*sane[:32], OTHER}
    assert sum(found.values()) == sum(sent.values())
    assert found[(("type", sane[0]),)] == sent[sane[0]]


def test_a_label_is_taken_only_while_few_and_sane() -> None:
    bounded = BoundedLabels(limit=2)
    assert [bounded(v) for v in ("a.b", "x y", "c-1", "d", "a.b", "é")] == [
        "a.b",
        OTHER,
        "c-1",
        OTHER,
        "a.b",
        OTHER,
    ]
    assert BoundedLabels()("x" * 65) == OTHER and BoundedLabels()("x" * 64) == "x" * 64


def test_dead_letters_are_counted_by_code() -> None:
    registry = CollectorRegistry()
    ProjectorMetrics(registry).batch_done([], outcome(rejected=3), 0.01)
    assert samples(registry, "threadview_events_dead_lettered_total") == {
        (("reason", "not_json"),): 3
    }


def test_freshness_per_partition_comes_from_broker_timestamps() -> None:
    registry = CollectorRegistry()
    held = {(TOPIC, 0), (TOPIC, 1), (TOPIC, 2), (TOPIC, 3)}
    metrics = ProjectorMetrics(registry, assigned=lambda: held)
    now = time.time()
    # partition 0: applied up to offset 9, stamped 30 s ago, 5 records still waiting
    metrics.batch_done(records(0, range(10), int((now - 30) * 1000)), outcome(), 0.01)
    # partition 1: applied to its end; partition 2: waiting, nothing applied yet;
    # partition 3: waiting at the measure, applied past it since; partition 4: not held
    metrics.batch_done(records(1, range(3), int((now - 99) * 1000)), outcome(), 0.01)
    metrics.batch_done(records(3, range(8), int((now - 50) * 1000)), outcome(), 0.01)
    metrics.batch_done(records(4, range(1), int((now - 70) * 1000)), outcome(), 0.01)
    metrics.lag_measured(TOPIC, {0: 15, 1: 3, 2: 4, 3: 8, 4: 9}, {0: 10, 1: 3, 3: 5, 4: 1})

    found = samples(registry, "threadview_projection_freshness_seconds")
    by_partition = {dict(labels)["partition"]: value for labels, value in found.items()}
    assert set(by_partition) == {"0", "1", "3"}
    assert 29 < by_partition["0"] < 40
    assert by_partition["1"] == 0 and by_partition["3"] == 0
    assert all(dict(labels)["topic"] == TOPIC for labels in found)
    assert (
        samples(registry, "threadview_consumer_lag_records")[(("partition", "0"), ("topic", TOPIC))]
        == 5
    )


def test_a_producer_time_cannot_freeze_freshness() -> None:
    # a CreateTime topic lets a producer stamp a record in 9999: the next record moves it on
    metrics = ProjectorMetrics(CollectorRegistry(), assigned=lambda: {(TOPIC, 0)})
    now = time.time()
    metrics.batch_done(records(0, range(1), 253_402_300_799_000), outcome(), 0.01)
    metrics.batch_done(records(0, range(1, 2), int((now - 20) * 1000)), outcome(), 0.01)
    metrics.lag_measured(TOPIC, {0: 9}, {0: 2})
    assert 19 < metrics.freshness(now)[(TOPIC, 0)] < 21


def test_lagging_since_counts_held_partitions_until_caught_up() -> None:
    held = {(TOPIC, 0)}
    metrics = ProjectorMetrics(CollectorRegistry(), assigned=lambda: held)
    metrics.lag_measured(TOPIC, {0: 0, 1: 5}, {})
    assert metrics.lagging_since() is None  # partition 1 is someone else's
    before = time.time()
    metrics.lag_measured(TOPIC, {0: 5, 1: 5}, {})
    first = metrics.lagging_since()
    assert first is not None and first >= before
    metrics.lag_measured(TOPIC, {0: 6, 1: 5}, {0: 2})
    assert metrics.lagging_since() == first  # still behind: since the first measure
    metrics.lag_measured(TOPIC, {0: 6, 1: 5}, {0: 6})
    assert metrics.lagging_since() is None


def test_store_failing_seconds() -> None:
    registry = CollectorRegistry()
    failing: list[float | None] = [None]
    ProjectorMetrics(registry, failing_since=lambda: failing[0])
    assert samples(registry, "threadview_store_failing_seconds") == {(): 0}
    failing[0] = time.time() - 42
    assert 41 < samples(registry, "threadview_store_failing_seconds")[()] < 50


def ready(now: float = 10_000.0, **changes: object) -> list[str]:
    state: dict[str, object] = {
        "store_answers": True,
        "assigned": True,
        "last_batch_at": now - 5,
        "lagging_since": None,
        "failing_since": None,
        "stall_seconds": 120.0,
    }
    state.update(changes)
    return readiness_problems(now, **state)  # type: ignore[arg-type]


def test_readiness_rules() -> None:
    now = 10_000.0
    assert ready() == []
    assert ready(store_answers=False) == ["store not answering"]
    # an instance holding no partitions is ready while it applied a batch in the last minute
    assert ready(assigned=False, last_batch_at=now - 59) == []
    assert ready(assigned=False, last_batch_at=0.0) == [
        "no partitions assigned and no batch applied in the last minute"
    ]
    # lag and no committed batch for stall_seconds: stalled
    assert ready(lagging_since=now - 300, last_batch_at=now - 119) == []
    assert ready(lagging_since=now - 119, last_batch_at=0.0) == []
    assert ready(lagging_since=now - 130, last_batch_at=now - 200) == [
        "stalled: records waiting and no batch committed for 130 s (limit 120 s)"
    ]
    assert ready(lagging_since=now - 200, last_batch_at=now - 125) == [
        "stalled: records waiting and no batch committed for 125 s (limit 120 s)"
    ]
    # long idle, then records arrive: not stalled until they have waited stall_seconds
    assert ready(lagging_since=now - 1, last_batch_at=now - 86_400) == []
    # the store failing that long
    assert ready(failing_since=now - 60) == []
    assert ready(failing_since=now - 121, lagging_since=now - 121, last_batch_at=0.0) == [
        "stalled: records waiting and no batch committed for 121 s (limit 120 s)",
        "store writes failing for 121 s (limit 120 s)",
    ]
