"""Read-your-writes: how long from a record's acknowledgement until the API answers with it,
waiting for its consistency token, beside what a client does without one (polling every 20 ms
until the thread shows), on an idle projector and on a busy one.

    python -m bench.consistency [--samples 40] [--busy-rate 1000] [--out DIR]

Runs the projector and the API as processes (fresh topic, group and database, dropped after;
the 2,000 threads of bench.freshness seeded first). Each sample produces one ``thread.created``
(acks=all), takes its token from the acknowledgement, and then, alternating which goes first:
``GET /v1/threads`` with ``Consistency-Token`` and ``Prefer: wait=5`` (one request), and a fresh
thread found by polling the same list every 20 ms. Both times run from the acknowledgement to
the answer that lists the thread; a token answer that does not list it counts as a miss. The
plain request's own time (no token) is measured too, so the wait's added latency is the token
answer minus it. Busy: ``--busy-rate`` events/s of messages to the seeded threads published
meanwhile. Prints p50/p99 of each, misses, the requests the polling client sent, and the load
average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
from aiokafka import AIOKafkaProducer

from bench.freshness import (
    PROBES_ORG,
    drop_leftovers,
    fresh_run,
    now_iso,
    publish,
    seed,
    wait_ready,
)
from bench.stats import percentile
from bench.worktree import ROOT, TreeProcess, keys
from consumers.sample import cloud_event
from consumers.topics import ensure_topics
from services.consistency import from_acks
from services.settings import Settings, get_settings

POLL = 0.02
ORG = "org_rw"  # its own organization: bench.freshness's probes go to PROBES_ORG meanwhile
LIST: dict[str, str | int] = {"organization_id": ORG, "limit": 5}


async def write(producer: AIOKafkaProducer, topic: str, thread: str) -> tuple[str, float]:
    """A new thread, acknowledged; its token and the time of the acknowledgement."""
    data = {"organization_id": ORG, "user_id": "usr_rw"}
    event = cloud_event("thread.created", thread, now_iso(), data)  # the newest: listed first
    ack = await producer.send_and_wait(topic, json.dumps(event).encode(), key=thread.encode())
    return str(from_acks([(ack.partition, ack.offset)])), time.monotonic()


def lists(response: httpx.Response, thread: str) -> bool:
    return any(t["id"] == thread for t in response.json()["data"])


async def by_token(client: httpx.AsyncClient, token: str, thread: str) -> tuple[float, bool]:
    headers = {"Consistency-Token": token, "Prefer": "wait=5"}
    started = time.monotonic()
    answer = await client.get("/v1/threads", params=LIST, headers=headers)
    return time.monotonic() - started, lists(answer, thread)


async def by_polling(client: httpx.AsyncClient, thread: str) -> tuple[float, int]:
    started, polls = time.monotonic(), 0
    while time.monotonic() - started < 30:
        polls += 1
        if lists(await client.get("/v1/threads", params=LIST), thread):
            break
        await asyncio.sleep(POLL)
    return time.monotonic() - started, polls


async def sample_all(settings: Settings, client: httpx.AsyncClient, samples: int) -> dict[str, Any]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    token_ms: list[float] = []
    poll_ms: list[float] = []
    plain_ms: list[float] = []
    misses = polls = 0
    try:
        for n in range(samples):
            for first in ("token", "poll")[:: 1 if n % 2 else -1]:
                thread = f"thrd_rw_{first}_{n}_{uuid4().hex[:6]}"
                token, acked = await write(producer, settings.topic, thread)
                if first == "token":
                    spent, found = await by_token(client, token, thread)
                    token_ms.append((time.monotonic() - acked) * 1000)
                    misses += not found
                else:
                    spent, sent = await by_polling(client, thread)
                    poll_ms.append((time.monotonic() - acked) * 1000)
                    polls += sent
            started = time.monotonic()
            await client.get("/v1/threads", params=LIST)
            plain_ms.append((time.monotonic() - started) * 1000)
    finally:
        await producer.stop()
    return {
        "token_p50": percentile(token_ms, 50),
        "token_p99": percentile(token_ms, 99),
        "poll_p50": percentile(poll_ms, 50),
        "poll_p99": percentile(poll_ms, 99),
        "plain_p50": percentile(plain_ms, 50),
        "plain_p99": percentile(plain_ms, 99),
        "misses": misses,
        "polls_per_write": polls / max(len(poll_ms), 1),
        "samples": samples,
    }


async def measure(base: Settings, samples: int, busy_rate: int, logs: Path) -> dict[str, Any]:
    async with fresh_run(base, "consistency") as settings:
        await ensure_topics(settings)
        orgs = ("--org", PROBES_ORG, "--org", "org_f", "--org", ORG)
        made = await keys(settings, ROOT, "create", "--service", *orgs)
        projector = TreeProcess("consumers.projector", settings, logs / "projector.log", ROOT)
        api = TreeProcess("api.main", settings, logs / "api.log", ROOT)
        client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.api_port}",
            headers={"X-API-Key": made.split()[0]},
            timeout=30,
        )
        found: dict[str, Any] = {}
        try:
            await wait_ready(client)
            await seed(settings, client)
            found["idle"] = await sample_all(settings, client, samples)
            stream = asyncio.create_task(publish(settings, busy_rate, 3600, {}))
            await asyncio.sleep(3)  # the stream under way
            found["busy"] = await sample_all(settings, client, samples) | {"rate": busy_rate}
            stream.cancel()
        finally:
            await client.aclose()
            projector.stop()
            api.stop()
        return found


def report(found: dict[str, Any]) -> list[str]:
    lines = [
        "| projector | token wait p50 / p99 | polling p50 / p99 (requests a write)"
        " | plain request p50 / p99 | misses |",
        "|---|---|---|---|---|",
    ]
    for name in ("idle", "busy"):
        r = found[name]
        label = name if name == "idle" else f"busy, {r['rate']:,} events/s"
        lines.append(
            f"| {label} | {r['token_p50']:.0f} / {r['token_p99']:.0f} ms"
            f" | {r['poll_p50']:.0f} / {r['poll_p99']:.0f} ms ({r['polls_per_write']:.1f})"
            f" | {r['plain_p50']:.1f} / {r['plain_p99']:.1f} ms | {r['misses']} |"
        )
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--busy-rate", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    settings = get_settings()
    dropped = await drop_leftovers(settings.mongo_url)
    print(f"dropped {len(dropped)} leftover databases; load average {os.getloadavg()}")
    logs = Path(tempfile.mkdtemp(prefix="bench-consistency-"))
    found = await measure(settings, args.samples, args.busy_rate, logs)
    found["load_after"] = list(os.getloadavg())
    print("\n".join(report(found)))
    print(f"load average after: {found['load_after']}; logs in {logs}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "consistency.json").write_text(json.dumps(found, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
