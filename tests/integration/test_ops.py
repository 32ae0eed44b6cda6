"""Operations against the real servers: metrics after a known batch, clean JSON logs with
request ids, probes, and the API's key cache."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumers.sample import cloud_event
from consumers.topics import ensure_topics
from services.keys import KeyCache
from services.mongo.bootstrap import Services
from services.settings import Settings
from testkit.kafka import produce, structured

pytestmark = pytest.mark.integration


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(timeout=5) as client:
        return samples((await client.get(url)).text)


async def eventually(check: Any, deadline: float = 60) -> Any:
    end = time.monotonic() + deadline
    while True:
        try:
            result = await check()
            if result:
                return result
        except httpx.HTTPError:
            pass
        if time.monotonic() > end:
            return None
        await asyncio.sleep(0.3)


async def test_metrics_logs_and_probes_after_a_known_batch(
    settings: Settings, services: Services, run_process: Any
) -> None:
    # given: JSON logs, a projector and an API, and a known set of records
    settings = settings.model_copy(update={"log_format": "json", "lag_interval_seconds": 0.5})
    await ensure_topics(settings)
    projector = run_process("consumers.projector", settings)
    api = run_process("api.main", settings)
    events = [
        cloud_event(
            "thread.created",
            f"thrd_m{n}",
            "2025-11-17T10:00:00Z",
            {"organization_id": "org_a", "user_id": "usr_1"},
        )
        for n in range(7)
    ]
    events.append(cloud_event("thread.archived", "thrd_m0", "2025-11-17T10:01:00Z", {}))
    records = [structured(e) for e in events]
    records += [(b"thrd_m1", b"{not json", []), (b"thrd_m2", b"\xff\xfe", [])]
    await produce(settings.kafka_bootstrap_servers, settings.topic, records)

    # then: the projector's metrics count each outcome and the lag reaches 0
    metrics_url = f"http://127.0.0.1:{settings.projector_port}/metrics"

    async def settled() -> Any:
        found = await scrape(metrics_url)
        lags = [v for (name, _), v in found.items() if name == "threadview_consumer_lag_records"]
        done = found.get(("threadview_events_applied_total", ())) == 7
        return found if done and lags and not any(lags) else None

    found = await eventually(settled)
    assert found, projector.output()[-3000:]
    assert found[("threadview_events_skipped_total", (("type", "thread.archived"),))] == 1
    dead = "threadview_events_dead_lettered_total"
    assert found[(dead, (("reason", "not_json"),))] == 1
    assert found[(dead, (("reason", "not_utf8"),))] == 1
    assert found[("threadview_batch_records_sum", ())] == len(records)
    assert found[("threadview_store_write_seconds_count", ())] >= 1
    # freshness per partition, from broker timestamps: none waits, so each held one reads 0
    fresh = {
        dict(labels)["partition"]: value
        for (name, labels), value in found.items()
        if name == "threadview_projection_freshness_seconds"
    }
    assert fresh == {str(p): 0 for p in range(settings.topic_partitions)}
    assert found[("threadview_store_failing_seconds", ())] == 0
    assert any(name.startswith("faststream_received_messages_total") for name, _ in found)

    # and the API: probes, a request id echoed, and its latency histogram by route and status
    _, key = await services.keys.create("service", ["org_a"])
    base = f"http://127.0.0.1:{settings.api_port}"
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        assert await eventually(lambda: _status(client, "/readyz", 200))
        assert (await client.get("/healthz")).json() == {"status": "alive"}
        answered = await client.get(
            "/v1/threads", headers={"X-API-Key": key, "X-Request-Id": "req-42"}
        )
        assert answered.status_code == 200 and answered.headers["x-request-id"] == "req-42"
        assert len(answered.json()["data"]) == 7
        generated = await client.get("/v1/threads", headers={"X-API-Key": "nope"})
        assert generated.status_code == 401 and len(generated.headers["x-request-id"]) == 32
        assert (await client.get("/metrics")).status_code == 404  # on the ops port only
        ops = f"http://127.0.0.1:{settings.api_ops_port}/metrics"
        api_metrics = samples((await client.get(ops)).text)
    latency = "http_request_duration_seconds_count"
    route = (("handler", "/v1/threads"), ("method", "GET"))
    assert api_metrics[(latency, (*route, ("status", "200")))] >= 1
    assert api_metrics[(latency, (*route, ("status", "401")))] >= 1

    # and every log line of both processes is JSON, none a warning or an error; the API's
    # request lines carry their request id, the projector's batch lines their offsets
    projector.stop()
    api.stop()
    lines = {
        name: [json.loads(line) for line in process.output().splitlines() if line.strip()]
        for name, process in (("projector", projector), ("api", api))
    }
    for name, parsed in lines.items():
        bad = [line for line in parsed if line["level"] in ("WARNING", "ERROR", "CRITICAL")]
        assert not bad, f"{name}: {bad[:3]}"
    assert any(line.get("request_id") == "req-42" for line in lines["api"])
    batches = [line for line in lines["projector"] if "partitions" in line]
    assert batches and all(line["topic"] == settings.topic for line in batches)


async def _status(client: httpx.AsyncClient, path: str, status: int) -> bool:
    return (await client.get(path)).status_code == status


async def test_plain_logs_have_no_colour_codes(settings: Settings, run_process: Any) -> None:
    await ensure_topics(settings)
    projector = run_process("consumers.projector", settings)
    assert await eventually(lambda: _ready(f"http://127.0.0.1:{settings.projector_port}/readyz")), (
        projector.output()
    )
    projector.stop()
    output = projector.output()
    assert "\x1b[" not in output and " WARNING " not in output and " ERROR " not in output
    assert "threadview.faststream" in output  # FastStream's lines go through our handler


async def _ready(url: str) -> bool:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(url)).status_code == 200


async def test_a_revocation_reaches_the_key_cache_within_its_ttl(services: Services) -> None:
    key, plaintext = await services.keys.create("service", ["org_a"])
    cache = KeyCache(services.keys, ttl=1.0)
    first = await cache.authenticate(plaintext)
    assert first is not None and first.id == key.id
    assert await services.keys.revoke(key.id)

    assert await cache.authenticate(plaintext) == first  # trusted for its ttl: no round trip
    await asyncio.sleep(1.1)
    assert await cache.authenticate(plaintext) is None
    assert await cache.authenticate("tv_nope_nope") is None
    assert await KeyCache(services.keys, ttl=0).authenticate(plaintext) is None
