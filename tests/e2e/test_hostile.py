"""End to end: a hostile or buggy producer cannot stop, corrupt or move the view (issue 15).

Records are published with a plain aiokafka producer, as another service would, while the
projector and the API run as their own processes against the real Kafka and store. Among the
good events of a few threads of two organizations come poison records of every kind the issue
found, conflicting creates, a far-future delete and 2,000 unknown types; then a sentinel
thread. The expected view is worked out by hand from the good events alone (class ``Lane``),
not with the fold under test.

Why this module is longer than ~200 lines: one test per kind of hostile input (sizes, times,
headers, encodings, label values) through the real pipeline, sharing the producer and the
checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import string
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumers.sample import cloud_event
from consumers.topics import ensure_topics
from services.mongo.bootstrap import Services
from services.settings import Settings
from testkit.kafka import Raw, produce, read_all, structured
from testkit.processes import run_cli
from tests.fault.harness import wait_for_no_lag

pytestmark = pytest.mark.e2e

T0 = datetime(2025, 11, 17, 10, 0, tzinfo=UTC)
ORG_A, USER_U = "org_a", "usr_u"
ORG_B, USER_V = "org_b", "usr_v"
SENTINEL = "thrd_zz_sentinel"
UNKNOWN_TYPES = 2000
# The contract bounds an event's type (services.events.TYPE_MAX, 128): a longer type is an
# invalid event, dead-lettered, not an unknown one. The unknown types stay within it, and each
# record is padded to ~1 kB: 2,000 distinct labels of 120 characters would still make /metrics
# weigh ~0.5 MB if every type became a label value.
UNKNOWN_TYPE_CHARS = 120
METRICS_MAX_BYTES = 100_000


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def binary(event: dict[str, Any], data: bytes) -> Raw:
    """An event in CloudEvents binary mode (attributes in ``ce_*`` headers) with raw ``data``."""
    headers = [(f"ce_{k}", str(v).encode()) for k, v in event.items() if k != "data"]
    return event["subject"].encode(), data, [*headers, ("content-type", b"application/json")]


@dataclass
class Lane:
    """One thread's records in the order they are published, and what its good events alone
    make of it (as the API shows it). Each method appends one good event and says its effect;
    ``hostile`` appends a record that must be dead-lettered with one of ``codes``."""

    id: str
    records: list[tuple[Raw, frozenset[str] | None]] = field(default_factory=list)
    want: dict[str, Any] = field(default_factory=dict)
    messages: set[str] = field(default_factory=set)
    times: list[float] = field(default_factory=list)

    def good(self, event: dict[str, Any], seconds: float) -> Raw:
        record = structured(event)
        self.records.append((record, None))
        self.times.append(seconds)
        self.want["updated_at"] = at(max(self.times))
        return record

    def create(self, seconds: float, org: str, user: str, title: str, visible: bool = True) -> Raw:
        data = {"organization_id": org, "user_id": user, "title": title, "visible_in_ui": visible}
        self.want.update(
            id=self.id,
            object="thread",
            created_at=at(seconds),
            last_message_at=at(seconds),
            metadata={},
            assistant_id=None,
            organization_id=org,
            user_id=user,
            title=title,
            status="inactive",
            message_count=0,
            visible_in_ui=visible,
            last_model_used=None,
            is_pinned=False,
            pinned_at=None,
            space_ids=[],
            deleted_at=None,
        )
        return self.good(cloud_event("thread.created", self.id, at(seconds), data), seconds)

    def message(self, seconds: float, message_id: str) -> None:
        data = {"message_id": message_id, "role": "user"}
        self.good(cloud_event("thread.message_added", self.id, at(seconds), data), seconds)
        self.messages.add(message_id)
        self.want["message_count"] = len(self.messages)
        self.want["last_message_at"] = at(seconds)  # each lane adds its messages in time order

    def rename(self, seconds: float, title: str) -> None:
        self.good(cloud_event("thread.updated", self.id, at(seconds), {"title": title}), seconds)
        self.want["title"] = title

    def delete(self, seconds: float) -> None:
        self.good(cloud_event("thread.deleted", self.id, at(seconds), {}), seconds)
        self.want["deleted_at"] = at(seconds)

    def restore(self, seconds: float) -> None:
        self.good(cloud_event("thread.restored", self.id, at(seconds), {}), seconds)
        self.want["deleted_at"] = None

    def again(self, record: Raw) -> None:
        """An exact redelivery of a record already in the lane: the same bytes, no effect."""
        self.records.append((record, None))

    def hostile(self, record: Raw, *codes: str) -> None:
        self.records.append((record, frozenset(codes)))


def event_json(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def hostile_log(
    rng: random.Random,
) -> tuple[list[tuple[Raw, frozenset[str] | None]], dict[str, Lane]]:
    """Every record to publish, each with the codes it must be dead-lettered with (None: not
    dead-lettered), and the lanes of the threads whose views are checked."""
    lanes = {
        name: Lane(name)
        for name in (
            "thrd_a_0",  # T: another organization's later create must not move it
            "thrd_a_1",
            "thrd_a_2",
            "thrd_a_hidden",  # H: a later create must not make it visible or rename it
            "thrd_b_0",
            "thrd_b_1",
            "thrd_b_2",
            "thrd_b_restored",  # D: a delete dated 9999 must not outlive the restore after it
        )
    }
    for n, lane in enumerate(lanes.values()):
        org, user = (ORG_A, USER_U) if lane.id.startswith("thrd_a") else (ORG_B, USER_V)
        start = n * 600
        hidden = lane.id == "thrd_a_hidden"
        first = lane.create(start, org, user, f"Title of {lane.id}", visible=not hidden)
        for m in range(n % 4 + 1):
            lane.message(start + 10 + m, f"msg_{lane.id}_{m}")
        if lane.id == "thrd_a_0":
            lane.again(first)
            stolen = cloud_event(
                "thread.created",
                lane.id,
                "2001-01-01T00:00:00Z",  # earlier than the first create, but after the floor
                {"organization_id": ORG_B, "user_id": USER_V, "title": "Stolen"},
            )
            lane.hostile(structured(stolen), "create_conflict")
            lane.message(start + 100, f"msg_{lane.id}_late")
        if lane.id == "thrd_a_hidden":
            shown = cloud_event(
                "thread.created",
                lane.id,
                at(start + 300),
                {"organization_id": ORG_A, "user_id": USER_U, "title": "Shown"},
            )  # visible_in_ui defaults to true
            lane.hostile(structured(shown), "create_conflict")
        if lane.id in ("thrd_a_1", "thrd_b_1"):
            lane.rename(start + 50, f"Renamed {lane.id}")
        if lane.id == "thrd_b_restored":
            future = cloud_event("thread.deleted", lane.id, "9999-12-31T23:59:59Z", {})
            lane.hostile(structured(future), "time_in_future")
            lane.delete(start + 100)
            lane.restore(start + 200)

    # decoding poison, each on a good thread, so that one applied by mistake changes its view
    def message(thread: str, message_id: str, when: str) -> dict[str, Any]:
        return cloud_event("thread.message_added", thread, when, {"message_id": message_id})

    ancient = message("thrd_a_1", "msg_ancient", "0001-01-01T00:00:00+00:01")  # before year 1 UTC
    lanes["thrd_a_1"].hostile(structured(ancient), "time_before_floor", "invalid_event")
    deep = binary(
        message("thrd_b_1", "msg_deep", at(4000)),
        b'{"message_id": "msg_deep", "x": ' + b'{"x": ' * 2000 + b"{}" + b"}" * 2001,
    )
    lanes["thrd_b_1"].hostile(deep, "not_json")
    big = event_json(message("thrd_a_2", "msg_big", at(4000)))
    big = big.replace(b'"msg_big"', b'"msg_big", "n": ' + b"7" * 5000)
    lanes["thrd_a_2"].hostile((b"thrd_a_2", big, []), "not_json", "invalid_event")
    keyless = structured(message("thrd_b_2", "msg_keyless", at(4000)))
    lanes["thrd_b_2"].hostile((None, keyless[1], keyless[2]), "missing_key")
    huge = cloud_event("thread.updated", "thrd_b_0", at(4000), {"title": "h" * 900 * 1024})
    lanes["thrd_b_0"].hostile(structured(huge), "too_large")
    long_title = cloud_event("thread.updated", "thrd_a_1", at(4000), {"title": "t" * 5000})
    lanes["thrd_a_1"].hostile(structured(long_title), "invalid_event")
    metadata = {f"k{n}": "v" for n in range(17)}
    too_many = cloud_event("thread.updated", "thrd_b_2", at(4000), {"metadata": metadata})
    lanes["thrd_b_2"].hostile(structured(too_many), "invalid_event")

    # unknown types: well-formed, each its own type, ~1 kB, on the good threads
    unknown: list[tuple[Raw, frozenset[str] | None]] = []
    for n in range(UNKNOWN_TYPES):
        kind = "x." + "".join(rng.choices(string.ascii_lowercase, k=UNKNOWN_TYPE_CHARS - 2))
        thread = rng.choice(list(lanes))
        padding = {"pad": "".join(rng.choices(string.ascii_letters, k=800))}
        unknown.append((structured(cloud_event(kind, thread, at(n), padding)), None))

    # interleaved: a uniformly random merge of the lanes and the unknowns, each in its order,
    # so that the hostile records land in different batches among the unknown types
    pending = [list(lane.records) for lane in lanes.values()] + [unknown]
    records: list[tuple[Raw, frozenset[str] | None]] = []
    while any(pending):
        left = [q for q in pending if q]
        records.append(rng.choices(left, weights=[len(q) for q in left])[0].pop(0))
    sentinel = cloud_event(
        "thread.created",
        SENTINEL,
        at(9000),
        {"organization_id": ORG_A, "user_id": USER_U, "title": "Sentinel"},
    )
    records.append((structured(sentinel), None))
    return records, lanes


def metric_samples(body: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called ``name`` of a /metrics body, by their labels."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == name
    }


@pytest.fixture
async def clients(
    services: Services, api_client: httpx.Client, service_key: str
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """Clients of the running API: with a key for every organization of the test ("all"),
    and with one for organization A or B only."""
    keys = {"all": service_key}
    for org in (ORG_A, ORG_B):
        _, keys[org] = await services.keys.create("service", [org])
    async with contextlib.AsyncExitStack() as stack:
        yield {
            who: await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=api_client.base_url, headers={"X-API-Key": key}, timeout=10
                )
            )
            for who, key in keys.items()
        }


async def test_hostile_records_neither_stop_nor_corrupt_nor_move_the_view(
    settings: Settings, run_process: Any, clients: dict[str, httpx.AsyncClient]
) -> None:
    # given: a fresh topic (LogAppendTime, as the project creates its topics) holding good
    # events of two organizations interleaved with hostile records, then a sentinel
    records, lanes = hostile_log(random.Random(15))
    await ensure_topics(settings)
    positions = await produce(
        settings.kafka_bootstrap_servers, settings.topic, [raw for raw, _ in records]
    )
    expected_dead = {
        pos: codes for pos, (_, codes) in zip(positions, records, strict=True) if codes
    }
    originals = {pos: raw for pos, (raw, codes) in zip(positions, records, strict=True) if codes}
    api = clients["all"]

    # when: the projector runs, as its own process
    projector = run_process("consumers.projector", settings)

    # then: the sentinel shows up, and every partition is committed to its end
    deadline = time.monotonic() + 60
    seen: list[str] = []
    while SENTINEL not in seen and time.monotonic() < deadline and projector.popen.poll() is None:
        listed = await api.get("/v1/threads", params={"limit": 100})
        seen = [t["id"] for t in listed.json().get("data", [])] if listed.is_success else []
        await asyncio.sleep(0.3)
    assert projector.popen.poll() is None, f"the projector exited\n{projector.output()[-5000:]}"
    assert SENTINEL in seen, f"the sentinel never showed up\n{projector.output()[-5000:]}"
    remaining = await wait_for_no_lag(settings, time.monotonic() + 30)
    assert remaining == 0, f"{remaining} records never committed\n{projector.output()[-5000:]}"

    # and every good thread is exactly what its good events alone make of it
    for lane in lanes.values():
        got = await api.get(f"/v1/threads/{lane.id}")
        assert got.status_code == 200, (lane.id, got.text)
        assert got.json() == lane.want, lane.id
    listed_ids = {
        t["id"] for t in (await api.get("/v1/threads", params={"limit": 100})).json()["data"]
    }
    assert "thrd_b_restored" in listed_ids  # restored after a delete: listed again
    assert "thrd_a_hidden" not in listed_ids  # still hidden
    hidden = (await api.get("/v1/threads", params={"visible_in_ui": "false"})).json()["data"]
    assert [(t["id"], t["title"]) for t in hidden] == [("thrd_a_hidden", "Title of thrd_a_hidden")]

    # and the owner is fixed: T stays in organization A, out of B's sight
    thread_a = await clients[ORG_A].get("/v1/threads/thrd_a_0")
    assert thread_a.status_code == 200 and thread_a.json()["organization_id"] == ORG_A
    assert thread_a.json()["title"] == "Title of thrd_a_0"
    assert (await clients[ORG_B].get("/v1/threads/thrd_a_0")).status_code == 404
    of_b = (await clients[ORG_B].get("/v1/threads", params={"limit": 100})).json()["data"]
    assert {t["id"] for t in of_b} == {"thrd_b_0", "thrd_b_1", "thrd_b_2", "thrd_b_restored"}

    # and each rejected record is in the dead-letter topic exactly once, with its code, and
    # nothing else is there
    dead = await read_all(
        settings.kafka_bootstrap_servers,
        settings.dlq_topic,
        expect=len(expected_dead),
        timeout_ms=15_000,
    )
    found: Counter[tuple[int, int]] = Counter()
    codes: Counter[str] = Counter()
    for letter in dead:
        headers = dict(letter.headers)
        position = (int(headers["dlq.partition"]), int(headers["dlq.offset"]))
        found[position] += 1
        assert headers["dlq.topic"] == settings.topic.encode()
        code = headers["dlq.reason"].decode().partition(":")[0]
        assert code in expected_dead.get(position, ()), (position, headers["dlq.reason"][:300])
        codes[code] += 1
        key, value, _ = originals[position]
        assert letter.key == key
        if len(value or b"") <= settings.dlq_max_bytes:
            assert letter.value == value, position
        else:  # too large to copy whole: truncated, the original stays in the source topic
            assert len(letter.value or b"") <= settings.dlq_max_bytes, position
    missing = {p: sorted(c) for p, c in expected_dead.items() if p not in found}
    assert not missing, f"not dead-lettered: {missing}"
    assert all(n == 1 for n in found.values()), {p: n for p, n in found.items() if n > 1}

    # and /metrics counts them by code, counts the unknown types, and stays small
    async with httpx.AsyncClient(timeout=10) as plain:
        body = (await plain.get(f"http://127.0.0.1:{settings.projector_port}/metrics")).text
    assert len(body) < METRICS_MAX_BYTES, f"/metrics weighs {len(body)} bytes"
    counted = metric_samples(body, "threadview_events_dead_lettered_total")
    assert {dict(k)["reason"]: v for k, v in counted.items() if v} == dict(codes)
    skipped = metric_samples(body, "threadview_events_skipped_total")
    assert sum(skipped.values()) == UNKNOWN_TYPES

    # and a rebuild of the same log equals the live view
    built = run_cli("consumers.rebuild", settings, "run", "--name", "hostile")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    compared = run_cli("consumers.rebuild", settings, "diff", "live", "hostile")
    assert compared.returncode == 0, compared.stdout[-3000:] + compared.stderr[-3000:]

    assert "Traceback" not in projector.output(), projector.output()[-5000:]
