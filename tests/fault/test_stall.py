"""A projector that cannot make progress says so: the store refuses most of a batch (two
threads over 16 MB), the batch stalls instead of dead-lettering them, nothing is committed,
and /readyz turns 503 once that has lasted THREADVIEW_STALL_SECONDS (issue 15)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from services.mongo.bootstrap import Services
from services.settings import Settings
from testkit.kafka import create_topic, lag, produce, structured
from tests.heavy import longer_title, store_nearly_full

pytestmark = pytest.mark.fault


async def test_a_stalled_batch_makes_the_projector_unready_and_commits_nothing(
    settings: Settings, services: Services, run_process: Any
) -> None:
    # given: two threads the store cannot take a longer title of, and a batch for both
    for thread in ("thrd_big1", "thrd_big2"):
        await store_nearly_full(services.store, thread)
    await create_topic(settings.kafka_bootstrap_servers, settings.topic, 1)
    records = [
        structured(longer_title(thread, f"{thread}_{letter}", letter))
        for letter in "xyz"
        for thread in ("thrd_big1", "thrd_big2")
    ]
    await produce(settings.kafka_bootstrap_servers, settings.topic, records)
    settings = settings.model_copy(update={"stall_seconds": 3.0, "lag_interval_seconds": 1.0})

    # when: the projector works on it
    projector = run_process("consumers.projector", settings)
    url = f"http://127.0.0.1:{settings.projector_port}"
    problems: list[str] = []
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline and not problems:
            assert projector.popen.poll() is None, projector.output()[-3000:]
            try:
                answer = await client.get(f"{url}/readyz")
                if answer.status_code == 503:  # (also while it joins the group: not yet)
                    found = answer.json()["problems"]
                    problems = found if any("failing" in p for p in found) else []
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
        metrics = (await client.get(f"{url}/metrics")).text

    # then: it says why, commits nothing and dead-letters nothing
    assert any(p.startswith("store writes failing for") for p in problems), (
        problems,
        projector.output()[-3000:],
    )
    assert 'threadview_store_retries_total{cause="failed"} 0.0' not in metrics
    assert "an outage or a bug, not bad data" in projector.output()
    assert await lag(settings.kafka_bootstrap_servers, settings.topic, settings.consumer_group) == 6
    assert 'threadview_events_dead_lettered_total{reason="write_failed"}' not in metrics
