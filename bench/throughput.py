"""Events per second applied end to end: threadview's projector against the simplest one.

    python -m bench.throughput [--threads 300]

Publishes one generated log (retries, disorder, poison) to a fresh topic, then runs each
projector as its own process, one after the other, on the same broker and store, each with its
own consumer group and database, and times it from start until its group has committed the
whole topic. Prints both figures and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from uuid import uuid4

from services.settings import Settings
from tests.conftest import settings_env
from tests.fault.logs import generate
from tests.kafka import create_topic, lag, produce


async def run(module: str, settings: Settings, records: int) -> float:
    env = settings_env(settings)
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: ASYNC220 - runs for the whole measurement
        [sys.executable, "-m", module],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while (
            await lag(settings.kafka_bootstrap_servers, settings.topic, settings.consumer_group) > 0
        ):
            if process.poll() is not None:
                raise RuntimeError(f"{module} exited")
            await asyncio.sleep(0.25)
        return records / (time.perf_counter() - started)
    finally:
        process.terminate()
        process.wait()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=300)
    args = parser.parse_args()
    run_id = uuid4().hex[:8]
    base = Settings(topic=f"bench.{run_id}.threads.events", dlq_topic=f"bench.{run_id}.dlq")
    log = generate(seed=11, threads=args.threads)
    await create_topic(base.kafka_bootstrap_servers, base.topic, 6)
    await produce(base.kafka_bootstrap_servers, base.topic, log.records)
    print(f"{len(log.records)} records, {args.threads} threads, topic {base.topic}")
    results = {}
    for name, module in (
        ("threadview (batched)", "consumers.projector"),
        ("simplest (per event)", "bench.naive_projector"),
    ):
        settings = base.model_copy(
            update={
                "consumer_group": f"bench-{run_id}-{module}",
                "mongo_database": f"bench_{run_id}_{len(results)}",
            }
        )
        results[name] = await run(module, settings, len(log.records))
    print(f"\n{'projector':<24}{'events/s':>10}")
    for name, rate in results.items():
        print(f"{name:<24}{rate:>10.0f}")
    fast, slow = results.values()
    print(f"ratio: {fast / slow:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
