"""What operators need from the API process: probes, Prometheus metrics, the API's own docs,
request ids, the caching headers of tenant responses and one log line per request.

The process listens on two ports (api.main.main). The public one (``THREADVIEW_API_PORT``)
serves /v1/* and the probes; the internal one (``THREADVIEW_API_OPS_PORT``, on 127.0.0.1 by
default) serves /metrics, /docs, /redoc, /openapi.json and the probes. The docs pages load
Swagger UI and ReDoc from this process (the fastapi-offline package ships them), never from a
CDN: they work offline, and no third-party script runs on a page where keys are typed.
``THREADVIEW_API_PUBLIC_DOCS=true`` serves the docs on the public port too; /metrics never is.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from uuid import uuid4

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator, metrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.logs import printable, request_id
from services.mongo.bootstrap import Services
from services.settings import Settings

log = logging.getLogger("threadview.api")
PROBES = ("/healthz", "/readyz")
DOCS = ("/docs", "/redoc", "/openapi.json")
ASSETS = "/docs/assets"  # Swagger UI's and ReDoc's scripts, style sheet and icon
ASSET_FILES = Path(fastapi_offline.__file__).parent / "static"
TENANT = "/v1/"  # responses under it are a caller's own data: never cached, keyed by caller
TENANT_HEADERS = ((b"cache-control", b"no-store"),)
_GOOD_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestIds:
    """Gives every request an id (the caller's ``X-Request-Id`` when it is sane, else a new
    one), echoes it in the response's ``X-Request-Id``, adds it to every log line written
    while the request is served, and logs one line per request (probes excepted), with the
    path as the client sent it (percent-encoded, control characters escaped): one request is
    one line, whatever its path.

    A /v1/* response, an error too, carries ``Cache-Control: no-store`` and
    ``Vary: X-API-Key``: it holds one caller's threads, which no cache may keep or give to
    another key."""

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
        tenant = scope["path"].startswith(TENANT)

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                message["headers"] = _tenant_headers(headers) if tenant else headers
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if scope["path"] not in PROBES:
                log.info(
                    "%s %s %d %.1f ms",
                    scope["method"],
                    logged_path(scope),
                    status,
                    (time.perf_counter() - started) * 1000,
                )
            request_id.reset(token)


def logged_path(scope: Scope) -> str:
    """The request's path as the client sent it (``raw_path``: ``%0A`` stays ``%0A``, where
    ``path`` holds the decoded line feed), query left out, control characters escaped."""
    raw: bytes | None = scope.get("raw_path")
    path = raw.decode("latin-1").split("?", 1)[0] if raw else scope["path"]
    return printable(path)


def _tenant_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` with Cache-Control: no-store, and X-API-Key added to any Vary."""
    kept = [(n, v) for n, v in headers if n.lower() not in (b"cache-control", b"vary")]
    vary = [v for n, v in headers if n.lower() == b"vary"]
    return [*kept, *TENANT_HEADERS, (b"vary", b", ".join([*vary, b"X-API-Key"]))]


def install(app: FastAPI, settings: Settings) -> None:
    """On the public app: probes, request ids, tenant headers and the Prometheus
    instrumentation (a registry per app, exposed by the ops app's /metrics); the docs too when
    THREADVIEW_API_PUBLIC_DOCS is true."""
    _probes(app, app, settings.ready_timeout_ms)
    registry = CollectorRegistry()
    if (shed := getattr(app.state, "shed", None)) is not None:  # api.limits' refusals
        registry.register(shed)
    instrumentator = Instrumentator(
        should_group_status_codes=False,
        excluded_handlers=[f"^{path}$" for path in (*PROBES, *DOCS)] + [f"^{ASSETS}/"],
        registry=registry,
    )
    instrumentator.add(metrics.requests(registry=registry))
    instrumentator.add(
        metrics.latency(
            registry=registry,
            buckets=(0.005, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
    )
    instrumentator.instrument(app)
    app.state.instrumentator = instrumentator
    if settings.api_public_docs:
        _docs(app, app)
    # outermost, outside even Starlette's ServerErrorMiddleware: a 500 has its id, its log
    # line and the tenant headers too
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: RequestIds(build())  # type: ignore[method-assign]


def create_ops_app(api: FastAPI, settings: Settings) -> FastAPI:
    """The internal port's app, beside the public ``api`` (api.main.create_app) in the same
    process: its probes (the same services), the metrics of the public app's requests, and
    its docs."""
    ops = FastAPI(
        title=f"{api.title} (operations)", docs_url=None, redoc_url=None, openapi_url=None
    )
    _probes(ops, api, settings.ready_timeout_ms)
    instrumentator: Instrumentator = api.state.instrumentator
    instrumentator.expose(ops, include_in_schema=False)
    _docs(ops, api)
    return ops


def _probes(app: FastAPI, api: FastAPI, ready_timeout_ms: int) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """Alive: answers without touching anything else."""
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Ready: the store answers a ping within THREADVIEW_READY_TIMEOUT_MS."""
        services: Services | None = getattr(api.state, "services", None)
        if services is not None and (problem := await services.unmigrated()):
            return JSONResponse({"status": "unready", "problems": [problem]}, 503)
        if services is not None and await services.ping(ready_timeout_ms):
            return JSONResponse({"status": "ready", "problems": []})
        return JSONResponse({"status": "unready", "problems": ["store not answering"]}, 503)


def _docs(app: FastAPI, api: FastAPI) -> None:
    """/openapi.json (``api``'s), /docs (Swagger UI) and /redoc on ``app``, every asset
    served from ASSETS."""
    app.mount(ASSETS, StaticFiles(directory=ASSET_FILES), name="docs-assets")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(api.openapi())

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{api.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{api.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
