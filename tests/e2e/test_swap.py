"""A rebuild and a swap while the stream keeps flowing and clients keep reading.

The rebuild runs as the command does; the swap runs in process, so that its handover can be
held open while events arrive (the window in which only the projector's dual writes reach the
new view)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from consumers.progress import JsonLines
from consumers.swap import swap
from consumers.topics import ensure_topics
from services.mongo.bootstrap import Services
from services.mongo.views import MongoViewCatalog
from services.settings import Settings
from testkit.kafka import produce
from testkit.logs import ORGS, generate, reference
from testkit.processes import run_cli_async
from tests.fault.harness import assert_view_is_the_fold_of_the_log, wait_for_no_lag

pytestmark = pytest.mark.e2e


async def cli(settings: Settings, *args: str) -> str:
    done = await run_cli_async("consumers.rebuild", settings, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


async def test_rebuild_and_swap_while_events_flow_and_clients_read(
    settings: Settings, services: Services, run_process: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a projector and an API running, a log being published in slices
    log = generate(seed=31, threads=600)
    expected = reference(log)
    await ensure_topics(settings)
    projector = run_process("consumers.projector", settings)
    api = run_process("api.main", settings)
    _, key = await services.keys.create("service", list(ORGS))
    client = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{settings.api_port}", headers={"X-API-Key": key}, timeout=10
    )
    slices = [log.records[i : i + 100] for i in range(0, len(log.records), 100)]
    published, swapping, swapped = asyncio.Event(), asyncio.Event(), asyncio.Event()
    during_swap = 0

    async def publish() -> None:
        # from 85% on only once the swap has begun, and the last 5 slices once it has ended
        nonlocal during_swap
        for n, records in enumerate(slices):
            if n == len(slices) * 85 // 100:
                await swapping.wait()
            if n == len(slices) - 5:
                await swapped.wait()
            await produce(settings.kafka_bootstrap_servers, settings.topic, records)
            during_swap += swapping.is_set() and not swapped.is_set()
            await asyncio.sleep(0.1)
        published.set()

    failures: list[str] = []
    answered = 0

    async def read() -> None:  # page 1 and the next page, again and again, until the end
        nonlocal answered
        while not published.is_set() or answered < 50:
            try:
                first = await client.get("/v1/threads", params={"limit": 20})
                pages = [first]
                if first.status_code == 200 and first.json()["last_id"]:
                    after = first.json()["last_id"]
                    pages.append(await client.get("/v1/threads", params={"after": after}))
                for page in pages:
                    if page.status_code != 200:
                        failures.append(f"{page.status_code}: {page.text[:300]}")
                answered += len(pages)
            except httpx.HTTPError as exc:
                if answered:  # before the API's first answer, it may still be starting
                    failures.append(repr(exc))
            await asyncio.sleep(0.02)

    publishing, reading = asyncio.create_task(publish()), asyncio.create_task(read())

    # when: a rebuild runs on the partial log, then the swap, both while events arrive
    await asyncio.sleep(3)
    built = await cli(settings, "run", "--name", "next", "--json")
    swapping.set()
    # the handover held open for 2 s while events arrive: they must reach the new view
    real_finish = MongoViewCatalog.finish_swap

    async def slow_finish(catalog: MongoViewCatalog, *args: Any) -> None:
        await asyncio.sleep(2)
        await real_finish(catalog, *args)

    monkeypatch.setattr(MongoViewCatalog, "finish_swap", slow_finish)
    swap_summary = await swap(services, "next", JsonLines())
    swapped.set()
    await publishing
    await reading

    # then: no request failed, and the new live view is the fold of the whole log
    assert not failures, failures[:5]
    assert during_swap > 0, "no events were published while the swap ran"
    remaining = await wait_for_no_lag(settings, time.monotonic() + 240)
    assert remaining == 0, projector.output()[-3000:]
    assert (await services.catalog.pointer()).live == "next"
    live = await services.catalog.require("live")
    served = type(services)(**{**vars(services), "store": services.store_of(live)})
    await assert_view_is_the_fold_of_the_log(served, expected)
    # the old view is kept until gc; the API serves the new one
    assert (await services.catalog.require("main")).retired_at is not None
    body = (await client.get("/v1/threads", params={"limit": 100})).json()
    assert body["data"] and all(t["id"] in expected for t in body["data"])
    await client.aclose()
    for process in (projector, api):
        assert "Traceback" not in process.output(), process.output()[-3000:]
    assert '"event": "done"' in built and swap_summary["live"] == "next"
