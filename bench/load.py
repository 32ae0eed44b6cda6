"""List latency and throughput under load: every request family's page 1 and its page 501,
through the driver and through the HTTP API, the API driven by wrk.

    python -m bench.load [--threads 100000] [--runs 40] [--seconds 3]
                         [--levels 1,4,16,64,128,256] [--against REF]

The data and the families are bench.paging's (bench/families.py: one large organization and
four small ones, kept in ``bench_list_<threads>`` for reruns). The API runs as its own process
(``python -m api.main``, one process as deployed); wrk, a compiled load generator (Debian's
``wrk``, installed by scripts/stack), runs in another over loopback. For each family's page 1,
its page 501 (``after=`` the 10,000th thread) and ``include_total``, and one thread by id:

- the answer is first checked against the list computed from the generated data, through the
  driver and the API, so a wrong query is never timed;
- the driver: ``MongoThreadStore.page`` (or ``get``) ``--runs`` times in a row: p50, p99;
- the API: wrk with one connection for ``--seconds``: p50, p99 and requests/s (one request at a
  time, the latency a client sees);
- then, for a few families (include_total among them), wrk at each of ``--levels``
  connections: requests/s, the share of fast 503s (the API sheds beyond
  THREADVIEW_API_MAX_IN_FLIGHT, api/limits.py), p50 and p99 of the answered (2xx) requests and
  of the 503s, to show that the answered stay bounded while the rest fail fast. wrk times every
  response alike and counts them by status (bench/wrk.lua); a 503 is refused before any store
  round trip, so the 503s are taken as the fastest share of the distribution and the answered
  ones as the rest (``split``);
- with ``--against REF``, the API of that git ref (a temporary worktree, this venv:
  bench/worktree.py) on a database of its own that its own code loads and sets up, swept at each
  level right after this tree's, the side going first alternating level by level.

Include_total counts at most THREADVIEW_API_TOTAL_CAP threads per walk; the driver runs within
the API's budget too (services.query.Budget), so both give the capped total, checked as such.

The API/driver ratio of the p50s is the API's own cost (HTTP, the key, the response model).
``--profile DIR`` has py-spy sample the API under the heaviest of those loads. Prints the table;
never asserts timings; exits 1 only when an answer was wrong or wrk saw errors.

Why this module is longer than ~200 lines: one benchmark: the driver and API timings per family
and the wrk sweep share the loaded list, the keys and the API processes of both releases run
side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from bench.cases import Case
from bench.families import KEYS, Row, scope_of, url_params
from bench.paging import all_cases, serving
from bench.procs import Profile, peak_rss
from bench.stats import fmt, machine, percentile, ratio
from bench.worktree import TreeProcess, described, keys, tree_env, worktree, worktree_removed
from services.query import BUDGET, Budget, match_filters
from services.settings import Settings
from testkit.servers import free_port, free_ports

HERE = Path(__file__).resolve().parent
# family, deep
SWEEP = (
    ("svc org_big", False),
    ("svc org_big", True),
    ("svc 5 orgs", False),
    ("include_total=true", False),
)
LEVELS = "1,4,16,64,128,256"
SHED = 503  # the status of a request refused at once (api/limits.py)
GOAL_MS, GOAL_API = 25.0, 1.5
CASE_BUDGET = 10.0  # seconds of driver runs per case, at most


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed: scripts/stack up installs it (Debian's wrk)")
    return found


async def wrk(
    url: str, key: str, connections: int, seconds: float, polite: bool = False
) -> dict[str, Any]:
    """One wrk run against ``url``; its summary (bench/wrk.lua), with requests/s and ms.
    ``polite``: a connection answered 503 waits its Retry-After before the next request."""
    command = [
        wrk_binary(),
        f"-t{min(connections, 2)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-H",
        f"X-API-Key: {key}",
        "-s",
        str(HERE / "wrk.lua"),
        url,
        *(["--", "polite"] if polite else []),
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if process.returncode or not lines:
        raise RuntimeError(f"wrk exited {process.returncode}: {err.decode()[-500:]}")
    found: dict[str, Any] = json.loads(lines[-1])
    statuses = {int(status): n for status, n in found.pop("statuses").items()}
    shed = statuses.get(SHED, 0)
    # a 503 is a status error to wrk; anything else but a 2xx is a real one
    errors = sum(found[k] for k in found if k.endswith("_errors")) + found["timeouts"] - shed
    seconds_run = found["duration_us"] / 1e6
    answered = sum(n for status, n in statuses.items() if 200 <= status < 300)
    share = shed / found["requests"] if found["requests"] else 0.0
    return found | {
        "connections": connections,
        "statuses": statuses,
        "errors": errors,
        "rps": found["requests"] / seconds_run if seconds_run else float("nan"),
        "answered_rps": answered / seconds_run if seconds_run else float("nan"),
        "p50": found["p50_us"] / 1000,
        "p99": found["p99_us"] / 1000,
        "shed_share": share,
        **split(found.pop("grid"), share),
    }


def split(grid_us: list[int], shed_share: float) -> dict[str, float]:
    """The p50 and p99 of the answered requests and of the 503s, from wrk's percentiles of all
    responses (``grid_us``: the 0.1st to the 100th, in µs), taking the 503s as the fastest
    ``shed_share`` of them (refused before any store round trip). NaN where there are none."""

    def at(quantile: float) -> float:
        index = min(len(grid_us), max(1, round(quantile * len(grid_us)))) - 1
        return grid_us[index] / 1000

    answered = 1 - shed_share
    return {
        "ok_p50": at(shed_share + 0.5 * answered) if answered > 0 else math.nan,
        "ok_p99": at(shed_share + 0.99 * answered) if answered > 0 else math.nan,
        "shed_p50": at(0.5 * shed_share) if shed_share > 0 else math.nan,
        "shed_p99": at(0.99 * shed_share) if shed_share > 0 else math.nan,
    }


SETTLED_MS, SETTLE_SECONDS = 500.0, 60.0


async def settle(url: str, key: str) -> float:
    """Wait until a request to ``url`` is answered (not refused) within SETTLED_MS again:
    an API that queues (a release without shedding) goes on working through a run's backlog,
    in itself and in the store, after wrk stops, and would load the next run. The seconds
    waited."""
    started = time.monotonic()
    async with httpx.AsyncClient(headers={"X-API-Key": key}, timeout=SETTLE_SECONDS) as client:
        while time.monotonic() - started < SETTLE_SECONDS:
            sent = time.perf_counter()
            with contextlib.suppress(httpx.HTTPError):
                answer = await client.get(url)
                if answer.status_code == 200 and (time.perf_counter() - sent) * 1000 < SETTLED_MS:
                    break
            await asyncio.sleep(0.5)
    return time.monotonic() - started


def url_of(case: Case, port: int) -> str:
    base = f"http://127.0.0.1:{port}/v1/threads"
    if case.kind == "get":
        return f"{base}/{case.want[0]}"
    return f"{base}?{urlencode(url_params(case.query))}"


def timed_cases(rows: list[Row], cap: int) -> list[Case]:
    """Each family's page 1 and its deep page by ``after``, and one thread by id; a total
    wanted as the API counts it, to ``cap`` (services.mongo.store)."""
    cases = [c for c in all_cases(rows) if c.label in ("1", "-") or c.label.endswith(" after")]
    for case in cases:
        if case.want_total is not None:
            walks = match_filters(case.query, scope_of(case.family.key))
            counts = [
                sum(all(getattr(r, f) == v for f, v in w.items()) for r in rows) for w in walks
            ]
            case.want_total = cap if any(n > cap for n in counts) else case.want_total
    return cases


# run in the other release's worktree: its own code loads its own database (bench.paging)
LOADER = """
import asyncio, sys
from bench.paging import load
from services.mongo.bootstrap import bootstrap
from services.settings import get_settings

async def main():
    services = await bootstrap(get_settings())
    await load(services, int(sys.argv[1]))
    await services.close()

asyncio.run(main())
"""


@contextlib.asynccontextmanager
async def other_side(
    settings: Settings, threads: int, against: str | None
) -> AsyncIterator[tuple[int, dict[str, str]] | None]:
    """With ``against``: that ref's API (a worktree, this venv) on a database of its own, set up
    and loaded by its own code; its port and keys (bench/families.py's KEYS). Else None."""
    if against is None:
        yield None
        return
    commit = described(against, ("api.main",))
    print(f"  against {against} = {commit}: loading its database ...", flush=True)
    under = Path(tempfile.mkdtemp(prefix="bench-load-"))
    tree = worktree(against, under)
    side = settings.model_copy(
        update={"mongo_database": f"bench_list_{threads}_against", "api_port": free_port()}
    )
    api = None
    try:
        made = {}
        for name, (kind, organizations, user) in KEYS.items():
            owner = ["--service"] if kind == "service" else ["--user", user or ""]
            orgs = [a for o in organizations for a in ("--org", o)]
            made[name] = (await keys(side, tree, "create", *owner, *orgs)).split()[0]
        loader = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LOADER, str(threads), env=tree_env(side, tree), cwd=tree
        )
        if await loader.wait():
            raise RuntimeError(f"loading {against}'s database failed")
        api = TreeProcess("api.main", side, under / "api.log", tree)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{side.api_port}") as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    (await client.get("/healthz")).raise_for_status()
                    break
                except httpx.HTTPError:
                    if api.popen.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"{against}'s API did not start: {api.output()}"
                        ) from None
                    await asyncio.sleep(0.2)
        yield side.api_port, made
    finally:
        if api is not None:
            api.stop()
        worktree_removed(tree)


async def measure(
    settings: Settings,
    threads: int,
    runs: int,
    seconds: float,
    levels: list[int],
    profile: Path | None = None,
    against: str | None = None,
) -> dict[str, Any]:
    """The whole measurement at one size; JSON-ready."""
    settings = settings.model_copy(
        update={
            "mongo_database": f"bench_list_{threads}",
            **dict(zip(("api_port", "api_ops_port"), free_ports(2), strict=True)),
            "api_public_docs": True,  # bench.paging's Api.wait polls /openapi.json
        }
    )
    BUDGET.set(Budget(settings.api_max_walks, settings.api_total_cap))  # the driver's too
    started = time.perf_counter()
    async with serving(settings, threads, "bench-load-") as served:
        loaded = time.perf_counter() - started
        bench, api = served.bench, served.api
        cases = timed_cases(served.rows, settings.api_total_cap)
        keys = bench.keys
        for case in cases:  # check every answer both ways, and warm up
            await bench.once(case, api_first=True, keep=False)
            await bench.once(case, api_first=False, keep=False)
        wrong = [f"{c.name}: {c.error}" for c in cases if c.error]
        if wrong:
            raise RuntimeError("wrong answers, nothing timed:\n" + "\n".join(wrong))
        print(f"  {threads:,} threads: {len(cases)} cases checked; timing ...", flush=True)

        rows_out = []
        for case in cases:
            spent, driver = 0.0, list[float]()
            while len(driver) < runs and (spent < CASE_BUDGET or len(driver) < 3):
                elapsed, *_ = await bench.driver(case)
                spent += elapsed
                driver.append(elapsed * 1000)
            url = url_of(case, settings.api_port)
            loaded_api = await wrk(url, keys[case.family.key], 1, seconds)
            d50 = percentile(driver, 50)
            rows_out.append(
                {
                    "family": case.family.name,
                    "page": case.label,
                    "kind": case.kind,
                    "params": url_params(case.query),
                    "streams": case.streams,
                    "driver_p50": d50,
                    "driver_p99": percentile(driver, 99),
                    "driver_runs": len(driver),
                    "api": loaded_api,
                    "api_vs_driver": ratio(loaded_api["p50"], d50),
                }
            )
        sweep = []
        by_name = {(c.family.name, c.deep): c for c in cases}
        spy = None
        async with other_side(settings, threads, against) as other:
            sides = {"this": (settings.api_port, keys)} | ({against or "": other} if other else {})
            # this tree's API both to clients that retry at once and to ones that wait the
            # Retry-After; the other never refuses, so the two are one there
            pairs = [(side, polite) for side in sides for polite in (False, True)]
            pairs = [(side, polite) for side, polite in pairs if side == "this" or not polite]
            for name in SWEEP:
                if (swept := by_name.get(name)) is None:  # no deep page in a small list
                    continue
                for turn, level in enumerate(levels):
                    order = pairs[:: -1 if turn % 2 else 1]  # who goes first alternates
                    for side, polite in order:
                        port, side_keys = sides[side]
                        if profile and not spy and side == "this" and level == max(levels):
                            spy = Profile(api.popen.pid, seconds, profile, "api")
                        url = url_of(swept, port)
                        found = await wrk(url, side_keys[swept.family.key], level, seconds, polite)
                        found["settled_s"] = await settle(url, side_keys[swept.family.key])
                        clients = "polite" if polite else "at once"
                        sweep.append(
                            {"side": side, "clients": clients}
                            | {"family": swept.family.name, "page": swept.label}
                            | found
                        )
        profiled = await asyncio.to_thread(spy.wait) if spy else None
        return {
            "threads": threads,
            "against": against,
            "load_seconds": loaded,
            "cases": rows_out,
            "sweep": sweep,
            "rss_api": peak_rss(api.popen.pid),
            "profile": profiled,
        }


def report(found: dict[str, Any]) -> list[str]:
    """The figures at one size as text lines."""
    lines = [
        f"{found['threads']:,} threads; ms; API by wrk, 1 connection; API RSS peak "
        f"{found['rss_api']:.0f} MiB",
        f"{'family':<34}{'page':<11}{'drv p50':>8}{'drv p99':>8}{'API p50':>8}{'API p99':>8}"
        f"{'req/s':>7}{'API/drv':>8}",
    ]
    for row in found["cases"]:
        api = row["api"]
        lines.append(
            f"{row['family']:<34}{row['page']:<11}{fmt(row['driver_p50'], 8)}"
            f"{fmt(row['driver_p99'], 8)}{fmt(api['p50'], 8)}{fmt(api['p99'], 8)}"
            f"{fmt(api['rps'], 7, 0)}{fmt(row['api_vs_driver'], 8, 2, 'x')}"
            + (f"  {api['errors']} errors" if api["errors"] else "")
        )
    lines.append(
        "under load (wrk connections): requests/s of all and of the answered (2xx); the share "
        "of 503s; ms: p50 and p99 of the answered, p50 and p99 of the 503s; clients retrying at "
        "once after a 503, or polite (waiting its Retry-After); settled: seconds until that API "
        "answered within 500 ms again (its backlog) before the next run"
    )
    lines.append(
        f"  {'side':<10}{'clients':<8}{'family':<22}{'page':<8}{'conn':>5}{'req/s':>8}{'2xx/s':>8}"
        f"{'503':>7}{'ok p50':>8}{'ok p99':>8}{'503 p50':>8}{'503 p99':>8}{'settled':>8}"
    )
    for row in found["sweep"]:
        lines.append(
            f"  {row['side'][:9]:<10}{row['clients']:<8}{row['family'][:21]:<22}{row['page']:<8}"
            f"{row['connections']:>5}{fmt(row['rps'], 8, 0)}{fmt(row['answered_rps'], 8, 0)}"
            f"{fmt(100 * row['shed_share'], 6, 1)}%{fmt(row['ok_p50'], 8)}{fmt(row['ok_p99'], 8)}"
            f"{fmt(row['shed_p50'], 8)}{fmt(row['shed_p99'], 8)}"
            f"{fmt(row.get('settled_s', math.nan), 8, 1)}"
            + (f"  {row['errors']} errors" if row["errors"] else "")
        )
    return lines


async def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--levels", default=LEVELS)
    parser.add_argument("--against", help="a git ref whose API is swept beside this tree's")
    parser.add_argument("--mongo-url", default=Settings().mongo_url)
    parser.add_argument("--profile", type=Path, help="write py-spy's profile of the API here")
    args = parser.parse_args()
    settings = Settings(mongo_url=args.mongo_url)
    levels = [int(n) for n in args.levels.split(",")]
    found = await measure(
        settings, args.threads, args.runs, args.seconds, levels, args.profile, args.against
    )
    print(f"\n{machine()}")
    print("\n".join(report(found)))
    errors = sum(r["api"]["errors"] for r in found["cases"]) + sum(
        r["errors"] for r in found["sweep"]
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
