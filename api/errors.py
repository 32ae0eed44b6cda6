"""Errors as api.md defines them: a JSON body, the right status, never a stack trace."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pymongo.errors import PyMongoError, ServerSelectionTimeoutError
from starlette.exceptions import HTTPException

from services.mongo.store import transient
from services.ports import CursorNotFound
from services.threads import Forbidden, TooWide

log = logging.getLogger("threadview.api")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type: str,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = ErrorDetail(message=message, type=type, param=param, code=code)


def error_response(
    status: int, detail: ErrorDetail, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(ErrorBody(error=detail).model_dump(), status_code=status, headers=headers)


def invalid(message: str, param: str | None, code: str = "parameter_invalid") -> ApiError:
    return ApiError(400, message, "invalid_request_error", param, code)


def internal_error(exc: BaseException) -> JSONResponse:
    """A 500 that names an error id, logged at ERROR with the exception: the caller quotes the
    id, the operator finds the traceback; nothing of the error itself is shown."""
    error_id = secrets.token_hex(6)
    log.error("internal error (id %s): %r", error_id, exc, exc_info=exc)
    detail = ErrorDetail(
        message=f"internal error (id {error_id})", type="api_error", code="internal_error"
    )
    return error_response(500, detail)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Invalid parameter: limit outside 1-100, order not asc/desc, malformed boolean, "
        "a cursor naming no thread you can see, or a request over more organizations than one "
        "request may read (code too_wide: pass organization_id).",
        401: "Missing, unknown or revoked X-API-Key.",
        403: "organization_id names an organization the key does not belong to.",
        500: "An internal or store error other than unavailability; the message names an "
        "error id, which the API's log gives with the cause.",
        414: "The request target (path and query) is too long.",
        431: "The request headers are too large.",
        503: "The store is unreachable or did not answer within the API's time limit (code "
        "query_timeout), or the API is at its limit of requests in flight (code overloaded); "
        "retry after the Retry-After header's seconds.",
    }.items()
}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        location = [str(part) for part in first.get("loc", ())]
        param = location[-1] if len(location) > 1 else None
        message = (
            f"invalid {param}: {first.get('msg', 'invalid value')}" if param else "invalid request"
        )
        return error_response(400, invalid(message, param).detail)

    @app.exception_handler(CursorNotFound)
    async def cursor(_: Request, exc: CursorNotFound) -> JSONResponse:
        return error_response(400, invalid(str(exc), exc.param, "cursor_not_found").detail)

    @app.exception_handler(Forbidden)
    async def forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        detail = ErrorDetail(
            message=str(exc),
            type="permission_error",
            param=exc.param,
            code="organization_forbidden",
        )
        return error_response(403, detail)

    @app.exception_handler(TooWide)
    async def too_wide(_: Request, exc: TooWide) -> JSONResponse:
        return error_response(400, invalid(str(exc), "organization_id", "too_wide").detail)

    @app.exception_handler(PyMongoError)
    async def store_error(_: Request, exc: PyMongoError) -> JSONResponse:
        # 503 only for what may pass by itself (services.mongo.store.transient, the projector's
        # rule too: connection, selection, time limits, elections); a refused query is a 500
        if not transient(exc) and not exc.timeout:
            return internal_error(exc)
        log.warning("store unavailable: %s: %s", type(exc).__name__, exc)
        if exc.timeout and not isinstance(exc, ServerSelectionTimeoutError):
            # the request's time limit (api.limits): the server's maxTimeMS or the client's
            detail = ErrorDetail(
                message="the thread store did not answer within the API's time limit; retry later",
                type="api_error",
                code="query_timeout",
            )
        else:
            detail = ErrorDetail(
                message="the thread store is unavailable; retry later",
                type="api_error",
                code="store_unavailable",
            )
        return error_response(503, detail)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "api_error"
        detail = ErrorDetail(message=str(exc.detail), type=kind)
        return error_response(exc.status_code, detail, exc.headers)  # e.g. Allow on a 405

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return internal_error(exc)
