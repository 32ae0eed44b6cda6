"""Generated event logs of threads, for the tests and the benchmarks, and their reference model:
the fold of the whole log. Deterministic for a seed; records are ``testkit.kafka.Raw``.

Two shapes of one kind of log (CloudEvents made by consumers.sample.cloud_event, keyed by
thread id), each parameterised for its callers:

:func:`generate`, a hostile log in memory (:class:`Log`): ``threads`` threads over ``orgs``
organizations (``org_0``...); messages, updates, pins and deletes; every event published out of
causal order (one shuffle of the whole log); and, each a share of the events, producer retries
(the same event again, at a later offset), events in CloudEvents binary mode, poison records,
unknown types and valid events with a header that is not UTF-8. The fault, integration and
end-to-end tests fold it (:func:`reference`) and compare; bench.throughput times it.

:func:`stream`, a long log generated lazily, exactly ``events`` events (bench.rebuild's year of
events): every thread has one thread.created (the first of ``orgs`` holding ~70%; ~300 users;
some with an assistant or a workflow; a title, a small metadata map); 0.1% of the threads hold
30% of the other events (thousands of messages each, over weeks), the rest share the others (a
few each, minutes apart); ~6% of the other events are thread.updated, pinned, unpinned, deleted
or restored, the rest messages, each with its own message id. Threads start spread over
``span`` seconds; events come in time order, disordered by a shuffle buffer of ``buffer``
events and, for 1%, a ``time`` up to an hour early; structured mode, no poison.

Changing what either yields for a given seed changes the benchmarks' figures: bump
bench.rebuild_log's VERSION for :func:`stream` (it names the topic).

Why this module is longer than ~200 lines: the event-log generators and their reference model
(the fold of the whole log) belong together: a test compares what a generator wrote with what
the same module says it should give.
"""

from __future__ import annotations

import heapq
import json
import random
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from consumers.sample import cloud_event
from services.decoding import EVENT_MODELS, decode
from services.events import Event, LogPosition
from services.projection import ThreadState, fold
from testkit.kafka import Raw, structured

MODELS = ("gpt-4o", "gpt-4.1", "o3", None)


def stamp(t0: datetime, seconds: float) -> str:
    """``t0`` plus ``seconds``, as an event's ``time`` (UTC, milliseconds, ``Z``)."""
    at = t0 + timedelta(seconds=seconds)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def binary(event: dict[str, Any]) -> Raw:
    """An event as a record in CloudEvents binary mode: its attributes as ``ce_`` headers."""
    headers = [(f"ce_{k}", str(v).encode()) for k, v in event.items() if k not in ("data",)]
    return event["subject"].encode(), json.dumps(event["data"]).encode(), headers


# generate(): the hostile log in memory

GENERATE_T0 = datetime(2025, 6, 1, tzinfo=UTC)
ORGS = tuple(f"org_{n}" for n in range(5))  # generate()'s organizations by default


@dataclass
class Log:
    records: list[Raw] = field(default_factory=list)
    poison: set[int] = field(default_factory=set)  # indexes into records
    unknown: int = 0


def _time(seconds: float) -> str:
    return stamp(GENERATE_T0, seconds)


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
    changes: tuple[tuple[str, Callable[[], dict[str, Any]]], ...] = (
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
    )
    for kind, data in changes:
        for _ in range(rng.choice([0, 0, 0, 1, 2])):
            events.append(cloud_event(kind, thread, _time(start + rng.uniform(0, 3600)), data()))
    return events


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


def generate(
    seed: int,
    threads: int,
    orgs: int = 5,
    *,
    binary_share: float = 0.05,
    retries: float = 0.05,
    poison: float = 0.003,
    unknown: float = 0.002,
    odd_headers: float = 0.002,
) -> Log:
    """The hostile log of ``threads`` threads over ``orgs`` organizations; each share is the
    chance, per event, of that kind of record (0: none). The shares change what is added, not
    the events: the same seed gives the same threads whatever the shares."""
    rng = random.Random(seed)
    events = [e for n in range(threads) for e in _thread_events(rng, n, orgs)]
    rng.shuffle(events)  # out of causal order: a message may come before its thread.created
    log = Log()
    bad: list[Raw] = []
    for event in events:
        log.records.append(binary(event) if rng.random() < binary_share else structured(event))
        if rng.random() < retries:  # a producer retry: the same event later in the log
            log.records.insert(
                rng.randrange(len(log.records) // 2, len(log.records) + 1), structured(event)
            )
        if rng.random() < poison:
            bad.append(_poison(rng, threads))
            log.records.append(bad[-1])
        if rng.random() < unknown:
            archived = cloud_event("thread.archived", event["subject"], event["time"], {})
            log.records.append(structured(archived))
            log.unknown += 1
        if rng.random() < odd_headers:  # a valid event with a header that is not UTF-8: applied
            key, value, headers = structured(
                cloud_event(
                    "thread.message_added", event["subject"], event["time"], {"message_id": "hdr"}
                )
            )
            log.records.append((key, value, [*headers, ("trace", b"\xff\xfe")]))
    # by identity: retries inserted earlier in the log shift positions
    marked = {id(record) for record in bad}
    log.poison = {i for i, record in enumerate(log.records) if id(record) in marked}
    return log


def reference(log: Log) -> dict[str, ThreadState]:
    """Each thread's state as the fold of every valid event of the whole log, without the
    creation's log position (:func:`comparable`)."""
    by_thread: dict[str, list[Event]] = defaultdict(list)
    for i, (key, value, headers) in enumerate(log.records):
        decoded = decode(key, value, headers)
        if isinstance(decoded, EVENT_MODELS):
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


# stream(): the long log, lazily

STREAM_SEED = 2025
STREAM_T0, YEAR = datetime(2025, 1, 1, tzinfo=UTC), 365 * 86_400.0
SPECIALS = (
    ("thread.updated",) * 6
    + ("thread.pinned",) * 3
    + ("thread.unpinned",)
    + ("thread.deleted",) * 2
    + ("thread.restored",)
)


def plan(threads: int, events: int, seed: int = STREAM_SEED) -> list[tuple[int, int, float]]:
    """Per thread of :func:`stream`: its messages, its other non-created events, the mean
    seconds between them."""
    rng, extra = random.Random(seed), events - threads
    assert threads > 0 and extra >= 0, "need at least one event per thread"
    big = set(rng.sample(range(threads), max(1, threads // 1000)))
    weights = {n: rng.uniform(1, 5) for n in sorted(big)}
    big_total = int(0.3 * extra) if len(big) < threads else extra
    share = big_total / sum(weights.values())
    counts = [round(weights[n] * share) if n in big else 0 for n in range(threads)]
    small = [n for n in range(threads) if n not in big]
    mean = (extra - sum(counts)) / max(1, len(small))
    for n in small:
        counts[n] = int(rng.expovariate(1 / mean)) if mean else 0
    while (left := extra - sum(counts)) != 0:  # to exactly ``events``
        pool = small if small and left > 0 else range(threads)
        for n in rng.choices(pool, k=min(abs(left), 999)):
            counts[n] += 1 if left > 0 else -1 if counts[n] else 0
    plans = []
    for n, count in enumerate(counts):
        specials = sum(rng.random() < 0.06 for _ in range(count))
        span = rng.uniform(30, 120) * 86_400 if n in big else rng.choice((30, 120, 600, 3600))
        plans.append((count - specials, specials, span / max(1, count) if n in big else span))
    return plans


def stream(
    threads: int,
    events: int,
    seed: int = STREAM_SEED,
    *,
    orgs: Sequence[str],
    buffer: int = 2000,
    span: float = YEAR,
) -> Iterator[Raw]:
    """The long log, one record at a time; holds one pending event per thread and ``buffer``
    records, not the log."""
    plans, rng = plan(threads, events, seed), random.Random(seed + 1)
    left = [[messages, specials] for messages, specials, _ in plans]
    heap = [(rng.uniform(0, span), n, 0) for n in range(threads)]
    heapq.heapify(heap)
    pending: list[Raw] = []
    while heap:
        seconds, n, k = heapq.heappop(heap)
        messages, specials = left[n]
        at = seconds - (rng.uniform(0, 3600) if rng.random() < 0.01 else 0)
        data: dict[str, Any]
        if k == 0:
            kind, data = "thread.created", _created(rng, n, orgs)
        elif rng.random() * (messages + specials) < specials:
            left[n][1] -= 1
            kind, data = rng.choice(SPECIALS), {}
            if kind == "thread.updated":
                data = rng.choice(
                    [
                        {"title": f"Renamed {n}"},
                        {"status": "active"},
                        {"visible_in_ui": False},
                        {"metadata": {"stage": rng.choice(("lead", "customer"))}},
                    ]
                )
        else:
            left[n][0] -= 1
            role = rng.choice(("user", "assistant"))
            model = rng.choice(MODELS) if role == "assistant" else None
            kind, data = "thread.message_added", {"message_id": f"msg_{k}", "role": role}
            data["model"] = model
        if sum(left[n]):
            gap = rng.expovariate(1 / plans[n][2])
            heapq.heappush(heap, (seconds + gap, n, k + 1))
        event = cloud_event(kind, f"thrd_{n:07d}", stamp(STREAM_T0, at), data, f"evt_{n}_{k}")
        pending.append(structured(event))
        if len(pending) == buffer:  # out of order: a random one of the last ``buffer`` leaves
            i = rng.randrange(buffer)
            pending[i], pending[-1] = pending[-1], pending[i]
            yield pending.pop()
    rng.shuffle(pending)
    yield from pending


def _created(rng: random.Random, n: int, orgs: Sequence[str]) -> dict[str, object]:
    return {
        "organization_id": orgs[0] if rng.random() < 0.7 else rng.choice(orgs[1:]),
        "user_id": f"usr_{min(rng.randrange(300), rng.randrange(300))}",  # a few busy users
        "assistant_id": rng.choice((None, None, f"asst_{rng.randrange(20)}")),
        "workflow_id": rng.choice((None, None, None, f"wf_{rng.randrange(10)}")),
        "title": f"Thread {n}",
        "metadata": {"source": rng.choice(("web", "api", "slack")), "tier": "free"},
        "visible_in_ui": rng.random() > 0.05,
    }
