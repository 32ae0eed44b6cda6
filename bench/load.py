"""List latency and throughput under load: every request family's page 1 and its page 501,
through the driver and through the HTTP API, the API driven by wrk.

    python -m bench.load [--threads 100000] [--runs 40] [--seconds 3] [--levels 1,4,16,64]

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
- then, for a few families, wrk at each of ``--levels`` connections: requests/s, p50 and p99,
  to show where the API saturates on the machine's cores.

The API/driver ratio of the p50s is the API's own cost (HTTP, the key, the response model).
``--profile DIR`` has py-spy sample the API under the heaviest of those loads. Prints the table;
never asserts timings; exits 1 only when an answer was wrong or wrk saw errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.cases import Case
from bench.families import Row, url_params
from bench.paging import all_cases, serving
from bench.procs import Profile, peak_rss
from bench.stats import fmt, machine, percentile, ratio
from services.settings import Settings
from tests.conftest import free_port

HERE = Path(__file__).resolve().parent
SWEEP = (("svc org_big", False), ("svc org_big", True), ("svc 5 orgs", False))  # family, deep
GOAL_MS, GOAL_API = 25.0, 1.5
CASE_BUDGET = 10.0  # seconds of driver runs per case, at most


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed: scripts/stack up installs it (Debian's wrk)")
    return found


async def wrk(url: str, key: str, connections: int, seconds: float) -> dict[str, Any]:
    """One wrk run against ``url``; its summary (bench/wrk.lua), with requests/s and ms."""
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
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if process.returncode or not lines:
        raise RuntimeError(f"wrk exited {process.returncode}: {err.decode()[-500:]}")
    found: dict[str, Any] = json.loads(lines[-1])
    errors = sum(found[k] for k in found if k.endswith("_errors")) + found["timeouts"]
    seconds_run = found["duration_us"] / 1e6
    return found | {
        "connections": connections,
        "errors": errors,
        "rps": found["requests"] / seconds_run if seconds_run else float("nan"),
        "p50": found["p50_us"] / 1000,
        "p99": found["p99_us"] / 1000,
    }


def url_of(case: Case, port: int) -> str:
    base = f"http://127.0.0.1:{port}/v1/threads"
    if case.kind == "get":
        return f"{base}/{case.want[0]}"
    return f"{base}?{urlencode(url_params(case.query))}"


def timed_cases(rows: list[Row]) -> list[Case]:
    """Each family's page 1 and its deep page by ``after``, and one thread by id."""
    return [c for c in all_cases(rows) if c.label in ("1", "-") or c.label.endswith(" after")]


async def measure(
    settings: Settings,
    threads: int,
    runs: int,
    seconds: float,
    levels: list[int],
    profile: Path | None = None,
) -> dict[str, Any]:
    """The whole measurement at one size; JSON-ready."""
    settings = settings.model_copy(
        update={"mongo_database": f"bench_list_{threads}", "api_port": free_port()}
    )
    started = time.perf_counter()
    async with serving(settings, threads, "bench-load-") as served:
        loaded = time.perf_counter() - started
        bench, api, cases = served.bench, served.api, timed_cases(served.rows)
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
            spent, driver = 0.0, []
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
        for name in SWEEP:
            if (case := by_name.get(name)) is None:  # no deep page in a small list
                continue
            url = url_of(case, settings.api_port)
            for level in levels:
                if profile and spy is None and name == SWEEP[0] and level == max(levels):
                    spy = Profile(api.popen.pid, seconds, profile, "api")
                found = await wrk(url, keys[case.family.key], level, seconds)
                sweep.append({"family": case.family.name, "page": case.label} | found)
        profiled = await asyncio.to_thread(spy.wait) if spy else None
        return {
            "threads": threads,
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
    lines.append("under load (wrk connections: requests/s, p50, p99):")
    for row in found["sweep"]:
        lines.append(
            f"  {row['family']:<32}{row['page']:<11}c={row['connections']:<3}"
            f"{fmt(row['rps'], 7, 0)}/s{fmt(row['p50'], 8)}{fmt(row['p99'], 8)}"
            + (f"  {row['errors']} errors" if row["errors"] else "")
        )
    return lines


async def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--levels", default="1,4,16,64")
    parser.add_argument("--mongo-url", default=Settings().mongo_url)
    parser.add_argument("--profile", type=Path, help="write py-spy's profile of the API here")
    args = parser.parse_args()
    settings = Settings(mongo_url=args.mongo_url)
    levels = [int(n) for n in args.levels.split(",")]
    found = await measure(settings, args.threads, args.runs, args.seconds, levels, args.profile)
    print(f"\n{machine()}")
    print("\n".join(report(found)))
    errors = sum(r["api"]["errors"] for r in found["cases"]) + sum(
        r["errors"] for r in found["sweep"]
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
