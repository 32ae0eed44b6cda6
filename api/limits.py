"""Overload: the API refuses what it cannot serve soon instead of queueing it (issue 18).

Each request (probes aside) is checked, in this order, before any work is done for it:

- a request target (path and query) longer than ``THREADVIEW_API_MAX_URL_BYTES``: 414;
- request headers weighing more than ``THREADVIEW_API_MAX_HEADER_BYTES``: 431;
- ``THREADVIEW_API_MAX_IN_FLIGHT`` requests already in flight in this process: 503 at once,
  with ``Retry-After``, never touching the store.

A list asking for ``include_total`` also takes one of ``THREADVIEW_API_MAX_TOTALS_IN_FLIGHT``
slots (:class:`Slots`), or is answered 503 at once: a count walks up to the cap of every
stream, tens of times a page's work, so a few of them at a time would hold every in-flight
slot past the time limit and nothing would be answered at all.

A request let in runs within its budget (services.query.Budget): every store operation it
makes shares one deadline, ``THREADVIEW_API_QUERY_TIMEOUT_MS`` (``pymongo.timeout``, which
also sends the server what is left of it as ``maxTimeMS``, so the store stops the query too);
its list reads at most ``THREADVIEW_API_MAX_WALKS`` index walks; its total counts at most
``THREADVIEW_API_TOTAL_CAP`` threads, and a total that stopped there is answered with
``X-Total-Relation: gte`` (``eq`` when exact). Every 503 that passes here says
``Retry-After``.

Installed inside api.ops.RequestIds, so a refused request still gets its X-Request-Id and its
log line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pymongo
from fastapi import FastAPI
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, ErrorDetail, error_response
from services.query import BUDGET, Budget
from services.settings import Settings

PROBES = ("/healthz", "/readyz", "/metrics")  # as api.ops: always answered, never shed
WATCH = "/v1/threads/watch"  # long-lived (api.watch): bounded by its own caps, no deadline
REASONS = ("in_flight", "totals", "url_too_long", "headers_too_large")


class Shed(Collector):
    """``threadview_api_shed_requests_total{reason}``: requests refused before any work.
    Register it on the app's Prometheus registry (``app.state.shed``)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "threadview_api_shed_requests",
            "Requests the API refused before doing any work for them, by reason.",
            labels=["reason"],
        )
        for reason in REASONS:
            family.add_metric([reason], self.counts[reason])
        yield family


class Limits:
    """The checks and the budget above, as a pure ASGI middleware."""

    def __init__(self, app: ASGIApp, settings: Settings, shed: Shed) -> None:
        self.app = app
        self.settings = settings
        self.shed = shed
        self.requests = Slots(settings.api_max_in_flight)  # every request but the probes
        self.retry_after = str(settings.api_retry_after_seconds).encode()
        # made once: under overload, refusing is most of what the process does
        self.overloaded = error_body(
            ErrorDetail(
                message="the API is at its limit of requests in flight; retry after "
                f"{settings.api_retry_after_seconds} s",
                type="api_error",
                code="overloaded",
            )
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBES or scope["path"] == WATCH:
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None and not self.requests.take():
            refusal = 503, "in_flight", self.overloaded
        if refusal is not None:
            status, reason, body = refusal
            self.shed.counts[reason] += 1
            await refuse(send, status, body, self.settings.api_retry_after_seconds)
            return
        budget = Budget(self.settings.api_max_walks, self.settings.api_total_cap)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if message["status"] == 503 and not any(k == b"retry-after" for k, _ in headers):
                    headers.append((b"retry-after", self.retry_after))
                if budget.total_relation is not None:
                    headers.append((b"x-total-relation", budget.total_relation.encode()))
                message["headers"] = headers
            await send(message)

        token = BUDGET.set(budget)
        try:
            with pymongo.timeout(self.settings.api_query_timeout_ms / 1000):
                await self.app(scope, receive, sending)
        finally:
            BUDGET.reset(token)
            self.requests.release()

    def _refusal(self, scope: Scope) -> tuple[int, str, bytes] | None:
        """Why the request's size refuses it at once (status, reason, error body), or None."""
        target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope["query_string"])
        if target > self.settings.api_max_url_bytes:
            limit = self.settings.api_max_url_bytes
            message = f"the request target is longer than {limit} bytes"
            return 414, "url_too_long", _invalid(message, "uri_too_long")
        weight = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if weight > self.settings.api_max_header_bytes:
            limit = self.settings.api_max_header_bytes
            message = f"the request headers weigh more than {limit} bytes"
            return 431, "headers_too_large", _invalid(message, "headers_too_large")
        return None


def _invalid(message: str, code: str) -> bytes:
    return error_body(ErrorDetail(message=message, type="invalid_request_error", code=code))


async def refuse(send: Send, status: int, body: bytes, retry_after: int) -> None:
    """Answer ``status`` with the error ``body`` (:func:`error_body`) before the app is reached;
    a 503 says when to retry (``Retry-After``, seconds)."""
    headers = [(b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(body)).encode()))
    if status == 503:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_body(detail: ErrorDetail) -> bytes:
    """The API's error body (api.errors), as its JSON responses render it."""
    return bytes(error_response(500, detail).body)  # a JSONResponse's body is bytes


class Slots:
    """At most ``size`` holders at a time in this process; one more is refused at once: the
    requests in flight (:class:`Limits`) and, among them, those counting a total
    (:meth:`hold`)."""

    def __init__(self, size: int, shed: Shed | None = None, reason: str = "", message: str = ""):
        self.size, self.taken = size, 0
        self.shed, self.reason, self.message = shed, reason, message  # for hold()'s refusals

    def take(self) -> bool:
        """Take a slot if one is free; whoever got one gives it back with :meth:`release`."""
        if self.taken >= self.size:
            return False
        self.taken += 1
        return True

    def release(self) -> None:
        self.taken -= 1

    @contextmanager
    def hold(self) -> Iterator[None]:
        """A slot for the block. Raises ApiError (503 ``overloaded``, with ``message``), counted
        as shed for ``reason``, when none is free."""
        if not self.take():
            if self.shed is not None:
                self.shed.counts[self.reason] += 1
            raise ApiError(503, self.message, "api_error", code="overloaded")
        try:
            yield
        finally:
            self.release()


def install(app: FastAPI, settings: Settings) -> Slots:
    """Adds the middleware; call it before api.ops.install, whose RequestIds must wrap it.
    Returns the slots of the requests that ask for a total."""
    app.state.shed = Shed()
    app.add_middleware(Limits, settings=settings, shed=app.state.shed)
    size, retry = settings.api_max_totals_in_flight, settings.api_retry_after_seconds
    message = (
        f"the API is counting {size} totals already; retry after {retry} s, "
        "or ask without include_total"
    )
    return Slots(size, app.state.shed, "totals", message)
