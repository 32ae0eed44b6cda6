"""A generator of realistic event logs, and its reference model: the fold of the whole log.

Thousands of threads over several organizations; messages, updates, pins and deletes; events
published out of causal order; producer retries (the same event again, at a later offset);
some events in CloudEvents binary mode; unknown types; and poison records.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from consumers.sample import cloud_event
from services.decoding import decode
from services.events import Event, LogPosition
from services.projection import ThreadState, fold
from tests.kafka import Raw, structured

T0 = datetime(2025, 6, 1, tzinfo=UTC)
MODELS = ["gpt-4o", "gpt-4.1", "o3", None]


@dataclass
class Log:
    records: list[Raw] = field(default_factory=list)
    poison: set[int] = field(default_factory=set)  # indexes into records
    unknown: int = 0


def _time(seconds: float) -> str:
    return (
        (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _thread_events(rng: random.Random, n: int, orgs: int) -> list[dict[str, Any]]:
    thread, start = f"thrd_{n:06d}", rng.uniform(0, 86_400 * 30)
    org, user = f"org_{rng.randrange(orgs)}", f"usr_{rng.randrange(40)}"
    clock = start
    events = [
        cloud_event(
            "thread.created",
            thread,
            _time(start),
            {
                "organization_id": org,
                "user_id": user,
                "assistant_id": rng.choice([None, "asst_1", "asst_2"]),
                "workflow_id": rng.choice([None, None, "wf_1"]),
                "title": f"Thread {n}",
                "metadata": {"source": rng.choice(["web", "api", "a.b"]), "$tier": "free"},
                "visible_in_ui": rng.random() > 0.1,
                "space_ids": rng.sample(["sp_1", "sp_2", "sp_3"], rng.randrange(3)),
            },
        )
    ]
    if rng.random() < 0.02:
        events.pop()  # its thread.created never arrives: kept, never listed
    for m in range(rng.randrange(0, 30)):
        clock += rng.uniform(0.001, 600)
        events.append(
            cloud_event(
                "thread.message_added",
                thread,
                _time(clock),
                {
                    "message_id": f"msg_{n}_{m if rng.random() > 0.05 else 0}",  # some ids repeat
                    "role": rng.choice(["user", "assistant"]),
                    "model": rng.choice(MODELS),
                },
            )
        )
    for kind, data in (
        (
            "thread.updated",
            lambda: rng.choice(
                [
                    {"title": f"Renamed {n}"},
                    {"status": "active"},
                    {"metadata": {"k": str(rng.random())}},
                    {"visible_in_ui": rng.random() > 0.5},
                    {"space_ids": ["sp_9"], "title": None},
                ]
            ),
        ),
        ("thread.pinned", dict),
        ("thread.unpinned", dict),
        ("thread.deleted", dict),
        ("thread.restored", dict),
    ):
        for _ in range(rng.choice([0, 0, 0, 1, 2])):
            events.append(cloud_event(kind, thread, _time(start + rng.uniform(0, 3600)), data()))
    return events


def _binary(event: dict[str, Any]) -> Raw:
    headers = [(f"ce_{k}", str(v).encode()) for k, v in event.items() if k not in ("data",)]
    return event["subject"].encode(), json.dumps(event["data"]).encode(), headers


def _poison(rng: random.Random, n: int) -> Raw:
    thread = f"thrd_{rng.randrange(n):06d}".encode()
    good = cloud_event("thread.message_added", thread.decode(), _time(1), {"message_id": "m"})
    choices: list[Raw] = [
        (thread, b"{not json", []),
        (thread, b"\xff\xfe\x00garbage", []),
        (thread, json.dumps({**good, "time": "yesterday"}).encode(), []),
        (thread, json.dumps({k: v for k, v in good.items() if k != "id"}).encode(), []),
        (thread, json.dumps({**good, "data": {"message_id": 42}}).encode(), []),
        (
            thread,
            json.dumps(
                cloud_event("thread.created", thread.decode(), _time(1), {"user_id": "usr_1"})
            ).encode(),
            [],
        ),  # no organization
        (thread, json.dumps([good]).encode(), []),
    ]
    return rng.choice(choices)


def generate(seed: int, threads: int, orgs: int = 5) -> Log:
    rng = random.Random(seed)
    events = [e for n in range(threads) for e in _thread_events(rng, n, orgs)]
    rng.shuffle(events)  # out of causal order: a message may come before its thread.created
    log = Log()
    poison: list[Raw] = []
    for event in events:
        log.records.append(_binary(event) if rng.random() < 0.05 else structured(event))
        if rng.random() < 0.05:  # a producer retry: the same event later in the log
            log.records.insert(
                rng.randrange(len(log.records) // 2, len(log.records) + 1), structured(event)
            )
        if rng.random() < 0.003:
            poison.append(_poison(rng, threads))
            log.records.append(poison[-1])
        if rng.random() < 0.002:
            unknown = cloud_event("thread.archived", event["subject"], event["time"], {})
            log.records.append(structured(unknown))
            log.unknown += 1
        if rng.random() < 0.002:  # a valid event with a header that is not UTF-8: applied
            key, value, headers = structured(
                cloud_event(
                    "thread.message_added", event["subject"], event["time"], {"message_id": "hdr"}
                )
            )
            log.records.append((key, value, [*headers, ("trace", b"\xff\xfe")]))
    # by identity: retries inserted earlier in the log shift positions
    marked = {id(record) for record in poison}
    log.poison = {i for i, record in enumerate(log.records) if id(record) in marked}
    return log


def reference(log: Log) -> dict[str, ThreadState]:
    """Each thread's state as the fold of every valid event of the whole log, without the
    creation's log position (:func:`comparable`)."""
    by_thread: dict[str, list[Event]] = defaultdict(list)
    for i, (key, value, headers) in enumerate(log.records):
        decoded = decode(key, value, headers)
        if isinstance(decoded, Event.__args__):  # type: ignore[attr-defined]
            # the log's order: a thread's records share a partition, in publication order
            decoded.at(LogPosition(0, 0, i))
            by_thread[decoded.subject].append(decoded)
        else:
            assert (i in log.poison) == hasattr(decoded, "reason"), (i, decoded)
    return {thread: comparable(fold(None, events)) for thread, events in by_thread.items()}


def comparable(state: ThreadState) -> ThreadState:
    """The state without its creation's log position, whose broker timestamp only the broker
    knows: what a reference and a stored state can be compared on (the position decides which
    create is the first, and the reference orders the log the same way)."""
    if state.creation is None or state.creation.position is None:
        return state
    return replace(state, creation=replace(state.creation, position=None))
