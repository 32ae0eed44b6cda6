"""First page against a page 500 deep, for every kind of list request, through the driver and
through the HTTP API, on the real store.

    python -m bench.paging [--threads 100000] [--runs 40] [--mongo-url URL] [--json FILE]
                           [--explain] [--database bench_paging]

Loads N generated threads (bench/families.py: one large organization and four small ones) into
the scratch database ``bench_paging``, or reuses it when a marker says it holds exactly that
data. Starts the API as its own process (``python -m api.main``) on that database, with keys
made for the run. Then, for each request family (a query and a key) and each page of it --
page 1; page 501 reached by ``after=<the 10,000th thread>``; the same page by
``before=<the 10,021st>``; and by ``after`` and ``before`` together -- times the same request
``--runs`` times through ``MongoThreadStore.page`` and through ``GET /v1/threads``, the two
interleaved, the cases in a new random order every run. Every page is first checked against
the list computed in Python from the generated data, so a wrong query is never timed silently.
Families with fewer matching threads use their deepest page (its number is printed). A floor
row times one thread by id (``store.get`` / ``GET /v1/threads/{id}``) the same way.

Prints p50 and p99 per way, the number of index walks (streams) per page, the deep/first page
ratio and the API/driver ratio, and marks the rows that miss the goal: API p50 <= 25 ms and
page 501 within 1.5x of page 1. ``--explain`` adds the store's plan of every stream. A failed
request (a store restart) is reported and its case goes on; three of them give the case up.
Never asserts timings; exits 1 only when a case was given up or answered the wrong threads.

Why this module is longer than ~200 lines: one benchmark: loading the list, checking every
family's answers before timing, timing driver and API, and the explain() of each, which share
the cases and the loaded store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.cases import LIMIT, Case, cases_of, problems
from bench.families import (
    FAMILIES,
    GENERATION,
    KEYS,
    Family,
    Row,
    documents,
    reference,
    scope_of,
    url_params,
    views_of,
)
from bench.report import plan_shape, report
from bench.throughput import backend_of
from services.mongo.bootstrap import Services, bootstrap, migrate
from services.mongo.migration import expand_view
from services.query import ThreadQuery
from services.settings import Settings
from testkit.processes import settings_env
from testkit.servers import free_ports

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "bench_paging"
SEED = 7
CHUNK, LOADERS = 1000, 3
MAX_FAILURES = 3  # failed requests before a case is given up
FLOOR = Family("floor: one thread by id", "svc big", ThreadQuery(), deep=False)


async def load(services: Services, count: int) -> list[Row]:
    """The generated threads' rows, sorted by (created_at, id); (re)loads the database unless
    its marker says it holds exactly this data already."""
    store, meta = services.store, services.store.threads.database["bench_meta"]
    params = {"generation": GENERATION, "threads": count, "seed": SEED}
    marker = await meta.find_one({"_id": "paging"})
    reuse = (
        marker is not None
        and marker.get("params") == params
        and await store.threads.count_documents({}) == count
    )
    started = time.perf_counter()
    rows: list[Row] = []
    if reuse:
        rows = [Row.of(d) for d, _ in documents(count, SEED)]
        print(f"reusing {store.threads.database.name}: {count} threads already loaded", flush=True)
    else:
        print(f"loading {count} threads into {store.threads.database.name} ...", flush=True)
        await meta.delete_many({})
        await store.threads.drop()
        await store.layout.activity.drop()
        await expand_view(store.threads.database, store.threads.name, store.descending_indexes)
        generated = documents(count, SEED)

        async def loader() -> None:
            # the indexes first, then LOADERS inserts in flight: on DocumentDB, which builds
            # one index at a time on one core, 1.3x faster than indexing after the load
            while chunk := list(itertools.islice(generated, CHUNK)):  # shared: next chunk
                rows.extend(Row.of(d) for d, _ in chunk)
                await store.threads.insert_many([d for d, _ in chunk], ordered=False)
                activity = [a for _, a in chunk if a is not None]
                await store.layout.activity.insert_many(activity, ordered=False)

        await asyncio.gather(*(loader() for _ in range(LOADERS)))
        await meta.replace_one({"_id": "paging"}, {"_id": "paging", "params": params}, upsert=True)
        print(f"loaded and indexed in {time.perf_counter() - started:.1f}s", flush=True)
    rows.sort(key=lambda r: (r.created_at, r.id))
    return rows


class Api:
    """``python -m api.main`` as its own process on the benchmark's database."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.log = log
        self._file = log.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "api.main"],
            env=settings_env(settings),
            cwd=ROOT,
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    async def wait(self, client: httpx.AsyncClient, patience: float = 60) -> None:
        deadline = time.monotonic() + patience
        while True:
            try:
                (await client.get("/openapi.json")).raise_for_status()
                return
            except httpx.HTTPError:
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the API did not start:\n{self.log.read_text(errors='replace')[-3000:]}"
                    ) from None
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._file.close()


def all_cases(rows: list[Row]) -> list[Case]:
    """Every family's cases (bench/cases.py), and the floor: one thread by id."""
    views = views_of(rows)
    cases = [
        case
        for family in FAMILIES
        for case in cases_of(family, reference(views, family.query, scope_of(family.key)))
    ]
    floor = next(c for c in cases if c.family.key == FLOOR.key and c.want).want[-1]
    return cases + [Case(FLOOR, "-", False, FLOOR.query, [floor], False, None, kind="get")]


@dataclass
class Served:
    """The loaded data, the API process and the bench that times both ways."""

    services: Services
    rows: list[Row]
    api: Api
    bench: Bench


@contextlib.asynccontextmanager
async def serving(settings: Settings, threads: int, prefix: str) -> AsyncIterator[Served]:
    """Loads ``threads`` generated threads (or reuses them), makes an API key of each of
    bench/families.py's KEYS and starts the API on them; undone on the way out."""
    await migrate(settings)
    services = await bootstrap(settings)
    made: list[str] = []
    api: Api | None = None
    client: httpx.AsyncClient | None = None
    try:
        rows = await load(services, threads)
        keys = {}
        for name, (kind, organizations, user) in KEYS.items():
            key, plaintext = await services.keys.create(kind, list(organizations), user)  # type: ignore[arg-type]
            made.append(key.id)
            keys[name] = plaintext
        api = Api(settings, Path(tempfile.mkdtemp(prefix=prefix)) / "api.log")
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=120)
        await api.wait(client)
        yield Served(services, rows, api, Bench(services, client, keys))
    finally:
        if client is not None:
            await client.aclose()
        if api is not None:
            api.stop()
        if made:
            await services.keys.keys.delete_many({"_id": {"$in": made}})
        await services.close()


class Bench:
    def __init__(self, services: Services, client: httpx.AsyncClient, keys: dict[str, str]):
        self.store = services.store
        self.client = client
        self.keys = keys

    async def driver(self, case: Case) -> tuple[float, list[str], bool, int | None]:
        started = time.perf_counter()
        if case.kind == "get":
            found = await self.store.get(case.want[0], scope_of(case.family.key))
            return time.perf_counter() - started, [found["id"]] if found else [], False, None
        page = await self.store.page(case.query, scope_of(case.family.key))
        elapsed = time.perf_counter() - started
        return elapsed, [t["id"] for t in page.data], page.has_more, page.total

    async def api(self, case: Case) -> tuple[float, list[str], bool, int | None]:
        headers = {"X-API-Key": self.keys[case.family.key]}
        started = time.perf_counter()
        if case.kind == "get":
            response = await self.client.get(f"/v1/threads/{case.want[0]}", headers=headers)
        else:
            response = await self.client.get(
                "/v1/threads", params=url_params(case.query), headers=headers
            )
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        body = response.json()
        if case.kind == "get":
            return elapsed, [body["id"]], False, None
        return elapsed, [t["id"] for t in body["data"]], body["has_more"], body["total"]

    async def once(self, case: Case, api_first: bool, keep: bool) -> None:
        """One request each way. A failed request is noted (the pair's samples dropped); after
        ``MAX_FAILURES`` of them, or on a wrong answer, the case is left out from then on."""
        ways = [("api", self.api), ("driver", self.driver)]
        if not api_first:
            ways.reverse()
        answers, samples = {}, {}
        try:
            for name, way in ways:
                elapsed, ids, has_more, total = await way(case)
                case.spent += elapsed
                answers[name] = (ids, has_more, total)
                samples[name] = elapsed * 1000
        except Exception as exc:  # noqa: BLE001 - reported in the table, the others go on
            case.failures.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}"[:300])
            if len(case.failures) >= MAX_FAILURES:
                case.error = f"gave up after {MAX_FAILURES} failed requests"
            return
        if keep:
            case.driver.append(samples["driver"])
            case.api.append(samples["api"])
        if not case.checked:
            case.checked = True
            found = [f"{n}: {p}" for n, a in answers.items() for p in problems(case, *a)]
            if answers["api"][0] != answers["driver"][0]:
                found.append("API and driver list different ids")
            if found:
                case.error = "WRONG ANSWER: " + "; ".join(found)


async def explain(services: Services, cases: list[Case]) -> None:
    print("\nexplain() of every stream of each family's page 1 and deep page (`after`):")
    for case in cases:
        if case.kind == "list" and (case.label == "1" or case.label.endswith(" after")):
            plans = await services.store.explain(case.query, scope_of(case.family.key))
            shapes = [plan_shape(p) for p in plans]
            counted = ", ".join(f"{shapes.count(x)}x {x}" for x in dict.fromkeys(shapes))
            print(f"  {case.name}: {counted}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds per case")
    parser.add_argument(
        "--case-budget",
        type=float,
        default=30.0,
        help="seconds a case may take in all; past it (and 3 runs) it is timed no more",
    )
    parser.add_argument("--mongo-url", default=Settings().mongo_url)
    parser.add_argument("--database", default=DATABASE, help="scratch database, kept for reruns")
    parser.add_argument("--json", type=Path, help="write the raw samples here")
    parser.add_argument("--explain", action="store_true", help="print the store's plans too")
    args = parser.parse_args()

    api_port, api_ops_port = free_ports(2)
    settings = Settings(
        mongo_url=args.mongo_url,
        mongo_database=args.database,
        api_port=api_port,
        api_ops_port=api_ops_port,
    )
    backend = await backend_of(settings.mongo_url)
    async with serving(settings, args.threads, "bench-paging-") as served:
        services, bench, cases = served.services, served.bench, all_cases(served.rows)
        started = time.perf_counter()

        print(f"{len(cases)} cases; warming up and checking every answer ...", flush=True)
        for warm in range(args.warmup):
            for case in cases:
                if case.error is None and (warm == 0 or case.spent < 2):
                    await bench.once(case, api_first=warm % 2 == 0, keep=False)
        for case in cases:
            if case.error:
                print(f"  {case.name}: {case.error}", flush=True)

        rng = random.Random(1)
        for run in range(args.runs):
            order = cases[:]
            rng.shuffle(order)
            for i, case in enumerate(order):
                over = len(case.api) >= 3 and case.spent > args.case_budget
                if case.error is None and not over:
                    await bench.once(case, api_first=(run + i) % 2 == 0, keep=True)
            if (run + 1) % 5 == 0 or run + 1 == args.runs:
                print(
                    f"  run {run + 1}/{args.runs} ({time.perf_counter() - started:.0f}s)",
                    flush=True,
                )
        took = time.perf_counter() - started
        status = report(cases, backend, args, took)
        if args.explain:
            await explain(services, cases)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "backend": backend,
                        "threads": args.threads,
                        "runs": args.runs,
                        "limit": LIMIT,
                        "cases": [
                            {
                                "family": c.family.name,
                                "key": c.family.key,
                                "page": c.label,
                                "params": url_params(c.query),
                                "driver_ms": c.driver,
                                "api_ms": c.api,
                                "error": c.error,
                                "failures": c.failures,
                            }
                            for c in cases
                        ],
                    },
                    indent=1,
                )
            )
            print(f"raw samples in {args.json}")
        return status


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
