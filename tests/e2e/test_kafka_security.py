"""End to end over Kafka's SASL/SCRAM listener: each component logs in as its own user and
does its work with the ACLs scripts/stack grants it (the README's table), and nothing more;
a client without credentials, or with a wrong password, is refused at once."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from uuid import uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from consumers.kafka_security import client_options
from consumers.sample import sample_events
from consumers.topics import committed_offsets, ensure_topics, reader, topic_offsets
from services.mongo.bootstrap import Services
from services.settings import Settings
from services.views import ViewError
from testkit.processes import run_cli
from testkit.servers import SaslKafka, Servers, fresh_settings

pytestmark = pytest.mark.e2e

REFUSED_WITHIN = 20.0  # seconds: a refusal is an error, not a hang


@pytest.fixture
def settings(servers: Servers) -> Settings:
    """A fresh run whose names fall under the ACLs scripts/stack grants for the tests:
    prefixed sasl-events., sasl-dlq., sasl-group. (the same ACLs as for the defaults)."""
    run = uuid4().hex[:10]
    return fresh_settings(servers).model_copy(
        update={
            "topic": f"sasl-events.{run}",
            "dlq_topic": f"sasl-dlq.{run}",
            "consumer_group": f"sasl-group.{run}",
        }
    )


def as_user(
    settings: Settings,
    sasl: SaslKafka,
    user: str,
    mechanism: str = "SCRAM-SHA-512",
    password: str | None = None,
) -> Settings:
    """The settings of a component that logs in to the SASL listener as ``user``."""
    return Settings(
        **{
            **settings.model_dump(),
            "kafka_bootstrap_servers": sasl.address,
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": mechanism,
            "kafka_sasl_username": user,
            "kafka_sasl_password": sasl.passwords[user] if password is None else password,
        }
    )


async def produce(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True)
    await asyncio.wait_for(producer.start(), REFUSED_WITHIN)
    try:
        for key, value in records:
            await producer.send_and_wait(settings.topic, value, key=key)
    finally:
        await producer.stop()


async def listed(api: Any, key: str, until: Any, deadline: float = 60) -> dict[str, Any]:
    """GET /v1/threads of the API process ``api`` until ``until`` holds of its body."""
    end = time.monotonic() + deadline
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api}", timeout=10) as client:
        while True:
            try:
                answer = await client.get(
                    "/v1/threads", params={"limit": 100}, headers={"X-API-Key": key}
                )
                body: dict[str, Any] = answer.json() if answer.status_code == 200 else {}
            except httpx.HTTPError:  # not listening yet
                body = {}
            if until(body) or time.monotonic() > end:
                return body
            await asyncio.sleep(0.3)


async def test_the_pipeline_runs_with_each_component_as_its_own_user(
    settings: Settings,
    sasl_kafka: SaslKafka,
    services: Services,
    run_process: Any,
) -> None:
    admin = as_user(settings, sasl_kafka, "admin")
    projector_user = as_user(settings, sasl_kafka, "projector")
    producer = as_user(settings, sasl_kafka, "producer", mechanism="SCRAM-SHA-256")

    # given: the topics, created by the admin (the projector and the producer may not)
    await ensure_topics(admin)
    # when: the sample producer publishes as its user, and a record no event can be made of
    result = run_cli("consumers.sample", producer)
    assert result.returncode == 0, result.stderr
    assert f"published {len(sample_events())} sample events" in result.stdout, result.stderr
    await produce(producer, [(b"thrd_sasl_poison", b"{not json")])
    # ... and the projector, as its user, consumes them in its group, commits offsets in its
    # transactions and dead-letters the poison record
    process = run_process("consumers.projector", projector_user)
    _, key = await services.keys.create("service", ["org_12345"])
    api = run_process("api.main", settings)

    # then: the API lists the sample's threads with their exact counts
    wanted = {"thrd_abc123": 5, "thrd_def456": 0, "thrd_pin789": 0}
    body = await listed(
        settings.api_port, key, lambda b: {t["id"] for t in b.get("data", [])} >= set(wanted)
    )
    counts = {t["id"]: t["message_count"] for t in body.get("data", [])}
    assert counts == wanted, (body, process.output(), api.output())
    assert "Authorization" not in process.output(), process.output()
    assert "not seen and not created" not in process.output()

    # ... threadview-dlq, as its user, lists the dead letter and re-drives it to the events
    # topic, where the projector dead-letters it again
    dlq_user = as_user(settings, sasl_kafka, "dlq")
    listed_once = run_cli("consumers.dlq", dlq_user, "list")
    assert "1 dead letters in" in listed_once.stdout, listed_once.stderr
    redriven = run_cli("consumers.dlq", dlq_user, "redrive")
    assert redriven.returncode == 0, redriven.stderr
    deadline = time.monotonic() + 30
    while "2 dead letters in" not in (again := run_cli("consumers.dlq", dlq_user, "list")).stdout:
        assert time.monotonic() < deadline, (again.stdout, again.stderr, process.output())
        await asyncio.sleep(0.5)

    # ... and the rebuild's user reads the events and what the projector group committed
    rebuild = as_user(settings, sasl_kafka, "rebuild")
    consumer = reader(rebuild)
    await consumer.start()
    try:
        ends = (await topic_offsets(consumer, settings.topic)).end
    finally:
        await consumer.stop()
    assert sum(ends.values()) == len(sample_events()) + 2  # the poison record, re-driven once
    deadline = time.monotonic() + 20
    while (committed := await committed_offsets(rebuild)) != ends:
        assert time.monotonic() < deadline, (committed, ends)
        await asyncio.sleep(0.3)
    # ... and threadview-rebuild, as that user, builds a view from the log and makes it live
    built = run_cli("consumers.rebuild", rebuild, "run", "--name", "sasl", "--json")
    assert built.returncode == 0, built.stderr
    swapped = run_cli("consumers.rebuild", rebuild, "swap", "sasl", "--json")
    assert swapped.returncode == 0, (swapped.stdout, swapped.stderr, process.output())
    assert "Authorization" not in built.stderr + swapped.stderr


async def test_a_client_without_credentials_is_refused(
    settings: Settings, sasl_kafka: SaslKafka
) -> None:
    anonymous = settings.model_copy(update={"kafka_bootstrap_servers": sasl_kafka.address})
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError):
        await produce(anonymous, [(b"k", b"v")])
    assert time.monotonic() - started < REFUSED_WITHIN


async def test_a_wrong_password_is_refused(
    settings: Settings, sasl_kafka: SaslKafka, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = as_user(settings, sasl_kafka, "producer", password="not-the-password")
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        await produce(wrong, [(b"k", b"v")])
    assert time.monotonic() - started < REFUSED_WITHIN
    assert "SaslAuthenticationFailed" in caplog.text


async def test_a_user_may_do_only_what_its_acls_allow(
    settings: Settings, sasl_kafka: SaslKafka, caplog: pytest.LogCaptureFixture
) -> None:
    await ensure_topics(as_user(settings, sasl_kafka, "admin"))

    # the projector reads the events topic: it may not write to it
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(as_user(settings, sasl_kafka, "projector"), [(b"k", b"v")])

    # the producer writes events: it may not join the projector's group and read them
    producer = as_user(settings, sasl_kafka, "producer")
    consumer = AIOKafkaConsumer(
        settings.topic, **client_options(producer), group_id=settings.consumer_group
    )
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            await asyncio.wait_for(consumer.start(), REFUSED_WITHIN)
    finally:
        await consumer.stop()

    # the producer may not see the dead-letter topic
    consumer = reader(producer)
    await consumer.start()
    try:
        with pytest.raises(ViewError, match="does not exist"):
            await topic_offsets(consumer, settings.dlq_topic)
    finally:
        await consumer.stop()

    # a component's user may not create topics (the admin does): said, not raised
    fresh = uuid4().hex[:10]
    new = producer.model_copy(
        update={"topic": f"sasl-events.{fresh}", "dlq_topic": f"sasl-dlq.{fresh}"}
    )
    with caplog.at_level(logging.WARNING, logger="consumers.topics"):
        await ensure_topics(new)
    assert caplog.text.count("not seen and not created") == 2, caplog.text
