"""Publishes a few sample threads to Kafka, so a newcomer sees a real response."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import uuid4

from aiokafka import AIOKafkaProducer

from consumers.kafka_security import client_options
from consumers.topics import ensure_topics
from services.settings import Settings, get_settings


def cloud_event(
    type: str, subject: str, time: str, data: dict[str, Any], id: str | None = None
) -> dict[str, Any]:
    """A thread event in CloudEvents structured mode, as platform services publish it."""
    return {
        "specversion": "1.0",
        "id": id or f"evt_{uuid4().hex}",
        "type": type,
        "source": "/services/threadview-sample",
        "subject": subject,
        "time": time,
        "datacontenttype": "application/json",
        "data": data,
    }


def sample_events() -> list[dict[str, Any]]:
    """The page's two example threads, plus a pinned, a hidden and a deleted one."""
    org, user = "org_12345", "usr_abc123"
    events = [
        cloud_event(
            "thread.created",
            "thrd_abc123",
            "2025-11-17T10:00:00Z",
            {
                "organization_id": org,
                "user_id": user,
                "assistant_id": "asst_abc123",
                "title": "Aitronos Inquiry",
                "metadata": {"user_id": "user_abc"},
                "space_ids": ["space_xyz789"],
            },
            id="evt_sample_001",
        ),
    ]
    for n in range(1, 6):
        events.append(
            cloud_event(
                "thread.message_added",
                "thrd_abc123",
                f"2025-11-17T10:0{n}:00Z",
                {
                    "message_id": f"msg_000{n}",
                    "role": "assistant" if n % 2 == 0 else "user",
                    "model": "gpt-4o" if n % 2 == 0 else None,
                },
                id=f"evt_sample_01{n}",
            )
        )
    events += [
        cloud_event(
            "thread.created",
            "thrd_def456",
            "2025-11-17T10:10:00Z",
            {"organization_id": org, "user_id": user, "title": "Another Thread"},
            id="evt_sample_002",
        ),
        cloud_event(
            "thread.created",
            "thrd_pin789",
            "2025-11-17T09:00:00Z",
            {"organization_id": org, "user_id": user, "title": "Pinned notes"},
            id="evt_sample_003",
        ),
        cloud_event(
            "thread.pinned", "thrd_pin789", "2025-11-17T09:30:00Z", {}, id="evt_sample_031"
        ),
        cloud_event(
            "thread.created",
            "thrd_hid000",
            "2025-11-17T08:00:00Z",
            {"organization_id": org, "user_id": user, "visible_in_ui": False},
            id="evt_sample_004",
        ),
        cloud_event(
            "thread.created",
            "thrd_del000",
            "2025-11-17T07:00:00Z",
            {"organization_id": org, "user_id": user, "title": "Deleted"},
            id="evt_sample_005",
        ),
        cloud_event(
            "thread.deleted", "thrd_del000", "2025-11-17T07:30:00Z", {}, id="evt_sample_051"
        ),
    ]
    # a producer retry: the same event again, which must not count twice
    events.append(events[3])
    return events


async def publish(events: list[dict[str, Any]], settings: Settings) -> None:
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            await producer.send(
                settings.topic,
                json.dumps(event).encode(),
                key=event["subject"].encode(),
                headers=[("content-type", b"application/cloudevents+json")],
            )
        await producer.flush()
    finally:
        await producer.stop()


def main() -> None:
    settings = get_settings()
    events = sample_events()
    asyncio.run(ensure_topics(settings))
    asyncio.run(publish(events, settings))
    print(f"published {len(events)} sample events to {settings.topic}")


if __name__ == "__main__":
    main()
