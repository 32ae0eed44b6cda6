"""The HTTP API: GET /v1/threads and GET /v1/threads/{thread_id}, read only from the view."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Path

from api import errors, ops
from api.deps import CallerDep, StoreDep
from api.models import Thread, ThreadList
from api.params import list_params
from services.bootstrap import bootstrap
from services.logs import configure as configure_logging
from services.query import ThreadQuery
from services.settings import Settings, get_settings
from services.threads import thread, thread_page

DESCRIPTION = """Threads as the thread events built them. Every request carries `X-API-Key`.

Paging is keyset over `(created_at, id)`: pass the previous page's `last_id` as `after` for the
next page, its `first_id` as `before` for the previous one, until `has_more` is false."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = await bootstrap(settings)
        yield
        await app.state.services.close()

    app = FastAPI(title="threadview", version="1.0.0", description=DESCRIPTION, lifespan=lifespan)
    errors.install(app)
    ops.install(app, settings.ready_timeout_ms)

    @app.get("/v1/threads", response_model=ThreadList, responses=errors.ERROR_RESPONSES)
    async def list_threads(
        store: StoreDep,
        caller: CallerDep,
        query: Annotated[ThreadQuery, Depends(list_params)],
    ) -> ThreadList:
        """Retrieve a paginated list of threads with filtering options for assistant,
        organization, and visibility."""
        page = await thread_page(store, query, caller.scope)
        return ThreadList.of(page.data, page.has_more, query.limit, page.total)

    @app.get(
        "/v1/threads/{thread_id}",
        response_model=Thread,
        responses={
            **errors.ERROR_RESPONSES,
            404: {"model": errors.ErrorBody, "description": "No such thread you can see."},
        },
    )
    async def get_thread(
        store: StoreDep,
        caller: CallerDep,
        thread_id: Annotated[str, Path(min_length=1, max_length=128)],
    ) -> Thread:
        """Retrieve one thread."""
        found = await thread(store, thread_id, caller.scope)
        if found is None or not found["listed"]:
            raise errors.ApiError(
                404,
                "no such thread that you can see",
                "invalid_request_error",
                "thread_id",
                "thread_not_found",
            )
        return Thread.model_validate(found)

    _without_422(app)
    return app


def _without_422(app: FastAPI) -> None:
    """Invalid parameters are answered 400 (api.md), so FastAPI's default 422 is not offered."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()  # also cached in app.openapi_schema, which this edits in place
            for path in schema["paths"].values():
                for operation in path.values():
                    operation["responses"].pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema["components"]["schemas"].pop(name, None)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # our handlers (services.logs), no colour
        access_log=False,  # api.ops logs one line per request, with its id
    )


if __name__ == "__main__":
    main()
