"""The rebuild benchmark's log: a year of thread events (testkit.logs.stream: ``threads``
threads, exactly ``events`` events, time-ordered but for a shuffle buffer), generated lazily,
published once to a topic of its own, deterministic for ``SEED``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

from bench.families import ORGS
from bench.throughput import Progress
from services.settings import Settings
from testkit.kafka import Raw, create_topic, delete_topics
from testkit.logs import plan, stream

SEED, VERSION = 2025, 1  # bump VERSION whenever the output changes: it names the topic
PARTITIONS = 6


def topic_name(threads: int, events: int) -> str:
    return f"bench.rebuild.{threads}.{events}.v{VERSION}"


def messages(threads: int, events: int) -> int:
    """How many of the log's events are messages."""
    return sum(count for count, _, _ in plan(threads, events, SEED))


def records(threads: int, events: int) -> Iterator[Raw]:
    """The log, one record at a time (the first of bench.families' organizations holding ~70%
    of the threads)."""
    return stream(threads, events, SEED, orgs=ORGS)


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
