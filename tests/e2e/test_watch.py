"""The watch end to end (api/watch.py): a client follows a tenant's list through creates,
messages, pins, deletes and restores that two producers publish at once, disconnects, resumes
with Last-Event-ID, and its list equals GET /v1/threads at the end; nothing of another tenant
ever arrives; a resume it cannot serve is an explicit reset."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from consumers.sample import cloud_event
from services.mongo.bootstrap import Services
from services.settings import Settings
from testkit.kafka import produce, structured

pytestmark = pytest.mark.e2e


def event(type: str, thread: str, second: int, **data: Any) -> Any:
    return structured(cloud_event(type, thread, f"2025-11-17T10:00:{second:02d}Z", data))


def created(thread: str, org: str = "org_e2e") -> Any:
    return event("thread.created", thread, 0, organization_id=org, user_id="usr_e2e")


class Follower:
    """Reads one watch stream, keeping the list it describes."""

    def __init__(self) -> None:
        self.threads: dict[str, dict[str, Any]] = {}
        self.kinds: list[str] = []
        self.last_id: str | None = None
        self.orgs: set[str] = set()

    async def follow(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        async with client.stream("GET", "/v1/threads/watch", headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            kind = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("id: "):
                    self.last_id = line[4:]
                elif line.startswith("data: ") and kind is not None:
                    data = json.loads(line[6:])
                    self.kinds.append(kind)
                    if kind == "thread":
                        self.threads[data["id"]] = data
                        self.orgs.add(data["organization_id"])
                    elif kind == "removed":
                        self.threads.pop(data["id"], None)
                    elif kind == "reset":
                        return


async def listed(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    body = (await client.get("/v1/threads", params={"limit": 100})).json()
    return {t["id"]: t for t in body["data"]}


async def converge(
    follower: Follower, client: httpx.AsyncClient, want: set[str], deadline: float = 60
) -> None:
    """Once the list holds exactly ``want``, the follower's list equals it."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        found = await listed(client)
        if set(found) == want and follower.threads == found:
            return
        await asyncio.sleep(0.2)
    assert set(found) == want
    assert follower.threads == found


async def two_producers(bootstrap: str, topic: str, a: list[Any], b: list[Any]) -> None:
    """Two services publishing at once (two producers, small batches, interleaved): ``a``'s
    and ``b``'s records reach the log in no order between them."""

    async def publish(records: list[Any], pause: float) -> None:
        for start in range(0, len(records), 2):
            await produce(bootstrap, topic, records[start : start + 2])
            await asyncio.sleep(pause)

    await asyncio.gather(publish(a, 0.05), publish(b, 0.08))


async def test_a_watcher_follows_resumes_and_ends_equal_to_the_list(
    settings: Settings, services: Services, run_process: Any, api_client: httpx.Client
) -> None:
    run_process("consumers.projector", settings)
    key = api_client.headers["X-API-Key"]
    client = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{settings.api_port}", headers={"X-API-Key": key}, timeout=30
    )
    follower = Follower()
    following = asyncio.create_task(follower.follow(client, {}))
    await asyncio.sleep(1)
    bootstrap, topic = settings.kafka_bootstrap_servers, settings.topic
    # the conversations service creates threads and adds messages; the moderation service
    # pins, deletes and restores, at the same time, some of its events before the thread's
    # creation reaches the projector; both also write to a thread of another tenant
    conversations = [created(f"thrd_w{n}") for n in range(6)] + [
        created("thrd_other", org="org_unseen"),
        event("thread.message_added", "thrd_w0", 5, message_id="m1"),
        event("thread.message_added", "thrd_other", 5, message_id="m9"),
        event("thread.message_added", "thrd_w0", 6, message_id="m2"),
    ]
    moderation = [
        event("thread.pinned", "thrd_w5", 6),
        event("thread.pinned", "thrd_w1", 6),
        event("thread.deleted", "thrd_w2", 7),
        event("thread.pinned", "thrd_other", 7),
        event("thread.deleted", "thrd_w4", 7),
        event("thread.restored", "thrd_w4", 8),
        event("thread.deleted", "thrd_w5", 9),
    ]
    await two_producers(bootstrap, topic, conversations, moderation)
    await converge(follower, client, {"thrd_w0", "thrd_w1", "thrd_w3", "thrd_w4"})
    assert follower.kinds[0] == "position"
    assert follower.threads["thrd_w0"]["message_count"] == 2
    # a thread the follower holds leaves its list: a ``removed`` (above, a thread deleted in
    # the projector's batch that created it may never have been told at all)
    await produce(bootstrap, topic, [event("thread.deleted", "thrd_w4", 11)])
    await converge(follower, client, {"thrd_w0", "thrd_w1", "thrd_w3"})
    assert "removed" in follower.kinds
    following.cancel()  # the client goes away

    # while it is away, both services again: a restore, an unpin, a message, a new thread
    await two_producers(
        bootstrap,
        topic,
        [event("thread.message_added", "thrd_w3", 9, message_id="m3"), created("thrd_w6")],
        [event("thread.restored", "thrd_w2", 12), event("thread.unpinned", "thrd_w1", 12)],
    )
    await asyncio.sleep(2)
    assert follower.last_id is not None
    following = asyncio.create_task(follower.follow(client, {"Last-Event-ID": follower.last_id}))
    await converge(follower, client, {f"thrd_w{n}" for n in (0, 1, 2, 3, 6)})
    assert follower.threads["thrd_w3"]["message_count"] == 1
    assert follower.threads["thrd_w1"]["is_pinned"] is False
    assert follower.orgs == {"org_e2e"}  # nothing of another tenant, ever
    following.cancel()

    # a resume from a token of another view: an explicit reset, and the stream ends
    other = Follower()
    await asyncio.wait_for(other.follow(client, {"Last-Event-ID": "tv1.other.0:1"}), 10)
    assert other.kinds == ["reset"]
    bad = await client.get("/v1/threads/watch", params={"since": "nonsense"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "watch_since_invalid"
    await client.aclose()


async def test_a_resume_from_records_gone_from_the_log_is_a_reset(
    settings: Settings, services: Services, run_process: Any, api_client: httpx.Client
) -> None:
    """Retention (here: the records deleted) took what a resume would read: a reset, never a
    resume that skips what it cannot read."""
    run_process("consumers.projector", settings)
    key = api_client.headers["X-API-Key"]
    client = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{settings.api_port}", headers={"X-API-Key": key}, timeout=30
    )
    bootstrap, topic = settings.kafka_bootstrap_servers, settings.topic
    follower = Follower()
    following = asyncio.create_task(follower.follow(client, {}))
    await asyncio.sleep(1)
    await produce(bootstrap, topic, [created("thrd_r0")])
    await converge(follower, client, {"thrd_r0"})
    following.cancel()
    assert follower.last_id is not None
    acks = await produce(bootstrap, topic, [created(f"thrd_r{n}") for n in range(1, 6)])
    end = time.monotonic() + 60
    while set(await listed(client)) != {f"thrd_r{n}" for n in range(6)}:
        assert time.monotonic() < end
        await asyncio.sleep(0.2)
    before: dict[int, int] = {}
    for partition, offset in acks:
        before[partition] = max(before.get(partition, 0), offset + 1)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        gone = {TopicPartition(topic, p): RecordsToDelete(o) for p, o in before.items()}
        await admin.delete_records(gone, timeout_ms=10_000)
    finally:
        await admin.close()
    resumed = Follower()
    await asyncio.wait_for(resumed.follow(client, {"Last-Event-ID": follower.last_id}), 10)
    assert resumed.kinds == ["reset"]
    fresh = Follower()  # listing again and watching from now works
    watching = asyncio.create_task(fresh.follow(client, {}))
    await asyncio.sleep(1)
    await produce(bootstrap, topic, [created("thrd_r6")])
    end = time.monotonic() + 60
    while "thrd_r6" not in fresh.threads:
        assert time.monotonic() < end
        await asyncio.sleep(0.2)
    assert fresh.kinds[0] == "position" and "reset" not in fresh.kinds
    watching.cancel()
    await client.aclose()
