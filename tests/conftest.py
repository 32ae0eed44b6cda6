"""Fixtures that find real servers: from the environment, testcontainers, or scripts/stack."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from pydantic import SecretStr

from services.mongo.bootstrap import Services, bootstrap, migrate
from services.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "scripts" / "stack"


@dataclass(frozen=True)
class Servers:
    kafka: str
    mongo_url: str
    # Kafka's SASL_PLAINTEXT listener with SCRAM users and ACLs: the stack's, or
    # THREADVIEW_TEST_KAFKA_SASL (with THREADVIEW_TEST_KAFKA_USERS), else none
    kafka_sasl: str | None = None


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    kafka, mongo = (
        os.environ.get("THREADVIEW_TEST_KAFKA"),
        os.environ.get("THREADVIEW_TEST_MONGO_URL"),
    )
    if kafka and mongo:
        yield Servers(kafka, mongo, os.environ.get("THREADVIEW_TEST_KAFKA_SASL"))
    elif _docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        with ExitStack() as stack:
            k = stack.enter_context(KafkaContainer("apache/kafka:4.1.1").with_kraft())
            m = stack.enter_context(MongoDbContainer("mongo:8"))
            yield Servers(k.get_bootstrap_server(), m.get_connection_url())
    else:
        was_stopped = (
            "stopped"
            in subprocess.run([STACK, "status"], capture_output=True, text=True, check=True).stdout
        )
        subprocess.run([STACK, "up"], check=True)
        yield Servers(
            f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}",
            f"mongodb://127.0.0.1:{os.environ.get('FERRETDB_PORT', '27017')}",
            f"127.0.0.1:{os.environ.get('KAFKA_SASL_PORT', '9094')}",
        )
        if was_stopped:
            subprocess.run([STACK, "down"], check=False)


@dataclass(frozen=True)
class SaslKafka:
    """Kafka's SASL listener and its users' passwords (admin, projector, rebuild, dlq,
    producer: the ACLs of each are scripts/stack's kafka_acls)."""

    address: str
    passwords: dict[str, str]


@pytest.fixture(scope="session")
def sasl_kafka(servers: Servers) -> SaslKafka:
    if servers.kafka_sasl is None:
        pytest.skip(
            "no Kafka SASL listener: THREADVIEW_TEST_KAFKA_SASL (host:port) and "
            "THREADVIEW_TEST_KAFKA_USERS (a file as scripts/stack writes) name one"
        )
    run = os.environ.get("THREADVIEW_RUN_DIR") or Path(
        os.environ.get("THREADVIEW_CACHE", ROOT / ".cache"), "run"
    )
    users = Path(os.environ.get("THREADVIEW_TEST_KAFKA_USERS") or Path(run, "kafka-users.env"))
    passwords = {}
    for line in users.read_text().splitlines():  # THREADVIEW_STACK_KAFKA_<USER>_PASSWORD=...
        name, _, password = line.partition("=")
        passwords[
            name.removeprefix("THREADVIEW_STACK_KAFKA_").removesuffix("_PASSWORD").lower()
        ] = password
    return SaslKafka(servers.kafka_sasl, passwords)


@pytest.fixture
def settings(servers: Servers) -> Settings:
    """Settings of a run of our own: a fresh topic, consumer group and database."""
    return fresh_settings(servers)


def fresh_settings(servers: Servers) -> Settings:
    """What the ``settings`` fixture gives, for fixtures of a wider scope."""
    run = uuid4().hex[:10]
    return Settings(
        kafka_bootstrap_servers=servers.kafka,
        topic=f"test.{run}.threads.events",
        dlq_topic=f"test.{run}.threads.events.dlq",
        consumer_group=f"test-{run}",
        topic_partitions=3,
        mongo_url=servers.mongo_url,
        mongo_database=f"test_{run}",
        api_port=free_port(),
        projector_port=free_port(),
        api_ops_port=free_port(),
        key_cache_seconds=0,  # revocations apply at once (tests/integration/test_ops.py: cached)
    )


_MIGRATED: set[tuple[str, str]] = set()
# the entry points that need the store migrated (the tests' processes are started after it)
NEEDS_SCHEMA = ("consumers.projector", "api.main", "api.keys_cli", "consumers.rebuild")


def migrated(settings: Settings) -> None:
    """:func:`migrate`, once per database, from code with or without a running event loop."""
    where = (settings.mongo_url, settings.mongo_database)
    if where not in _MIGRATED:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, migrate(settings)).result()
        _MIGRATED.add(where)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    await migrate(settings)
    _MIGRATED.add((settings.mongo_url, settings.mongo_database))
    built = await bootstrap(settings)
    yield built
    await built.client.drop_database(settings.mongo_database)
    await built.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def settings_env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):  # its str() is asterisks
            value = value.get_secret_value()
        if value is not None:
            env[f"THREADVIEW_{name.upper()}"] = str(value)
    return env


def run_cli(
    module: str,
    settings: Settings,
    *args: str,
    env: dict[str, str] | None = None,
    migrate: bool = True,
) -> subprocess.CompletedProcess[str]:
    """One of our command-line tools, run to its end with the test's settings (and ``env``),
    on a migrated store unless ``migrate`` is false."""
    if migrate and module in NEEDS_SCHEMA:
        migrated(settings)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**settings_env(settings), **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )


async def run_cli_async(
    module: str,
    settings: Settings,
    *args: str,
    env: dict[str, str] | None = None,
    migrate: bool = True,
) -> subprocess.CompletedProcess[str]:
    """:func:`run_cli` without blocking the event loop (a test producing records meanwhile)."""
    if migrate and module in NEEDS_SCHEMA:
        migrated(settings)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        env={**settings_env(settings), **(env or {})},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 240)
    assert process.returncode is not None
    return subprocess.CompletedProcess(list(args), process.returncode, out.decode(), err.decode())


class Process:
    """One of our entry points, run as a separate OS process with the test's settings."""

    def __init__(
        self, module: str, settings: Settings, log: Path, *args: str, migrate: bool = True
    ) -> None:
        if migrate and module in NEEDS_SCHEMA:  # as scripts/run and docker compose do first
            migrated(settings)
        self.log = log
        self._file = log.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=settings_env(settings),
            cwd=ROOT,
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._file.close()

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a crash."""
        self.popen.kill()
        self.popen.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


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
