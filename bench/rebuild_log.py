"""The rebuild benchmark's log: a year of thread events, generated lazily, published once.

Deterministic for ``SEED``: ``threads`` threads and exactly ``events`` events. Every thread has
one thread.created (five organizations, the first holding ~70%; ~300 users; some with an
assistant or a workflow; a title, a small metadata map); 0.1% of the threads hold 30% of the
other events (thousands of messages each, over weeks), the rest share the others (a few each,
minutes apart); ~6% of the other events are thread.updated, pinned, unpinned, deleted or
restored, the rest messages, each with its own message id. Threads start spread over a year;
events come in time order, disordered by a shuffle buffer of 2,000 events and, for 1%, a
``time`` up to an hour early. Records are CloudEvents in structured mode keyed by thread id.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

from bench.families import ORGS
from bench.throughput import Progress
from consumers.sample import cloud_event
from services.settings import Settings
from tests.kafka import Raw, create_topic, delete_topics, structured

SEED, VERSION = 2025, 1  # bump VERSION whenever the output changes: it names the topic
PARTITIONS, BUFFER = 6, 2000
T0, YEAR = datetime(2025, 1, 1, tzinfo=UTC), 365 * 86_400.0
SPECIALS: tuple[str, ...] = ("thread.updated",) * 6 + ("thread.pinned",) * 3 + ("thread.unpinned",)
SPECIALS += ("thread.deleted",) * 2 + ("thread.restored",)
MODELS = ("gpt-4o", "gpt-4.1", "o3", None)


def topic_name(threads: int, events: int) -> str:
    return f"bench.rebuild.{threads}.{events}.v{VERSION}"


def plan(threads: int, events: int, seed: int = SEED) -> list[tuple[int, int, float]]:
    """Per thread: its messages, its other non-created events, the mean seconds between them."""
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


def records(threads: int, events: int, seed: int = SEED) -> Iterator[Raw]:
    """The log, one record at a time; holds one pending event per thread, not the log."""
    plans, rng = plan(threads, events, seed), random.Random(seed + 1)
    left = [[messages, specials] for messages, specials, _ in plans]
    heap = [(rng.uniform(0, YEAR), n, 0) for n in range(threads)]
    heapq.heapify(heap)
    buffer: list[Raw] = []
    while heap:
        seconds, n, k = heapq.heappop(heap)
        messages, specials = left[n]
        at = seconds - (rng.uniform(0, 3600) if rng.random() < 0.01 else 0)
        if k == 0:
            kind, data = "thread.created", _created(rng, n)
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
        stamp = (T0 + timedelta(seconds=at)).isoformat(timespec="milliseconds")[:-6] + "Z"
        event = cloud_event(kind, f"thrd_{n:07d}", stamp, data, f"evt_{n}_{k}")
        buffer.append(structured(event))
        if len(buffer) == BUFFER:  # out of order: a random one of the last BUFFER leaves
            i = rng.randrange(BUFFER)
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer


def _created(rng: random.Random, n: int) -> dict[str, object]:
    return {
        "organization_id": ORGS[0] if rng.random() < 0.7 else rng.choice(ORGS[1:]),
        "user_id": f"usr_{min(rng.randrange(300), rng.randrange(300))}",  # a few busy users
        "assistant_id": rng.choice((None, None, f"asst_{rng.randrange(20)}")),
        "workflow_id": rng.choice((None, None, None, f"wf_{rng.randrange(10)}")),
        "title": f"Thread {n}",
        "metadata": {"source": rng.choice(("web", "api", "slack")), "tier": "free"},
        "visible_in_ui": rng.random() > 0.05,
    }


async def publish(bootstrap: str, threads: int, events: int) -> str:
    """The log's topic; produced unless it already holds exactly ``events`` records."""
    topic = topic_name(threads, events)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic in await admin.list_topics():
            if await count(bootstrap, topic) == events:
                print(f"topic {topic} holds the log already: not produced again", flush=True)
                return topic
            await admin.delete_topics([topic])  # an interrupted run's partial log
    finally:
        await admin.close()
    for _ in range(60):  # a deleted topic's name stays taken for a moment
        try:
            await create_topic(bootstrap, topic, PARTITIONS)
            break
        except TopicAlreadyExistsError:
            await asyncio.sleep(0.5)
    # whole batches (1 MB, one partition each, the default partitioner's): 3x send() per record
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, max_batch_size=1_000_000)
    await producer.start()
    started, sent, choose = time.perf_counter(), [], DefaultPartitioner()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        batches = {p: producer.create_batch() for p in partitions}
        for key, value, headers in records(threads, events):
            p = choose(key, partitions, partitions)
            if batches[p].append(key=key, value=value, timestamp=None, headers=headers) is None:
                sent.append(await producer.send_batch(batches[p], topic, partition=p))  # full
                batches[p] = producer.create_batch()
                batches[p].append(key=key, value=value, timestamp=None, headers=headers)
        for p, batch in batches.items():
            if batch.record_count():
                sent.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    seconds = time.perf_counter() - started
    print(f"produced {events} records to {topic} in {seconds:.1f}s: {events / seconds:.0f}/s")
    found = await count(bootstrap, topic)
    assert found == events, f"{topic} holds {found} records, not {events}"
    return topic


async def count(bootstrap: str, topic: str) -> int:
    progress = Progress(bootstrap, topic)
    await progress.start()
    try:
        return progress.total
    finally:
        await progress.stop()


async def delete(bootstrap: str, prefix: str = "bench.rebuild.") -> list[str]:
    """Delete the topics whose names start with ``prefix`` (by default, every log's)."""
    return await delete_topics(bootstrap, prefix)


if __name__ == "__main__":  # python -m bench.rebuild_log --delete
    if sys.argv[1:] == ["--delete"]:
        print("deleted", asyncio.run(delete(Settings().kafka_bootstrap_servers)))
