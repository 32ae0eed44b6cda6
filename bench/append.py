"""What one more message costs, by how many the thread has already: the projector's write path
(load, fold, save) and its pure part alone, against a real store.

    python -m bench.append [--lengths 10,1000,100000] [--appends 30] [--rounds 3]

For each length N, in a fresh database: one thread whose document holds N messages is stored
(folded and saved once, untimed), then ``--appends`` records, each one more message to it, are
applied one at a time by ``services.projector.Projector.handle`` (the live projector's path,
one batch per record), each timed; and the pure part — ``fold`` of one event into the loaded
state, then the thread and activity documents of the result — timed alone on the same
state. Lengths alternate in order across rounds; each figure is the median (min-max of the
rounds' medians). Printed beside them: the size of the thread's largest stored document, and
the ratio of the longest thread's cost to the shortest's (the goal of issue 17: within 2x,
"flat"). Never asserts; the databases are dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import Any
from uuid import uuid4

import bson

from bench.stats import machine, median, ratio
from bench.throughput import backend_of
from consumers.sample import cloud_event
from services.decoding import EVENT_MODELS, decode
from services.documents import to_activity, to_document
from services.events import Event
from services.mongo.bootstrap import bootstrap, migrate
from services.projection import fold
from services.projector import Projector, Record, only
from services.settings import Settings

THREAD = "thrd_append"
T0 = 1_763_373_600  # seconds: 2025-11-17T10:00:00Z


def record(kind: str, n: int, data: dict[str, Any]) -> Record:
    """The ``n``-th record of the thread, a second after the previous one."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + n))
    event = cloud_event(kind, THREAD, at, data, id=f"evt_{n}")
    value = json.dumps(event).encode()
    return Record("bench.append", 0, n, THREAD.encode(), value, [], (T0 + n) * 1000)


def message(n: int) -> Record:
    return record("thread.message_added", n, {"message_id": f"msg_{n:09d}", "role": "user"})


def events_of(records: list[Record]) -> list[Event]:
    found = [decode(r.key, r.value, r.headers, r.timestamp) for r in records]
    return [e for e in found if isinstance(e, EVENT_MODELS)]


async def one_length(settings: Settings, length: int, appends: int) -> dict[str, float]:
    await migrate(settings)
    services = await bootstrap(settings)
    try:
        created = record("thread.created", 0, {"organization_id": "org_1", "user_id": "usr_1"})
        state = fold(None, events_of([created] + [message(n) for n in range(1, length + 1)]))
        await services.store.save([(state, None)])
        projector = Projector(only(services.store))
        path = []
        for n in range(length + 1, length + 1 + appends):
            started = time.perf_counter()
            outcome = await projector.handle([message(n)])
            path.append((time.perf_counter() - started) * 1000)
            assert outcome.applied == 1, outcome
        shown = await services.store.read(THREAD)
        assert shown is not None and shown["message_count"] == length + appends, shown
        layout = services.store.layout
        documents = [await c.find_one({"_id": THREAD}) for c in (layout.threads, layout.activity)]
        loaded, pure = (await services.store.load([THREAD]))[THREAD].state, []
        for n in range(appends):
            [event] = events_of([message(length + appends + 1 + n)])
            started = time.perf_counter()
            folded = fold(loaded, [event])
            to_document(folded, 1), to_activity(folded, folded.counted + 1, [], 1)
            pure.append((time.perf_counter() - started) * 1000)
        size = max(len(bson.encode(d)) for d in documents if d is not None) / 1024
        return {"path_ms": median(path), "pure_ms": median(pure), "document_kib": size}
    finally:
        await services.client.drop_database(settings.mongo_database)
        await services.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--lengths", default="10,1000,100000", help="messages already held")
    parser.add_argument("--appends", type=int, default=30, help="messages timed per length")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mongo-url", default=Settings().mongo_url)
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    run = uuid4().hex[:8]
    print(f"{await backend_of(args.mongo_url)}; {machine()}", flush=True)
    found: dict[int, list[dict[str, float]]] = {n: [] for n in lengths}
    for r in range(args.rounds):
        for length in lengths if r % 2 == 0 else lengths[::-1]:
            settings = Settings(mongo_url=args.mongo_url, mongo_database=f"bench_append_{run}")
            figures = await one_length(settings, length, args.appends)
            found[length].append(figures)
            print(
                f"  round {r + 1}: {length:>7,} messages: {figures['path_ms']:8.1f} ms a message "
                f"(projector), {figures['pure_ms']:7.2f} ms (fold + documents), largest document "
                f"{figures['document_kib']:,.0f} KiB",
                flush=True,
            )
    print(f"\nmedian of {args.rounds} round(s) (min-max); {machine()}\n")
    print("| messages held | ms a message, projector | ms, fold + documents | largest doc KiB |")
    print("|---|---|---|---|")
    for length, rounds in found.items():
        cells = []
        for key in ("path_ms", "pure_ms", "document_kib"):
            values = [f[key] for f in rounds]
            cells.append(f"{median(values):,.2f} ({min(values):,.2f}-{max(values):,.2f})")
        print(f"| {length:,} | {' | '.join(cells)} |")
    short, long = min(lengths), max(lengths)
    flat = ratio(
        median([f["path_ms"] for f in found[long]]), median([f["path_ms"] for f in found[short]])
    )
    verdict = "ok" if flat <= 2 else "MISS"
    print(f"\none more message at {long:,} / at {short:,}: {flat:.1f}x (goal <= 2x) {verdict}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
