"""The HTTP API: GET /v1/threads, read only from the projection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import uvicorn
from fastapi import Depends, FastAPI, Query, Request

from api.models import ThreadList
from services.bootstrap import Services, bootstrap
from services.query import Order, ThreadQuery
from services.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = await bootstrap(settings)
        yield
        await app.state.services.close()

    app = FastAPI(title="threadview", version="1.0.0", lifespan=lifespan)

    @app.get("/v1/threads", response_model=ThreadList)
    async def list_threads(
        services: Annotated[Services, Depends(_services)],
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        order: Order = "desc",
    ) -> ThreadList:
        """Retrieve a paginated list of threads."""
        page = await services.store.page(ThreadQuery(limit=limit, order=order))
        return ThreadList.of(page.data, page.has_more, limit, page.total)

    return app


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def main() -> None:
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port)


if __name__ == "__main__":
    main()
