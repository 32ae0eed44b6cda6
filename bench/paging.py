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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

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
)
from bench.stats import fmt, machine, percentile, ratio
from services.bootstrap import Services, bootstrap
from services.query import ThreadQuery, match_filters
from services.settings import Settings
from tests.conftest import settings_env

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "bench_paging"
SEED = 7
LIMIT, DEPTH = 20, 500  # page 501: after the 10,000th thread
CHUNK = 2000
GOAL_MS, GOAL_RATIO = 25.0, 1.5
MAX_FAILURES = 3  # failed requests before a case is given up
FLOOR = Family("floor: one thread by id", "svc big", ThreadQuery(), deep=False)


@dataclass
class Case:
    family: Family
    label: str
    deep: bool
    query: ThreadQuery
    want: list[str]
    want_more: bool
    want_total: int | None
    driver: list[float] = field(default_factory=list)  # ms
    api: list[float] = field(default_factory=list)  # ms
    spent: float = 0.0  # s, both ways, warm-up included
    error: str | None = None  # a wrong answer, or too many failed requests: not timed further
    failures: list[str] = field(default_factory=list)  # failed requests (a store restart ...)
    kind: str = "list"  # "get": GET /v1/threads/{id}, the floor under every list request
    checked: bool = False  # both answers compared with the reference once

    @property
    def streams(self) -> int:
        """Index walks the store reads the page with."""
        return (
            len(match_filters(self.query, scope_of(self.family.key))) if self.kind == "list" else 1
        )

    @property
    def name(self) -> str:
        return f"{self.family.name} | {self.label}"


def cases_of(family: Family, full: list[str]) -> list[Case]:
    """Page 1 and, for a deep family, its page 501 (or deepest page) three ways."""
    query = replace(family.query, limit=LIMIT)
    total = len(full) if query.include_total else None
    made = [Case(family, "1", False, query, full[:LIMIT], len(full) > LIMIT, total)]
    # the page starts at full[start]; `before` needs the thread right after the page
    start = min(DEPTH * LIMIT, (len(full) - LIMIT - 1) // LIMIT * LIMIT)
    if not family.deep or start < LIMIT:
        return made
    page = f"{start // LIMIT + 1}" + ("" if start == DEPTH * LIMIT else " (deepest)")
    want = full[start : start + LIMIT]
    upper = min(start + 2 * LIMIT, len(full) - 1)  # a window wider than the page
    made += [
        Case(
            family,
            f"{page} after",
            True,
            replace(query, after=full[start - 1]),
            want,
            len(full) > start + LIMIT,
            total,
        ),
        Case(
            family,
            f"{page} before",
            True,
            replace(query, before=full[start + LIMIT]),
            want,
            True,
            total,
        ),
        Case(
            family,
            f"{page} after+before",
            True,
            replace(query, after=full[start - 1], before=full[upper]),
            full[start : min(start + LIMIT, upper)],
            upper - start > LIMIT,
            total,
        ),
    ]
    return made


def problems(case: Case, ids: list[str], has_more: bool, total: int | None) -> list[str]:
    found = []
    if ids != case.want:
        first = next(
            (i for i, (a, b) in enumerate(zip(ids, case.want, strict=False)) if a != b), None
        )
        found.append(
            f"ids differ (got {len(ids)}, want {len(case.want)}; first difference at {first}: "
            f"got {ids[first] if first is not None else ids[len(case.want) :][:1]}, "
            f"want {case.want[first] if first is not None else case.want[len(ids) :][:1]})"
        )
    if has_more != case.want_more:
        found.append(f"has_more {has_more}, want {case.want_more}")
    if total != case.want_total:
        found.append(f"total {total}, want {case.want_total}")
    return found


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
        rows = [Row.of(d) for d in documents(count, SEED)]
        print(f"reusing {store.threads.database.name}: {count} threads already loaded", flush=True)
    else:
        print(f"loading {count} threads into {store.threads.database.name} ...", flush=True)
        await meta.delete_many({})
        await store.threads.drop()
        chunk: list[dict[str, Any]] = []
        for document in documents(count, SEED):
            rows.append(Row.of(document))
            chunk.append(document)
            if len(chunk) == CHUNK:
                await store.threads.insert_many(chunk)
                chunk = []
        if chunk:
            await store.threads.insert_many(chunk)
        inserted = time.perf_counter()
        await store.ensure_indexes()
        await meta.replace_one({"_id": "paging"}, {"_id": "paging", "params": params}, upsert=True)
        print(
            f"loaded in {inserted - started:.1f}s, indexes built in "
            f"{time.perf_counter() - inserted:.1f}s",
            flush=True,
        )
    rows.sort(key=lambda r: (r.created_at, r.id))
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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


def row_of(case: Case, first: Case | None) -> tuple[str, bool]:
    d50, d99 = percentile(case.driver, 50), percentile(case.driver, 99)
    a50, a99 = percentile(case.api, 50), percentile(case.api, 99)
    deep = ratio(a50, percentile(first.api, 50)) if case.deep and first else float("nan")
    misses = []
    if not a50 <= GOAL_MS:
        misses.append(f"p50>{GOAL_MS:.0f}ms")
    if case.deep and not deep <= GOAL_RATIO:
        misses.append(f"deep>{GOAL_RATIO}x")
    mark = "MISS " + ",".join(misses) if misses else "ok"
    if case.error:
        mark = "ERROR"
    elif case.failures:
        mark += f" ({len(case.failures)} failed)"
    text = (
        f"{case.family.name:<32}{case.label:<26}{case.streams:>4}{len(case.api):>4}"
        f"{fmt(d50, 9)}{fmt(d99, 9)}{fmt(a50, 9)}{fmt(a99, 9)}"
        f"{fmt(deep, 8, 2, 'x')}{fmt(ratio(a50, d50), 8, 2, 'x')}  {mark}"
    )
    return text, bool(misses) or bool(case.error)


def report(cases: list[Case], backend: str, args: argparse.Namespace, took: float) -> int:
    header = (
        f"{'family':<32}{'page':<26}{'str':>4}{'n':>4}{'drv p50':>9}{'drv p99':>9}{'API p50':>9}"
        f"{'API p99':>9}{'deep/p1':>8}{'API/drv':>8}  goal"
    )
    print(f"\n{backend}; {args.threads} threads; {args.runs} runs; limit {LIMIT}; {machine()}")
    print(
        "times in ms; str = index walks (streams) per page; n = timed runs; deep/p1 = API p50 "
        "of the deep page / of the family's page 1; key 'svc org_big' unless the family names "
        "5 orgs or a user"
    )
    print(f"goal: API p50 <= {GOAL_MS:.0f} ms and page {DEPTH + 1} within {GOAL_RATIO}x of page 1")
    print(header)
    print("-" * len(header))
    firsts = {c.family.name: c for c in cases if c.label == "1"}
    missed = failed = 0
    totals = [c for c in cases if c.query.include_total]
    floors = [c for c in cases if c.kind == "get"]
    for case in [c for c in cases if c not in totals and c not in floors]:
        text, miss = row_of(case, firsts.get(case.family.name))
        print(text)
        missed += miss
        failed += case.error is not None
    if totals:
        print("\ninclude_total (counts every match, page 1 only; reported apart from paging):")
        for case in totals:
            text, _ = row_of(case, None)
            print(text)
            failed += case.error is not None
    if floors:
        print("\nthe floor: one thread by id (driver: store.get; API: GET /v1/threads/{id}):")
        for case in floors:
            print(row_of(case, None)[0])
            failed += case.error is not None
    paged = len(cases) - len(totals) - len(floors)
    print(f"\n{missed} of {paged} paging rows miss the goal; took {took / 60:.1f} min")
    for case in cases:
        for failure in case.failures:
            print(f"  {case.name}: failed request at {failure}")
        if case.error:
            print(f"  {case.name}: {case.error}")
        elif len(case.api) < args.runs and not case.failures:
            print(f"  {case.name}: only {len(case.api)} runs (over the {args.case_budget}s budget)")
    return 1 if failed else 0


def plan_shape(node: Any) -> str:
    """An explain() tree as one line: PostgreSQL nodes (FerretDB on DocumentDB) or MongoDB
    stages, each with its index, e.g. ``Limit > Index Scan(list_org_desc)``."""
    if not isinstance(node, dict):
        return "?"
    if "queryPlanner" in node:
        planner = node["queryPlanner"]
        return plan_shape(planner.get("Plan") or planner.get("winningPlan") or planner)
    name = node.get("Node Type") or node.get("stage") or "?"
    index = node.get("Index Name") or node.get("indexName")
    if index:
        name += f"({index})"
    children = node.get("Plans") or node.get("inputStages") or []
    if "inputStage" in node:
        children = [node["inputStage"]]
    if not children:
        return name
    inner = [plan_shape(c) for c in children]
    return f"{name} > " + (inner[0] if len(inner) == 1 else "[" + "; ".join(inner) + "]")


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

    settings = Settings(
        mongo_url=args.mongo_url, mongo_database=args.database, api_port=free_port()
    )
    services = await bootstrap(settings)
    made: list[str] = []
    api: Api | None = None
    client: httpx.AsyncClient | None = None
    try:
        info = await services.store.threads.database.command("buildInfo")
        backend = (
            f"FerretDB {info['ferretdb'].get('version', '?')}"
            if "ferretdb" in info
            else f"MongoDB {info['version']}"
        )
        rows = await load(services, args.threads)
        cases = [
            case
            for family in FAMILIES
            for case in cases_of(family, reference(rows, family.query, scope_of(family.key)))
        ]
        floor = next(c for c in cases if c.family.key == FLOOR.key and c.want).want[-1]
        cases.append(Case(FLOOR, "-", False, FLOOR.query, [floor], False, None, kind="get"))
        keys = {}
        for name, (kind, organizations, user) in KEYS.items():
            key, plaintext = await services.keys.create(kind, list(organizations), user)  # type: ignore[arg-type]
            made.append(key.id)
            keys[name] = plaintext
        api = Api(settings, Path(tempfile.mkdtemp(prefix="bench-paging-")) / "api.log")
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=120)
        await api.wait(client)
        bench = Bench(services, client, keys)
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
    finally:
        if client is not None:
            await client.aclose()
        if api is not None:
            api.stop()
        if made:
            await services.keys.keys.delete_many({"_id": {"$in": made}})
        await services.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
