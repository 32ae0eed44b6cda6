"""Chaos: projector processes SIGKILLed mid-stream, restarted, two at once; the view stays exact.

THREADVIEW_CHAOS_THREADS sets the log size: 1000 threads (about 19,500 records) by default, for
CI; 3000 threads is about 58,000 records (the full run: docs/projector.md, "Fault tests").
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

import pytest

from services.mongo.bootstrap import Services
from services.settings import Settings
from testkit.kafka import create_topic, produce
from testkit.logs import generate, reference
from testkit.servers import free_port
from tests.fault.harness import (
    assert_dead_letters_are_the_poison,
    assert_view_is_the_fold_of_the_log,
    wait_for_no_lag,
)

pytestmark = pytest.mark.fault

THREADS = int(os.environ.get("THREADVIEW_CHAOS_THREADS", "1000"))
KILLS = 6


async def test_crashes_restarts_and_two_consumers_change_nothing(
    settings: Settings, services: Services, run_process: Any
) -> None:
    settings = settings.model_copy(update={"topic_partitions": 6, "batch_max_records": 200})
    # given: a realistic log with retries, disorder and poison, on a 6-partition topic
    log = generate(seed=2026, threads=THREADS)
    expected = reference(log)
    await create_topic(settings.kafka_bootstrap_servers, settings.topic, 6)
    positions = await produce(settings.kafka_bootstrap_servers, settings.topic, log.records)
    poison_positions = {positions[i] for i in log.poison}

    # when: the projector is SIGKILLed at random moments and restarted, and for part of the
    # run a second projector shares the partitions
    rng = random.Random(7)
    primary = run_process(
        "consumers.projector", settings.model_copy(update={"instance_id": "chaos-a"})
    )
    second = None
    for kill in range(KILLS):
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        primary.kill()
        primary = run_process(
            "consumers.projector", settings.model_copy(update={"instance_id": "chaos-a"})
        )
        if kill == 1:
            second = run_process(
                "consumers.projector",
                settings.model_copy(
                    update={"instance_id": "chaos-b", "projector_port": free_port()}
                ),
            )
        if kill == 4 and second is not None:
            assert second.popen.poll() is None, f"the second projector died:\n{second.output()}"
            second.kill()
    # a generous deadline: the projector applies a few thousand records a second (bench/)
    catch_up = max(300.0, len(log.records) / 50)
    remaining = await wait_for_no_lag(settings, time.monotonic() + catch_up)
    assert remaining == 0, f"{remaining} records not committed\n{primary.output()[-3000:]}"

    # then: the collection equals the reference model, document for document
    await assert_view_is_the_fold_of_the_log(services, expected)
    # and the dead-letter topic holds exactly the poison records, once each
    await assert_dead_letters_are_the_poison(settings, poison_positions)
    primary.stop()
