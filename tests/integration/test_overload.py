"""Overload on the real store (issue 18): the API sheds what it cannot serve soon, bounds each
request's time in the store, its totals and its fan-out, and refuses oversized requests.

Why this module is longer than ~200 lines: one test per bound of api.limits, each with its own
set-up of a loaded API; they share the helpers that start it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pymongo.errors import ExecutionTimeout

from api.main import create_app
from api.ops import create_ops_app
from services.mongo.bootstrap import Services
from services.mongo.store import MongoThreadStore
from services.settings import Settings
from tests.integration.test_api import key, thread

pytestmark = pytest.mark.integration

Client = Callable[..., Any]


@pytest.fixture
async def client(services: Services, settings: Settings) -> AsyncIterator[Client]:
    """``client(**limits)``: the app in process with those settings, on the test's store."""
    opened: list[httpx.AsyncClient] = []

    def make(**limits: Any) -> httpx.AsyncClient:
        app = create_app(settings.model_copy(update=limits))
        app.state.services = services
        made = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://threadview.test"
        )
        opened.append(made)
        return made

    yield make
    for made in opened:
        await made.aclose()


async def slow_query(services: Services) -> None:
    """A query no store answers within a few hundred ms: a self-join of 2,000 documents
    (4,000,000 pairs; 2.6 s for 3,000 on FerretDB 2)."""
    pairs = services.store.threads.database["slow_pairs"]
    if await pairs.estimated_document_count() < 2000:
        await pairs.insert_many([{"_id": i} for i in range(2000)])
    stages = [{"$lookup": {"from": "slow_pairs", "pipeline": [], "as": "all"}}]
    await (await pairs.aggregate([*stages, {"$unwind": "$all"}, {"$count": "n"}])).to_list()


async def test_the_request_beyond_the_bound_is_503_at_once_with_an_id_and_a_log_line(
    services: Services,
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given two list requests held in the store
    entered, both_in, release = 0, asyncio.Event(), asyncio.Event()
    real_page = MongoThreadStore.page

    async def held(self: MongoThreadStore, *args: Any) -> Any:
        nonlocal entered
        entered += 1
        if entered == 2:
            both_in.set()
        await release.wait()
        return await real_page(self, *args)

    monkeypatch.setattr(MongoThreadStore, "page", held)
    api = client(api_max_in_flight=2)
    headers = await key(services, ["org_a"])
    first = [asyncio.create_task(api.get("/v1/threads", headers=headers)) for _ in range(2)]
    await asyncio.wait_for(both_in.wait(), 10)
    # when a third comes
    caplog.set_level(logging.INFO, "threadview.api")
    started = time.perf_counter()
    refused = await api.get("/v1/threads", headers=headers)
    # then it is refused at once, with Retry-After, the error body and a request id
    assert time.perf_counter() - started < 0.5
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "1" and refused.headers["x-request-id"]
    assert refused.json()["error"]["code"] == "overloaded"
    assert any(" 503 " in r.getMessage() for r in caplog.records)
    # and the probes still answer
    assert (await api.get("/healthz")).status_code == 200
    assert (await api.get("/readyz")).status_code == 200
    release.set()
    assert [r.status_code for r in await asyncio.gather(*first)] == [200, 200]
    assert (await api.get("/v1/threads", headers=headers)).status_code == 200
    # and the ops port's /metrics counts the refusal
    ops = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_ops_app(api_app(api), services.settings)),
        base_url="http://threadview.test",
    )
    scraped = (await ops.get("/metrics")).text
    await ops.aclose()
    assert 'threadview_api_shed_requests_total{reason="in_flight"} 1.0' in scraped, scraped


def api_app(client: httpx.AsyncClient) -> Any:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    return transport.app


async def test_the_store_honours_max_time_ms(services: Services) -> None:
    # FerretDB 2 maps maxTimeMS to PostgreSQL's statement timeout: code 50, the query stopped
    await slow_query(services)  # fills the collection; not timed
    pairs = services.store.threads.database["slow_pairs"]
    started = time.perf_counter()
    with pytest.raises(ExecutionTimeout) as raised:
        stages = [{"$lookup": {"from": "slow_pairs", "pipeline": [], "as": "all"}}]
        found = await pairs.aggregate([*stages, {"$unwind": "$all"}], maxTimeMS=50)
        await found.to_list()
    assert raised.value.code == 50 and time.perf_counter() - started < 1


async def test_a_request_over_the_time_limit_is_503_query_timeout(
    services: Services, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def slow(self: MongoThreadStore, *_: Any) -> Any:
        await slow_query(services)

    headers = await key(services, ["org_a"])
    await slow_query(services)  # the collection filled before the request's clock starts
    monkeypatch.setattr(MongoThreadStore, "page", slow)
    started = time.perf_counter()
    response = await client(api_query_timeout_ms=300).get("/v1/threads", headers=headers)
    assert time.perf_counter() - started < 2
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "query_timeout"


async def test_a_total_beyond_the_cap_is_the_cap_and_says_so(
    services: Services, client: Client
) -> None:
    await services.store.save([(thread(f"thrd_{i}", "org_a", "usr_1", i), None) for i in range(5)])
    headers = await key(services, ["org_a"])
    capped = await client(api_total_cap=3).get("/v1/threads?include_total=true", headers=headers)
    assert capped.json()["total"] == 3 and capped.headers["x-total-relation"] == "gte"
    exact = await client(api_total_cap=5).get("/v1/threads?include_total=true", headers=headers)
    assert exact.json()["total"] == 5 and exact.headers["x-total-relation"] == "eq"
    none = await client(api_total_cap=3).get("/v1/threads", headers=headers)
    assert none.json()["total"] is None and "x-total-relation" not in none.headers


async def test_a_list_over_more_walks_than_the_cap_asks_for_organization_id(
    services: Services, client: Client
) -> None:
    organizations = [f"org_{i}" for i in range(5)]
    await services.store.save([(thread("thrd_x", "org_3", "usr_1", 1), None)])
    headers = await key(services, organizations)
    api = client(api_max_walks=8)
    # five organizations, pinned or not: 10 walks
    wide = await api.get("/v1/threads", headers=headers)
    assert wide.status_code == 400, wide.text
    error = wide.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "organization_id",
        "too_wide",
    )
    assert "10 index walks" in error["message"]
    # narrower: one organization, or pinned only (5 walks)
    one = await api.get("/v1/threads?organization_id=org_3", headers=headers)
    assert [t["id"] for t in one.json()["data"]] == ["thrd_x"]
    assert (await api.get("/v1/threads?is_pinned=false", headers=headers)).status_code == 200


async def test_through_uvicorn_a_long_url_is_414_and_big_headers_431(
    settings: Settings, run_process: Any, service_key: str
) -> None:
    run_process("api.main", settings)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{settings.api_port}", headers={"X-API-Key": service_key}
    ) as c:
        deadline = time.monotonic() + 30
        while True:
            try:
                (await c.get("/healthz")).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the API did not start"
                await asyncio.sleep(0.2)
        assert (await c.get("/v1/threads?after=" + "a" * 100)).status_code == 400
        long = await c.get("/v1/threads?after=" + "a" * 9000)
        assert long.status_code == 414 and long.json()["error"]["code"] == "uri_too_long"
        big = await c.get("/v1/threads", headers={"X-Filler": "b" * 17_000})
        assert big.status_code == 431 and big.json()["error"]["code"] == "headers_too_large"
        assert big.headers["x-request-id"]


async def test_a_total_beyond_the_totals_in_flight_is_503_while_pages_are_served(
    services: Services, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given one request counting its total, held in the store
    counting, release = asyncio.Event(), asyncio.Event()
    real_total = MongoThreadStore._total

    async def held(self: MongoThreadStore, *args: Any) -> Any:
        counting.set()
        await release.wait()
        return await real_total(self, *args)

    monkeypatch.setattr(MongoThreadStore, "_total", held)
    api = client(api_max_totals_in_flight=1)
    headers = await key(services, ["org_a"])
    first = asyncio.create_task(api.get("/v1/threads?include_total=true", headers=headers))
    await asyncio.wait_for(counting.wait(), 10)
    # when another total and a plain page come
    refused = await api.get("/v1/threads?include_total=true", headers=headers)
    served = await api.get("/v1/threads", headers=headers)
    # then the total is refused at once and the page is served
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1", refused.text
    assert refused.json()["error"]["code"] == "overloaded"
    assert "include_total" in refused.json()["error"]["message"]
    assert served.status_code == 200
    release.set()
    assert (await first).status_code == 200
    again = await api.get("/v1/threads?include_total=true", headers=headers)
    assert again.status_code == 200 and again.json()["total"] == 0
