"""The real servers the tests and benchmarks run against: found in the environment, started by
testcontainers, or brought up by scripts/stack; free ports and fresh settings on them."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

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


@dataclass(frozen=True)
class SaslKafka:
    """Kafka's SASL listener and its users' passwords (admin, projector, rebuild, dlq,
    producer: the ACLs of each are scripts/stack's kafka_acls)."""

    address: str
    passwords: dict[str, str]


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


@contextmanager
def running_servers() -> Iterator[Servers]:
    """Kafka and a MongoDB-compatible store for as long as the block runs: the environment's
    (THREADVIEW_TEST_KAFKA and THREADVIEW_TEST_MONGO_URL), else testcontainers' when docker
    answers, else scripts/stack's (brought up, and down again if it was stopped)."""
    kafka, mongo = (
        os.environ.get("THREADVIEW_TEST_KAFKA"),
        os.environ.get("THREADVIEW_TEST_MONGO_URL"),
    )
    if kafka and mongo:
        yield Servers(kafka, mongo, os.environ.get("THREADVIEW_TEST_KAFKA_SASL"))
    elif docker_answers():
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


def sasl_listener(servers: Servers) -> SaslKafka | None:
    """The SASL listener of ``servers`` and its users' passwords, read from
    THREADVIEW_TEST_KAFKA_USERS (a file as scripts/stack writes, by default its own); None
    when there is no such listener."""
    if servers.kafka_sasl is None:
        return None
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


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: each bound at once, so none is handed out twice (one port
    asked for after another may come back the same once the first socket is closed; then an
    API and a projector started on one port, and the API's requests reached the projector)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def fresh_settings(servers: Servers) -> Settings:
    """Settings of a run of our own on ``servers``: a fresh topic, consumer group and database,
    and free ports."""
    run = uuid4().hex[:10]
    api_port, projector_port, api_ops_port = free_ports(3)
    return Settings(
        kafka_bootstrap_servers=servers.kafka,
        topic=f"test.{run}.threads.events",
        dlq_topic=f"test.{run}.threads.events.dlq",
        consumer_group=f"test-{run}",
        topic_partitions=3,
        mongo_url=servers.mongo_url,
        mongo_database=f"test_{run}",
        api_port=api_port,
        projector_port=projector_port,
        api_ops_port=api_ops_port,
        key_cache_seconds=0,  # revocations apply at once (tests/integration/test_ops.py: cached)
    )
