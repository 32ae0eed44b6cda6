"""How the API answers failures: 503 only when the store is unreachable or too slow (retry
later), 500 with an error id for anything else, the same id in the log with its cause."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import ExecutionTimeout, OperationFailure

from services.keys import KeyCache
from services.mongo.bootstrap import Services
from services.mongo.keys import MongoKeyStore
from services.mongo.store import MongoThreadStore
from services.mongo.views import MongoViewCatalog
from services.settings import Settings
from testkit.servers import free_port

pytestmark = pytest.mark.integration

ERROR_ID = re.compile(r"internal error \(id ([0-9a-f]{12})\)")


@pytest.fixture
async def client(services: Services, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in process on the real store, with a service key; an exception that escapes
    every handler is answered 500, as a server answers it, rather than raised into the test."""
    from api.main import create_app

    app = create_app(settings)
    app.state.services = services
    _, plaintext = await services.keys.create("service", ["org_a"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://threadview.test", headers={"X-API-Key": plaintext}
    ) as c:
        yield c


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body == {
        "error": {
            "message": body["error"]["message"],
            "type": "api_error",
            "param": None,
            "code": code,
        }
    }
    assert "Traceback" not in response.text
    message: str = body["error"]["message"]
    return message


def logged_with(caplog: pytest.LogCaptureFixture, error_id: str) -> logging.LogRecord:
    """The one ERROR line naming ``error_id``; it carries the exception."""
    lines = [r for r in caplog.records if error_id in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.ERROR], caplog.text
    assert lines[0].exc_info is not None
    return lines[0]


async def test_a_query_the_store_refuses_is_500_with_an_id_in_the_log(
    services: Services, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    # given: the view lost its list indexes, so the store refuses every page's index hint
    await services.store.threads.drop_indexes()
    # when
    response = await client.get("/v1/threads")
    # then: a 500 naming an id, which the log gives with the store's own error
    found = ERROR_ID.fullmatch(error(response, 500, "internal_error"))
    assert found, response.text
    record = logged_with(caplog, found[1])
    assert record.exc_info and isinstance(record.exc_info[1], OperationFailure)
    assert "hint" not in response.text  # nothing of the cause reaches the caller


async def test_an_unexpected_exception_is_500_with_an_id_in_the_log(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(MongoThreadStore, "page", broken)
    response = await client.get("/v1/threads")
    found = ERROR_ID.fullmatch(error(response, 500, "internal_error"))
    assert found, response.text
    record = logged_with(caplog, found[1])
    assert record.exc_info and isinstance(record.exc_info[1], RuntimeError)
    assert "secret" not in response.text


@pytest.mark.parametrize(
    "failure",
    [OperationFailure("boom", code=2), OperationFailure("no code"), ExecutionTimeout("slow", 50)],
    ids=["operation failure", "no code", "execution timeout"],
)
async def test_each_store_error_class_gets_its_status(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    async def failing(*_: object) -> None:
        raise failure

    monkeypatch.setattr(MongoThreadStore, "page", failing)
    response = await client.get("/v1/threads")
    if isinstance(failure, ExecutionTimeout):  # the store too slow: retry later (api.limits)
        error(response, 503, "query_timeout")
        assert response.headers["retry-after"] == "1"
    else:
        assert ERROR_ID.fullmatch(error(response, 500, "internal_error"))


async def test_an_unreachable_store_is_503_and_no_error_line(
    services: Services,
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: keys are checked on the real store, but the view is served by one nothing answers
    dead: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{free_port()}", serverSelectionTimeoutMS=300, connectTimeoutMS=300
    )

    async def unreachable() -> MongoThreadStore:
        return MongoThreadStore(dead[services.settings.mongo_database])

    monkeypatch.setattr(services, "served_store", unreachable)
    try:
        # when
        response = await client.get("/v1/threads")
    finally:
        await dead.close()
    # then
    assert error(response, 503, "store_unavailable") == (
        "the thread store is unavailable; retry later"
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert any("ServerSelectionTimeoutError" in r.getMessage() for r in caplog.records)


async def test_a_store_unreachable_for_the_key_check_too_is_503(settings: Settings) -> None:
    from api.main import create_app

    # given: every part of the app on a store nothing answers
    dead: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{free_port()}", serverSelectionTimeoutMS=300, connectTimeoutMS=300
    )
    database = dead[settings.mongo_database]
    keys = MongoKeyStore(database)
    app = create_app(settings)
    app.state.services = Services(
        settings,
        dead,
        database,
        MongoViewCatalog(database),
        MongoThreadStore(database),
        keys,
        KeyCache(keys, 0),
        descending_indexes=False,
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://threadview.test") as c:
            for path in ("/v1/threads", "/v1/threads/thrd_1"):
                # when
                response = await c.get(path, headers={"X-API-Key": "tv_0123456789ab_secret"})
                # then
                error(response, 503, "store_unavailable")
    finally:
        await dead.close()


async def test_the_openapi_document_names_the_500_and_the_503(settings: Settings) -> None:
    from api.main import create_app

    # served on the ops port: tests/integration/test_hygiene.py
    schema = create_app(settings).openapi()
    for path in ("/v1/threads", "/v1/threads/{thread_id}"):
        assert {"500", "503"} <= set(schema["paths"][path]["get"]["responses"])
