"""First page vs a page 500 deep, keyset against skip/offset, on the real store.

    python -m bench.paging [--threads 100000] [--mongo-url mongodb://127.0.0.1:27017]

Loads N threads (one organization, so one key sees them all) into a scratch database, then
times GET-equivalent store queries: page 1, and page 501 reached by keyset (`after`) and by
skip. Prints the medians side by side and the store's explain() of the keyset query.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from services.bootstrap import bootstrap
from services.documents import VIEW_PROJECTION, to_document
from services.projection import Creation, Register, Stamp, ThreadState
from services.query import Scope, ThreadQuery, plan
from services.settings import Settings

T0 = datetime(2025, 1, 1, tzinfo=UTC)
SCOPE = Scope(("org_bench",))
LIMIT, DEPTH = 20, 500


def threads(count: int) -> list[dict[str, Any]]:
    documents = []
    for n in range(count):
        stamp = Stamp(T0 + timedelta(seconds=n), f"evt_{n}")
        state = ThreadState(
            id=f"thrd_{n:07d}",
            creation=Creation("org_bench", f"usr_{n % 50}", None, None, stamp),
            visible_in_ui=Register(n % 10 != 0, stamp),
            updated_at=stamp.time,
        )
        documents.append(to_document(state, 1))
    return documents


async def timed(runs: int, call: Any) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=100_000)
    parser.add_argument("--mongo-url", default=Settings().mongo_url)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    services = await bootstrap(Settings(mongo_url=args.mongo_url, mongo_database="bench_paging"))
    store = services.store
    try:
        if await store.threads.estimated_document_count() != args.threads:
            await store.threads.delete_many({})
            started = time.perf_counter()
            documents = threads(args.threads)
            for i in range(0, len(documents), 5000):
                await store.threads.insert_many(documents[i : i + 5000], ordered=False)
            print(f"loaded {args.threads} threads in {time.perf_counter() - started:.1f}s")
        query = ThreadQuery(limit=LIMIT)
        deep_ids = [
            d["_id"]
            async for d in store.threads.find({"visible_in_ui": True}, {"_id": 1})
            .sort("_id", -1)
            .limit(LIMIT * DEPTH)
        ]
        cursor = deep_ids[-1]  # the last thread of page 500: after it comes page 501

        first = await timed(args.runs, lambda: store.page(query, SCOPE))
        keyset = await timed(
            args.runs, lambda: store.page(ThreadQuery(limit=LIMIT, after=cursor), SCOPE)
        )
        chosen = plan(query, SCOPE, None, None)

        async def skip_page() -> None:
            found = store.threads.find(chosen.filter, VIEW_PROJECTION).sort(chosen.sort)
            await found.skip(LIMIT * DEPTH).limit(LIMIT + 1).to_list()

        skipped = await timed(args.runs, skip_page)
        page = await store.page(ThreadQuery(limit=LIMIT, after=cursor), SCOPE)
        assert page.data[0]["id"] < cursor, "keyset page 501 starts after the cursor"

        info = await store.threads.database.command("buildInfo")
        backend = (
            f"FerretDB {info['ferretdbVersion']}"
            if "ferretdbVersion" in info
            else f"MongoDB {info['version']}"
        )
        print(f"\n{backend}, {args.threads} threads, limit {LIMIT}, median of {args.runs} runs")
        print(f"{'page':<34}{'ms':>10}")
        print(f"{'1 (first)':<34}{first:>10.1f}")
        print(f"{f'{DEPTH + 1} via after=<cursor> (keyset)':<34}{keyset:>10.1f}")
        print(f"{f'{DEPTH + 1} via skip({LIMIT * DEPTH}) (offset)':<34}{skipped:>10.1f}")
        explain = (
            await store.threads.find(chosen.filter).sort(chosen.sort).limit(LIMIT + 1).explain()
        )
        keep = ("queryPlanner", "filterPushdown", "sortPushdown", "limitPushdown")
        print("\nexplain() of the first-page query:")
        print(
            json.dumps({k: explain[k] for k in keep if k in explain}, indent=1, default=str)[:3000]
        )
    finally:
        await services.close()


if __name__ == "__main__":
    asyncio.run(main())
