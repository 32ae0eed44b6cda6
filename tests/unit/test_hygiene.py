"""Output hygiene without servers: escaped log lines, tenant headers on every status, and CSV
cells a spreadsheet cannot run."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from api import errors, ops
from api.ops import RequestIds, logged_path
from consumers.compare import _cell
from services.logs import configure, printable
from services.settings import Settings

FORGED = "GET /v1/threads\n2026-01-01 00:00:00 INFO threadview.api GET /v1/ok 200\x1b[2J\r\x9b"


@given(st.text())
def test_printable_text_is_one_line_with_no_control_character(text: str) -> None:
    shown = printable(text)
    assert len(shown.splitlines()) <= 1
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)
    assert printable(shown) == shown  # already printable: unchanged


def test_printable_shows_what_it_escaped() -> None:
    assert printable("a\nb\r\tc\x1b[2J\x00\x7f\x9b\u2028é") == (
        "a\\nb\\r\\tc\\x1b[2J\\x00\\x7f\\x9b\\u2028é"
    )


def _logged(log_format: str, *args: object) -> str:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure(Settings(log_format=log_format), stream)
        logging.getLogger("threadview.test").info("request %s", *args)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("threadview.test").exception("failed on %r", FORGED)
    finally:
        root.handlers[:], root.level = handlers, level
    return stream.getvalue()


def test_a_text_log_line_cannot_be_forged_by_what_it_logs() -> None:
    lines = _logged("text", FORGED).splitlines()
    assert lines[0].endswith(
        "request GET /v1/threads\\n2026-01-01 00:00:00 INFO "
        "threadview.api GET /v1/ok 200\\x1b[2J\\r\\x9b"
    )
    assert "\x1b" not in "".join(lines)
    # the traceback keeps its own lines, after a message that is one line
    assert "failed on" in lines[1] and lines[2] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"


def test_a_json_log_line_is_one_object_whatever_it_logs() -> None:
    lines = _logged("json", FORGED).splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == f"request {FORGED}"
    assert "Traceback" in second["exc_info"]


def test_the_logged_path_is_the_one_sent() -> None:
    scope = {"path": "/v1/threads\nX", "raw_path": b"/v1/threads%0AX?limit=1"}
    assert logged_path(scope) == "/v1/threads%0AX"
    assert logged_path({"path": "/v1/threads\nX"}) == "/v1/threads\\nX"


async def test_every_tenant_response_says_no_store_and_vary() -> None:
    # given: routes answering a 503 with a Vary of their own, a 200, and a probe
    async def outage(_: Request) -> JSONResponse:
        headers = {"Vary": "Accept-Encoding", "Cache-Control": "max-age=60"}
        return JSONResponse({"error": {}}, 503, headers=headers)

    async def ok(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/v1/threads", outage), Route("/v1/threads/x", ok), Route("/healthz", ok)]
    )
    transport = httpx.ASGITransport(app=RequestIds(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        # when
        failed = await client.get("/v1/threads")
        found = await client.get("/v1/threads/x")
        missing = await client.get("/v1/nothing")
        probe = await client.get("/healthz")
    # then
    assert failed.status_code == 503
    assert failed.headers.get_list("cache-control") == ["no-store"]
    assert failed.headers.get_list("vary") == ["Accept-Encoding, X-API-Key"]
    for answer in (found, missing):
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["vary"] == "X-API-Key"
    assert "cache-control" not in probe.headers and "vary" not in probe.headers


def test_csv_cells_that_would_be_formulas_are_text() -> None:
    for formula in ("=1+1", "+1", "-1+1", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("x")'):
        assert _cell(formula) == f"'{formula}"
    # numbers, dates, booleans, lists, absent values and plain text are left alone
    assert _cell(-1) == -1 and _cell(2.5) == 2.5
    assert _cell(datetime(2025, 1, 1, tzinfo=UTC).isoformat()) == "2025-01-01T00:00:00+00:00"
    assert _cell(True) == "true" and _cell(["-a"]) == '["-a"]' and _cell(None) == ""
    assert _cell("a = b") == "a = b" and _cell(" =x") == " =x"


async def test_an_internal_error_has_its_id_and_the_tenant_headers_too() -> None:
    # given: the API's error handling and ops middleware, and a route that fails
    app = FastAPI()
    errors.install(app)
    ops.install(app, Settings())

    @app.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        # when
        answer = await client.get("/v1/boom", headers={"X-Request-Id": "req-500"})
    # then
    assert answer.status_code == 500 and answer.json()["error"]["code"] == "internal_error"
    assert answer.headers["x-request-id"] == "req-500"
    assert answer.headers["cache-control"] == "no-store" and answer.headers["vary"] == "X-API-Key"
