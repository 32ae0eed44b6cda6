"""End to end: records produced to the real broker show up, projected, in the real API."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from consumers.sample import cloud_event
from services.settings import Settings
from testkit.kafka import produce, read_all, structured

pytestmark = pytest.mark.e2e

T0 = datetime(2025, 11, 17, 10, 0, tzinfo=UTC)


def at(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def poll(client: httpx.Client, until: Any, deadline: float = 60) -> dict[str, Any]:
    end = time.monotonic() + deadline
    while True:
        body: dict[str, Any] = client.get("/v1/threads", params={"limit": 100}).json()
        if until(body) or time.monotonic() > end:
            return body
        time.sleep(0.3)


async def test_produced_events_appear_in_the_api(
    settings: Settings, run_process: Any, api_client: httpx.Client
) -> None:
    # given: threads with messages, published out of order, with producer retries and garbage
    rng = random.Random(7)
    expected: dict[str, dict[str, Any]] = {}
    events = []
    for n in range(8):
        thread = f"thrd_e2e_{n}"
        created = n * 1000
        events.append(
            cloud_event(
                "thread.created",
                thread,
                at(created),
                {"organization_id": "org_e2e", "user_id": "usr_e2e", "title": f"Thread {n}"},
            )
        )
        count = rng.randint(0, 12)
        times = [created + rng.randint(1, 900) for _ in range(count)]
        for i, t in enumerate(times):
            events.append(
                cloud_event(
                    "thread.message_added",
                    thread,
                    at(t),
                    {"message_id": f"msg_{n}_{i}", "role": "user"},
                )
            )
        expected[thread] = {
            "message_count": count,
            "last_message_at": at(max(times or [created])),
            "created_at": at(created),
        }
    rng.shuffle(events)  # a message may now come before its thread.created
    records = [structured(e) for e in events]
    records += rng.sample(records, 10)  # producer retries: the same events again
    poison: tuple[bytes, bytes, list[tuple[str, bytes]]] = (b"thrd_e2e_0", b"{not json", [])
    records.append(poison)

    # when: the projector runs as its own process and the records are produced
    projector = run_process("consumers.projector", settings)
    await produce(settings.kafka_bootstrap_servers, settings.topic, records)

    # then: the API lists every thread with the right counts and times, newest first
    def complete(body: dict[str, Any]) -> bool:
        got = {t["id"]: t for t in body.get("data", [])}
        return all(
            thread in got
            and got[thread]["message_count"] == want["message_count"]
            and got[thread]["last_message_at"] == want["last_message_at"]
            for thread, want in expected.items()
        )

    body = poll(api_client, complete)
    assert complete(body), f"{body}\n--- projector log ---\n{projector.output()}"
    got = {t["id"]: t for t in body["data"]}
    for thread, want in expected.items():
        assert got[thread]["created_at"] == want["created_at"]
        assert got[thread]["updated_at"] == want["last_message_at"]
    assert [t["id"] for t in body["data"]] == sorted(expected, reverse=True)
    assert body["has_more"] is False
    assert body["first_id"] == "thrd_e2e_7" and body["last_id"] == "thrd_e2e_0"

    # and the poison record went to the dead-letter topic, bytes and key intact
    dead = await read_all(settings.kafka_bootstrap_servers, settings.dlq_topic, expect=1)
    assert [(r.key, r.value) for r in dead] == [(poison[0], poison[1])]
    headers = dict(dead[0].headers)
    assert headers["dlq.reason"].startswith(b"not_json: not valid JSON")
    assert headers["dlq.topic"] == settings.topic.encode()

    # and a normal run logs no warning or error (issue: operators alert on them)
    projector.stop()
    for line in projector.output().splitlines():
        assert " WARNING " not in line and " ERROR " not in line, line
