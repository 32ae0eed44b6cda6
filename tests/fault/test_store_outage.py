"""The store goes down mid-stream and comes back: the projector waits, catches up, loses nothing;
both processes report unready while it is down and ready again after."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from typing import Any

import httpx
import pytest

from services.mongo.bootstrap import Services
from services.settings import Settings
from testkit.kafka import create_topic, lag, produce
from testkit.logs import generate, reference
from testkit.servers import ROOT, STACK
from tests.fault.harness import (
    assert_dead_letters_are_the_poison,
    assert_view_is_the_fold_of_the_log,
    states_of,
    wait_for_no_lag,
)

pytestmark = [
    pytest.mark.fault,
    pytest.mark.skipif(  # the store is killed and started again: it must be ours
        bool(os.environ.get("THREADVIEW_TEST_MONGO_URL")), reason="needs the store of scripts/stack"
    ),
]


def stack_up() -> None:
    subprocess.run([STACK, "up"], check=True, capture_output=True)


async def wait_for_status(urls: list[str], status: int, deadline: float = 60) -> bool:
    """Until every url answers ``status`` (a process still starting counts as not yet)."""
    end = time.monotonic() + deadline
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < end:
            answers: list[int | None] = []
            for url in urls:
                try:
                    answers.append((await client.get(url)).status_code)
                except httpx.HTTPError:
                    answers.append(None)
            if all(a == status for a in answers):
                return True
            await asyncio.sleep(0.2)
    return False


PID_FILE = ROOT / ".cache" / "run" / "ferretdb.pid"


async def test_store_outage_loses_nothing(
    settings: Settings, services: Services, run_process: Any
) -> None:
    # given: a log of 300 threads and a projector working through it
    log = generate(seed=4, threads=300)
    expected = reference(log)
    await create_topic(settings.kafka_bootstrap_servers, settings.topic, 3)
    positions = await produce(settings.kafka_bootstrap_servers, settings.topic, log.records)
    settings = settings.model_copy(update={"batch_max_records": 100, "instance_id": "outage"})
    projector = run_process("consumers.projector", settings)
    api = run_process("api.main", settings)
    probes = [
        f"http://127.0.0.1:{settings.projector_port}/readyz",
        f"http://127.0.0.1:{settings.api_port}/readyz",
    ]
    assert await wait_for_status(probes, 200), projector.output()[-2000:] + api.output()[-2000:]
    total = len(log.records)
    deadline = time.monotonic() + 120
    while (
        await lag(settings.kafka_bootstrap_servers, settings.topic, settings.consumer_group)
        > total * 0.7
    ):
        assert time.monotonic() < deadline, projector.output()[-2000:]
        await asyncio.sleep(0.2)

    # when: the store is killed mid-stream, stays down a while, and comes back
    os.kill(int(PID_FILE.read_text()), signal.SIGKILL)
    down_at = await lag(settings.kafka_bootstrap_servers, settings.topic, settings.consumer_group)
    assert await wait_for_status(probes, 503), "a process stayed ready with the store down"
    await asyncio.sleep(3)
    stalled_at = await lag(
        settings.kafka_bootstrap_servers, settings.topic, settings.consumer_group
    )
    await asyncio.to_thread(stack_up)

    # then: nothing was committed while the store was down, and afterwards all of it was
    assert stalled_at >= down_at - 100  # at most the batch that was being committed
    assert stalled_at > 0, "the outage came too late to test anything"
    assert await wait_for_status(probes, 200), "a process did not become ready again"
    remaining = await wait_for_no_lag(settings, time.monotonic() + 300)
    assert remaining == 0, projector.output()[-3000:]
    assert projector.popen.poll() is None, "the projector must survive an outage"
    assert "store unavailable, retrying" in projector.output()
    await assert_view_is_the_fold_of_the_log(services, expected)
    await assert_dead_letters_are_the_poison(settings, {positions[i] for i in log.poison})


async def test_a_rebuild_waits_for_the_store_and_loses_nothing(
    settings: Settings, services: Services, run_process: Any
) -> None:
    # given: a rebuild with a small memory budget (a flush every few hundred threads) running
    log = generate(seed=5, threads=3000)
    settings = settings.model_copy(update={"mongo_timeout_ms": 1000})  # fail fast, then retry
    await create_topic(settings.kafka_bootstrap_servers, settings.topic, 2)
    await produce(settings.kafka_bootstrap_servers, settings.topic, log.records)
    rebuild = run_process(
        "consumers.rebuild", settings, "run", "--name", "through", "--memory-mb", "1", "--json"
    )
    deadline = time.monotonic() + 60
    while '"phase": "fold", "done": ' not in rebuild.output():  # its first progress line
        assert time.monotonic() < deadline and rebuild.popen.poll() is None, rebuild.output()
        await asyncio.sleep(0.05)

    # when: the store is killed mid-rebuild and comes back a few seconds later
    os.kill(int(PID_FILE.read_text()), signal.SIGKILL)
    await asyncio.sleep(4)
    await asyncio.to_thread(stack_up)

    # then: the rebuild waited, finished, and is the fold of the whole log
    assert await asyncio.to_thread(rebuild.popen.wait, 240) == 0, rebuild.output()[-3000:]
    assert "store unavailable, retrying" in rebuild.output()
    assert await states_of(services, "through") == reference(log)
