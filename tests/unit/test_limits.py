"""api.limits on its own, around a stand-in app: the bound on requests in flight, the size
limits, Retry-After on every 503, and each request's own budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from api.limits import Limits, Shed
from services.query import BUDGET
from services.settings import Settings


class Held:
    """An app whose requests wait for ``release`` (probes excepted) and answer ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.entered = 0
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] not in ("/healthz", "/readyz", "/metrics"):
            self.entered += 1
            await self.release.wait()
            budget = BUDGET.get()
            if budget is not None and "total" in scope["query_string"].decode():
                budget.total_relation = "gte"
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def client(app: Held, **limits: Any) -> tuple[httpx.AsyncClient, Shed]:
    shed = Shed()
    middleware = Limits(app, Settings(**limits), shed)
    transport = httpx.ASGITransport(app=middleware)
    return httpx.AsyncClient(transport=transport, base_url="http://threadview.test"), shed


async def until(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never met")


@pytest.fixture
async def held() -> AsyncIterator[Held]:
    app = Held()
    yield app
    app.release.set()


async def test_beyond_the_bound_a_request_is_503_at_once_and_probes_still_answer(
    held: Held,
) -> None:
    c, shed = client(held, api_max_in_flight=2, api_retry_after_seconds=3)
    async with c:
        # given two requests in flight, held
        first = [asyncio.create_task(c.get("/v1/threads")) for _ in range(2)]
        await until(lambda: held.entered == 2)
        # when a third comes: refused at once, never reaching the app
        refused = await asyncio.wait_for(c.get("/v1/threads"), 1)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "3"
        assert refused.json() == {
            "error": {
                "message": "the API is at its limit of requests in flight; retry after 3 s",
                "type": "api_error",
                "param": None,
                "code": "overloaded",
            }
        }
        assert held.entered == 2 and shed.counts["in_flight"] == 1
        # probes are never shed
        for probe in ("/healthz", "/readyz", "/metrics"):
            assert (await asyncio.wait_for(c.get(probe), 1)).status_code == 200
        # then the held ones are answered, and the bound lets the next one in
        held.release.set()
        assert [r.status_code for r in await asyncio.gather(*first)] == [200, 200]
        assert (await c.get("/v1/threads")).status_code == 200


async def test_a_long_target_is_414_and_large_headers_are_431() -> None:
    app = Held()
    app.release.set()
    c, shed = client(app, api_max_url_bytes=1024, api_max_header_bytes=2048)
    async with c:
        assert (await c.get("/v1/threads?after=" + "a" * 900)).status_code == 200
        long = await c.get("/v1/threads?after=" + "a" * 1100)
        assert long.status_code == 414 and long.json()["error"]["code"] == "uri_too_long"
        big = await c.get("/v1/threads", headers={"X-Filler": "b" * 2100})
        assert big.status_code == 431 and big.json()["error"]["code"] == "headers_too_large"
        assert big.json()["error"]["type"] == "invalid_request_error"
        assert "retry-after" not in big.headers
    assert (shed.counts["url_too_long"], shed.counts["headers_too_large"]) == (1, 1)
    assert app.entered == 1


async def test_every_503_passing_through_says_retry_after() -> None:
    app = Held(status=503)
    app.release.set()
    c, _ = client(app)
    async with c:
        assert (await c.get("/v1/threads")).headers["retry-after"] == "1"


async def test_a_capped_total_is_said_in_a_header_of_its_own_response_only() -> None:
    app = Held()
    app.release.set()
    c, _ = client(app)
    async with c:
        capped = await c.get("/v1/threads?include_total=true")
        assert capped.headers["x-total-relation"] == "gte"
        assert "x-total-relation" not in (await c.get("/v1/threads")).headers
    assert BUDGET.get() is None  # each request's own, reset after it


def test_the_shed_counter_is_a_prometheus_collector() -> None:
    shed = Shed()
    shed.counts["in_flight"] += 2
    (family,) = shed.collect()
    found = {s.labels["reason"]: s.value for s in family.samples if s.name.endswith("_total")}
    assert found == {"in_flight": 2, "totals": 0, "url_too_long": 0, "headers_too_large": 0}
