"""Moving from fold version 2 (the previous layout: message ids, count and times in the thread
document) to this one, as docs/rebuilding.md ("Moving to fold version 3") says: the old view
keeps serving, the new projector waits, a rebuild and a swap bring the new layout live, and
nothing is lost."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.sample import cloud_event
from services.documents import encode_metadata
from services.mongo.bootstrap import Services
from services.projection import FOLD_VERSION, ThreadState, view
from services.settings import Settings
from testkit.kafka import produce, structured
from testkit.logs import ORGS, generate, reference
from testkit.processes import run_cli_async
from tests.fault.harness import published, states_of, wait_for_no_lag

pytestmark = pytest.mark.e2e

PREVIOUS = FOLD_VERSION - 1


def previous_layout(state: ThreadState) -> dict[str, Any]:
    """The thread document fold version 2 wrote: the view's fields, the set of message ids."""
    document = view(state)
    document["_id"] = document.pop("id")
    document["metadata"] = encode_metadata(document["metadata"])
    return {**document, "message_ids": sorted(state.message_ids), "clock": {}, "rev": 1}


async def committed_to_the_end(settings: Settings) -> None:
    """The group's offsets at the topic's end: the previous projector had applied it all."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topic, p) for p in range(settings.topic_partitions)]
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        await consumer.commit({tp: end for tp, end in ends.items()})
    finally:
        await consumer.stop()


async def listed(client: httpx.AsyncClient) -> dict[str, int]:
    """Every thread the key lists, with its message count."""
    found: dict[str, int] = {}
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = (await client.get("/v1/threads", params=params)).raise_for_status().json()
        found |= {t["id"]: t["message_count"] for t in page["data"]}
        if not page["has_more"]:
            return found
        params["after"] = page["last_id"]


async def cli(settings: Settings, *args: str) -> None:
    done = await run_cli_async("consumers.rebuild", settings, *args)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_a_view_of_the_previous_layout_serves_until_the_new_one_is_swapped_in(
    settings: Settings, services: Services, run_process: Any
) -> None:
    # given: the log, applied by the previous release into its live view (fold version 2)
    log = await published(settings, generate(seed=47, threads=150))
    expected = reference(log)
    await services.store.threads.insert_many([previous_layout(s) for s in expected.values()])
    await services.catalog.update("main", fold_version=PREVIOUS)
    live = {"$set": {"fold_version": PREVIOUS}}
    await services.catalog.pointers.update_one({"_id": "live"}, live)
    await committed_to_the_end(settings)
    counts = {t: len(s.message_ids) for t, s in expected.items() if s.creation is not None}

    # when: this release's API and projector start
    api = run_process("api.main", settings)
    projector = run_process("consumers.projector", settings)
    _, key = await services.keys.create("service", list(ORGS))
    client = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{settings.api_port}", headers={"X-API-Key": key}, timeout=10
    )
    deadline = time.monotonic() + 60
    while True:
        assert api.popen.poll() is None and time.monotonic() < deadline, api.output()[-3000:]
        try:
            await client.get("/healthz")
            break
        except httpx.HTTPError:
            await asyncio.sleep(0.3)

    # then: the old view serves as it was written, and the projector writes nothing to it
    shown = await listed(client)
    assert shown == {t: n for t, n in counts.items() if t in shown} and len(shown) > 50
    thread = next(iter(shown))
    more = cloud_event(
        "thread.message_added", thread, "2025-11-17T12:00:00Z", {"message_id": "msg_after"}
    )
    await produce(settings.kafka_bootstrap_servers, settings.topic, [structured(more)])
    ready = f"http://127.0.0.1:{settings.projector_port}/readyz"
    async with httpx.AsyncClient(timeout=5) as probe:
        problems: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not problems:
            assert projector.popen.poll() is None, projector.output()[-3000:]
            try:
                answer = await probe.get(ready)
            except httpx.HTTPError:  # not listening yet
                answer = None
            if answer is not None and answer.status_code == 503:
                problems = [p for p in answer.json()["problems"] if "fold version" in p]
            await asyncio.sleep(0.5)
    assert problems, projector.output()[-3000:]
    assert (await listed(client))[thread] == counts[thread]

    # when: the view is rebuilt in this layout and swapped in
    await cli(settings, "run", "--name", "v3")
    await cli(settings, "swap", "v3")

    # then: the projector goes on from its offsets, and the live view is the fold of the log
    assert await wait_for_no_lag(settings, time.monotonic() + 90) == 0
    deadline = time.monotonic() + 30
    while (await listed(client)).get(thread) != counts[thread] + 1:
        assert time.monotonic() < deadline, "the message after the migration never showed"
        await asyncio.sleep(0.5)
    after = reference(log)
    for state in after.values():
        if state.id == thread:
            state.message_ids.add("msg_after")
    stored = await states_of(services, "v3")
    assert stored.keys() == after.keys()
    assert {t: s.message_ids for t, s in stored.items()} == {
        t: s.message_ids for t, s in after.items()
    }
    assert all(s.counted == 0 for s in stored.values())
    await client.aclose()
