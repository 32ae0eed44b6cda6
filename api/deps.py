"""Request dependencies: the composed services and the caller's API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from api.errors import ApiError
from services.keys import ApiKey
from services.mongo.bootstrap import Services
from services.ports import ThreadReader

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key made with threadview-keys."
)


async def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    if problem := await services.unmigrated():  # looked at again every few seconds
        raise ApiError(503, problem, "api_error", code="store_not_migrated")
    return services


ServicesDep = Annotated[Services, Depends(_services)]


async def _store(services: ServicesDep) -> ThreadReader:
    return await services.served_store()


StoreDep = Annotated[ThreadReader, Depends(_store)]


async def _caller(
    services: ServicesDep, api_key: Annotated[str | None, Depends(_api_key_header)]
) -> ApiKey:
    key = await services.key_cache.authenticate(api_key) if api_key else None
    if key is None:
        raise ApiError(
            401,
            "missing API key: send it in the X-API-Key header"
            if not api_key
            else "invalid or revoked API key",
            "authentication_error",
            code="invalid_api_key",
        )
    return key


CallerDep = Annotated[ApiKey, Depends(_caller)]
