"""Fixtures that find real servers (testkit.servers: from the environment, testcontainers, or
scripts/stack) and run our entry points on them (testkit.processes)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.mongo.bootstrap import Services, bootstrap, migrate
from services.settings import Settings
from testkit.processes import Process, note_migrated
from testkit.servers import SaslKafka, Servers, fresh_settings, running_servers, sasl_listener


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    with running_servers() as found:
        yield found


@pytest.fixture(scope="session")
def sasl_kafka(servers: Servers) -> SaslKafka:
    found = sasl_listener(servers)
    if found is None:
        pytest.skip(
            "no Kafka SASL listener: THREADVIEW_TEST_KAFKA_SASL (host:port) and "
            "THREADVIEW_TEST_KAFKA_USERS (a file as scripts/stack writes) name one"
        )
    return found


@pytest.fixture
def settings(servers: Servers) -> Settings:
    """Settings of a run of our own: a fresh topic, consumer group and database."""
    return fresh_settings(servers)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    await migrate(settings)
    note_migrated(settings)
    built = await bootstrap(settings)
    yield built
    await built.client.drop_database(settings.mongo_database)
    await built.close()


@pytest.fixture
def run_process(tmp_path: Path) -> Iterator[Any]:
    started: list[Process] = []

    def run(module: str, settings: Settings, *args: str, migrate: bool = True) -> Process:
        log = tmp_path / f"{module}.{len(started)}.log"
        process = Process(module, settings, log, *args, migrate=migrate)
        started.append(process)
        return process

    yield run
    for process in started:
        process.stop()


@pytest.fixture
async def service_key(services: Services) -> str:
    """A service key for the organizations the tests use."""
    _, plaintext = await services.keys.create("service", ["org_e2e", "org_a", "org_b", "org_c"])
    return plaintext


@pytest.fixture
def api_client(settings: Settings, run_process: Any, service_key: str) -> Iterator[httpx.Client]:
    """A client of the real API, run as its own process, once it answers."""
    process = run_process("api.main", settings)
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{settings.api_port}",
        headers={"X-API-Key": service_key},
        timeout=10,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            client.get("/healthz").raise_for_status()  # answered once the lifespan has run
            break
        except httpx.HTTPError:
            if process.popen.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the API did not start:\n{process.output()}")
            time.sleep(0.2)
    yield client
    client.close()


@pytest.fixture
async def api(services: Services, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API app in process, on the real store (the test's own database)."""
    from api.main import create_app

    app = create_app(settings)
    app.state.services = services
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://threadview.test") as client:
        yield client
