"""What operators need from the API process: /healthz, /readyz, /metrics, request ids and one
log line per request."""

from __future__ import annotations

import logging
import re
import time
from uuid import uuid4

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator, metrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.bootstrap import Services
from services.logs import request_id

log = logging.getLogger("threadview.api")
PROBES = ("/healthz", "/readyz", "/metrics")
_GOOD_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestIds:
    """Gives every request an id (the caller's ``X-Request-Id`` when it is sane, else a new
    one), echoes it in the response's ``X-Request-Id``, adds it to every log line written
    while the request is served, and logs one line per request (probes excepted)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _GOOD_ID.fullmatch(given) else uuid4().hex
        token = request_id.set(rid)
        started, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if scope["path"] not in PROBES:
                log.info(
                    "%s %s %d %.1f ms",
                    scope["method"],
                    scope["path"],
                    status,
                    (time.perf_counter() - started) * 1000,
                )
            request_id.reset(token)


def install(app: FastAPI, ready_timeout_ms: int) -> None:
    """Probes, Prometheus metrics (a registry per app) and request ids."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """Alive: answers without touching anything else."""
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        """Ready: the store answers a ping within THREADVIEW_READY_TIMEOUT_MS."""
        services: Services | None = getattr(request.app.state, "services", None)
        if services is not None and await services.ping(ready_timeout_ms):
            return JSONResponse({"status": "ready", "problems": []})
        return JSONResponse({"status": "unready", "problems": ["store not answering"]}, 503)

    registry = CollectorRegistry()
    instrumentator = Instrumentator(
        should_group_status_codes=False, excluded_handlers=list(PROBES), registry=registry
    )
    instrumentator.add(metrics.requests(registry=registry))
    instrumentator.add(
        metrics.latency(
            registry=registry,
            buckets=(0.005, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
    )
    instrumentator.instrument(app).expose(app, include_in_schema=False)
    app.add_middleware(RequestIds)
