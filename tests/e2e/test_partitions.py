"""Threads whose records sit on several partitions: the topic gains partitions halfway through
the log while the live projector runs, or producers send one thread's records to two explicit
partitions. The live view, a rebuild and the fold of the whole log agree, and `diff` says so."""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from consumers.topics import ensure_topics
from services.decoding import EVENT_MODELS, decode
from services.mongo.bootstrap import Services
from services.settings import Settings
from testkit.kafka import Raw, produce
from testkit.logs import Log, generate, reference
from testkit.processes import run_cli
from tests.fault.harness import (
    assert_view_is_the_fold_of_the_log,
    states_of,
    wait_for_no_lag,
)

pytestmark = pytest.mark.e2e


async def add_partitions(settings: Settings, total: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_partitions({settings.topic: NewPartitions(total)})
    finally:
        await admin.close()


async def produce_to(
    settings: Settings, records: Sequence[Raw], partitions: Sequence[int | None]
) -> list[tuple[int, int]]:
    """Publish ``records`` in order, each to its partition (None: the key's, by murmur2)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        sent = [
            await producer.send(settings.topic, value, key=key, headers=headers, partition=p)
            for (key, value, headers), p in zip(records, partitions, strict=True)
        ]
        return [(m.partition, m.offset) for m in [await f for f in sent]]
    finally:
        await producer.stop()


def spread(log: Log, positions: list[tuple[int, int]]) -> int:
    """How many threads have valid events on more than one partition."""
    partitions: dict[str, set[int]] = defaultdict(set)
    for record, (partition, _) in zip(log.records, positions, strict=True):
        decoded = decode(*record)
        if isinstance(decoded, EVENT_MODELS):
            partitions[decoded.subject].add(partition)
    return sum(len(found) > 1 for found in partitions.values())


async def assert_live_rebuild_and_fold_agree(
    settings: Settings, services: Services, log: Log, expected_spread: int
) -> None:
    assert await wait_for_no_lag(settings, time.monotonic() + 120) == 0
    expected = reference(log)
    await assert_view_is_the_fold_of_the_log(services, expected)

    built = run_cli("consumers.rebuild", settings, "run", "--name", "rebuilt", "--json")
    assert built.returncode == 0, built.stdout + built.stderr
    summary = json.loads(built.stdout.splitlines()[-1])
    assert summary["threads_on_several_partitions"] == expected_spread
    assert await states_of(services, "rebuilt") == expected

    compared = run_cli("consumers.rebuild", settings, "diff", "live", "rebuilt", "--json")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    created = [t for t, state in expected.items() if state.creation is not None]
    assert json.loads(compared.stdout)["same"] == len(created)  # what a client could see


async def test_partitions_added_halfway_through_the_log(
    settings: Settings, services: Services, run_process: Any
) -> None:
    # given: a 2-partition topic, the live projector told of new partitions within a second
    settings = settings.model_copy(
        update={"topic_partitions": 2, "kafka_metadata_max_age_ms": 1000}
    )
    log = generate(seed=16, threads=400)
    await ensure_topics(settings)
    run_process("consumers.projector", settings)

    # when: half the log is produced, the topic grows to 5 partitions, then the rest (new
    # records of old threads hash elsewhere now)
    half = len(log.records) // 2
    positions = await produce(settings.kafka_bootstrap_servers, settings.topic, log.records[:half])
    await add_partitions(settings, 5)
    positions += await produce(settings.kafka_bootstrap_servers, settings.topic, log.records[half:])
    expected_spread = spread(log, positions)
    assert expected_spread > 50, "few threads landed on two partitions: the test proves little"

    # then
    await assert_live_rebuild_and_fold_agree(settings, services, log, expected_spread)


async def test_one_threads_records_on_two_explicit_partitions(
    settings: Settings, services: Services, run_process: Any
) -> None:
    # given: two producers with different partitioners: a third of the threads have each
    # record sent to partition 0 or 1 at random, the rest to the key's partition
    log = generate(seed=17, threads=300)
    await ensure_topics(settings)
    run_process("consumers.projector", settings)
    rng = random.Random(17)
    split = {f"thrd_{n:06d}" for n in range(0, 300, 3)}
    chosen = [
        rng.choice((0, 1)) if key is not None and key.decode(errors="replace") in split else None
        for key, _, _ in log.records
    ]

    # when
    positions = await produce_to(settings, log.records, chosen)
    expected_spread = spread(log, positions)
    assert expected_spread > 50, "few threads landed on two partitions: the test proves little"

    # then
    await assert_live_rebuild_and_fold_agree(settings, services, log, expected_spread)
