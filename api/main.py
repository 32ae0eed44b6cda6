"""The HTTP API: GET /v1/threads and GET /v1/threads/{thread_id}, read only from the view."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, nullcontext
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Path

from api import consistency, errors, limits, ops, watch
from api.deps import CallerDep, StoreDep
from api.models import Thread, ThreadList
from api.params import list_params
from consumers.offsets import GroupOffsets
from services.applied import Applied, Sightings
from services.logs import configure as configure_logging
from services.mongo.bootstrap import Services, bootstrap
from services.query import ThreadQuery
from services.settings import Settings, get_settings
from services.threads import thread, thread_page
from services.watching import Feed

DESCRIPTION = """Threads as the thread events built them. Every request carries `X-API-Key`.

Paging is keyset over `(created_at, id)`: pass the previous page's `last_id` as `after` for the
next page, its `first_id` as `before` for the previous one, until `has_more` is false."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # on a store not migrated for this release: unready (503) until it is (api.deps)
        app.state.services = await bootstrap(settings, unmigrated=True)
        offsets = GroupOffsets(settings)
        app.state.applied = Applied(
            offsets.committed,
            offsets.ends,
            interval=settings.api_consistency_poll_ms / 1000,
            max_waiting=settings.api_max_waiting,
        )
        app.state.sightings = Sightings(app.state.applied)
        services: Services = app.state.services

        async def views(ids: Sequence[str]) -> list[dict[str, Any]]:
            return await (await services.served_store()).read_many(ids)

        async def view_name() -> str:
            return (await services.served())[0]

        app.state.feed = Feed(offsets.keys_between, views, view_name)
        driving = asyncio.create_task(watch.drive(app.state.feed, app.state.applied))
        yield
        driving.cancel()
        await app.state.applied.close()
        await offsets.close()
        await app.state.services.close()

    app = FastAPI(
        title="threadview",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # the docs are on the ops port (api.ops), and on this one only if asked for
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    errors.install(app)
    totals = limits.install(app, settings)  # before ops: RequestIds wraps it (shed: an id too)
    consistency.install(app, settings)  # outside limits: a waiting request holds no slot
    ops.install(app, settings)

    @app.get("/v1/threads", response_model=ThreadList, responses=errors.ERROR_RESPONSES)
    async def list_threads(
        store: StoreDep,
        caller: CallerDep,
        query: Annotated[ThreadQuery, Depends(list_params)],
    ) -> ThreadList:
        """Retrieve a paginated list of threads with filtering options for assistant,
        organization, and visibility."""
        with totals.hold() if query.include_total else nullcontext():
            page = await thread_page(store, query, caller.scope)
        return ThreadList.of(page.data, page.has_more, query.limit, page.total)

    watch.install(app, settings)  # before /v1/threads/{thread_id}, which would take "watch"

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
            return schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class _Server(uvicorn.Server):
    """A uvicorn server that leaves the signals to serve(): two share this process, and
    uvicorn's own capture would give them to the last one started."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(servers: Sequence[uvicorn.Server]) -> None:
    """Run ``servers`` in this event loop until SIGINT or SIGTERM, or until one of them stops:
    then every one shuts down gracefully (a second SIGINT forces it, as with uvicorn alone).
    One that could not start (its port taken, the store's bootstrap failing) stops the others
    and the process exits with its code, uvicorn's 3."""
    loop = asyncio.get_running_loop()

    def stop(sig: int) -> None:
        for server in servers:
            server.handle_exit(sig, None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    codes: list[int | str | None] = []

    async def run(server: uvicorn.Server) -> None:
        try:
            await server.serve()
        except SystemExit as exc:
            codes.append(exc.code)
        finally:
            for other in servers:
                other.should_exit = True

    await asyncio.gather(*(run(server) for server in servers))
    if codes:
        raise SystemExit(codes[0])


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    app = create_app(settings)
    common: dict[str, Any] = {
        "log_config": None,  # our handlers (services.logs), no colour
        "access_log": False,  # api.ops logs one line per request, with its id
    }
    public = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        # bounds the request line and headers when run with h11 (httptools has no such bound;
        # api.limits answers 414/431 below it either way)
        h11_max_incomplete_event_size=settings.api_max_url_bytes + settings.api_max_header_bytes,
        **common,
    )
    internal = uvicorn.Config(
        ops.create_ops_app(app, settings),
        host=settings.api_ops_host,
        port=settings.api_ops_port,
        lifespan="off",  # the public app's lifespan opens and closes the services both use
        **common,
    )
    with asyncio.Runner(loop_factory=public.get_loop_factory()) as runner:
        runner.run(serve([_Server(public), _Server(internal)]))


if __name__ == "__main__":
    main()
