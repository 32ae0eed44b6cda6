"""The benchmark suite in one command, against the running local stack (scripts/stack up).

    python -m bench [--quick] [--only throughput,rebuild,freshness,lists] [--out DIR] [--readme]
                    [--against GIT-REF]

Runs, in this order, each part as its own module does (their docstrings say exactly how):

1. throughput (bench.throughput): this projector against the naive one, alternating, into a
   store already holding 300, 3,000 and 30,000 threads;
2. rebuild (bench.rebuild): 1,000,000 events over 100,000 threads, beside the live
   projector's replay and the store's raw ``insert_many`` rate;
3. freshness (bench.freshness): publication to visibility in ``GET /v1/threads`` at a steady
   1,000 events/s, several runs; then one more run with py-spy sampling the projector;
4. lists (bench.load): every request family's page 1 and page 501 and ``include_total`` at
   100,000 and 1,000,000 threads, driver against API (wrk), and requests/s at 1 to 64
   connections; py-spy samples the API under the heaviest load at the largest size;
5. memory: the peak RSS of every projector, API and rebuild process run above.

With ``--against REF`` another release runs beside this tree, from a temporary git worktree of
REF with this venv (bench/worktree.py): its projector as one more throughput peer (the
``against`` runs of each size, and their ratios), and its projector and API in the freshness
runs at the goal's rate, alternating with this tree's (``freshness.against``; ``runs`` stay this
tree's). The memory figures and the goals are this tree's alone.

Writes ``results.json.gz`` (every figure, raw; gzip, so a run's raw data stays small in git),
``README.md`` (the tables), PNG plots and the
profiles to ``bench/results/<date>/`` (``--out``); ``--readme`` also puts the goals table into
the project README between its ``bench:begin``/``bench:end`` markers. ``--quick`` runs every
part on tiny data in a couple of minutes: CI's smoke test (its figures mean nothing). A part
that fails is reported and the others still run; the exit status is then 1. Timings are never
asserted.

Why this module is longer than ~200 lines: the suite's command runs every part, from a quiet
store, beside another release's worktree, and writes the raw results and the report; the order
and the shared set-up are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import freshness, load, rebuild, throughput
from bench.summary import goals, markdown, plots, verdict
from bench.worktree import described
from services.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Plan:
    """How much of each part to run."""

    sizes: list[int] = field(default_factory=lambda: [300, 3000, 30000])  # threads stored
    log_threads: int = 1000  # threads in the throughput log (~19,300 records)
    throughput_rounds: int = 2
    naive_cap: float = 15  # s after its first commit
    rebuild_threads: int = 100_000
    rebuild_events: int = 1_000_000
    rebuild_rounds: int = 2
    replay_cap: float = 20  # (a), s after its first commit
    rate: int = 1000
    fresh_seconds: float = 30
    fresh_rounds: int = 3
    lower_rates: list[int] = field(default_factory=lambda: [250, 500])  # one run each, 20 s
    profile_seconds: float = 20
    list_sizes: list[int] = field(default_factory=lambda: [100_000, 1_000_000])
    list_runs: int = 40
    wrk_seconds: float = 3
    levels: list[int] = field(default_factory=lambda: [int(n) for n in load.LEVELS.split(",")])
    against: str | None = None  # a git ref run beside this tree (throughput, freshness)


QUICK = Plan(
    sizes=[300],
    log_threads=100,
    throughput_rounds=1,
    naive_cap=3,
    rebuild_threads=1000,
    rebuild_events=10_000,
    rebuild_rounds=1,
    replay_cap=3,
    rate=200,
    fresh_seconds=4,
    fresh_rounds=1,
    lower_rates=[],
    profile_seconds=3,
    list_sizes=[3000],
    list_runs=5,
    wrk_seconds=1,
    levels=[1, 4],
)
PARTS = ("throughput", "rebuild", "freshness", "lists")


def machine(settings: Settings, backend: str) -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    meminfo = Path("/proc/meminfo").read_text()
    kib = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
    status = subprocess.run(
        [str(ROOT / "scripts" / "stack"), "status"], capture_output=True, text=True, check=False
    ).stdout
    kafka = re.search(r"Kafka ([\w.]+)", status)
    postgres = re.search(r"PostgreSQL (\S+)", status)
    documentdb = re.search(r"extension documentdb (\S+)", status)
    store = backend
    if postgres and documentdb:
        store += f" on PostgreSQL {postgres.group(1)} + DocumentDB {documentdb.group(1)}"
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": kib / 1024 / 1024,
        "store": store,
        "kafka": kafka.group(1) if kafka else "?",
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "kafka_servers": settings.kafka_bootstrap_servers,
        "mongo_url": settings.mongo_url,
    }


async def run_throughput(settings: Settings, plan: Plan, out: Path) -> dict[str, Any]:
    runs, about = await throughput.suite(
        settings.kafka_bootstrap_servers,
        settings.mongo_url,
        plan.sizes,
        plan.log_threads,
        plan.throughput_rounds,
        plan.naive_cap,
        against=plan.against,
    )
    throughput.report(runs, argparse.Namespace(rounds=plan.throughput_rounds, cap=plan.naive_cap))
    if plan.against:
        print("\n".join(throughput.beside(runs, "against", plan.against)), flush=True)
    sizes = {
        size: {n: [asdict(r) for r in rs] for n, rs in by.items()} for size, by in runs.items()
    }
    return {"about": about, "sizes": sizes}


async def run_rebuild(settings: Settings, plan: Plan, out: Path) -> dict[str, Any]:
    rounds, about = await rebuild.suite(
        settings.kafka_bootstrap_servers,
        settings.mongo_url,
        plan.rebuild_threads,
        plan.rebuild_events,
        plan.rebuild_rounds,
        plan.replay_cap,
    )
    rebuild.report(rounds)
    return {"about": about, "rounds": rounds}


async def run_freshness(settings: Settings, plan: Plan, out: Path) -> dict[str, Any]:
    runs, against = await fresh_runs(settings, plan)
    lower = []
    for rate in plan.lower_rates:
        found = await freshness.run_once(settings, rate, min(plan.fresh_seconds, 20))
        print(
            f"  at {rate} events/s: p50 {found['p50'] * 1000:.0f} ms, p99 "
            f"{found['p99'] * 1000:.0f} ms, max {found['max'] * 1000:.0f} ms",
            flush=True,
        )
        lower.append({k: v for k, v in found.items() if k != "points"})
    print("  one more run with py-spy sampling the projector ...", flush=True)
    profiled = await freshness.run_once(settings, plan.rate, plan.profile_seconds, out)
    profile = profiled.pop("profile") | {
        "what": f"the projector during a {plan.profile_seconds:.0f} s run at {plan.rate:,} "
        f"events/s; that run's p99 {profiled['p99'] * 1000:.0f} ms"
    }
    return {
        "rate": plan.rate,
        "seconds": plan.fresh_seconds,
        "runs": runs,
        "lower_rates": lower,
        "profiled_run": {k: v for k, v in profiled.items() if k != "points"},
        "profile": profile,
    } | ({"against": against} if against else {})


async def fresh_runs(
    settings: Settings, plan: Plan
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """This tree's runs at the goal's rate; with ``plan.against``, alternating with that
    release's (returned apart, with what was run), so the report's runs stay this tree's."""
    if not plan.against:
        return [await fresh_run(settings, plan, n) for n in range(plan.fresh_rounds)], None
    found = await freshness.compare(
        settings, [plan.rate], plan.fresh_rounds, plan.fresh_seconds, plan.against
    )
    print("\n".join(freshness.compared(found)), flush=True)
    sides = found.pop("sides")
    return sides["this"][plan.rate], found | {"runs": sides["against"][plan.rate]}


async def fresh_run(settings: Settings, plan: Plan, n: int) -> dict[str, Any]:
    found = await freshness.run_once(settings, plan.rate, plan.fresh_seconds)
    print(
        f"  run {n + 1}: {found['rate_published']:.0f} events/s published; p50 "
        f"{found['p50'] * 1000:.0f} ms, p99 {found['p99'] * 1000:.0f} ms, max "
        f"{found['max'] * 1000:.0f} ms; projector {found['rss_projector']:.0f} MiB, "
        f"API {found['rss_api']:.0f} MiB",
        flush=True,
    )
    return found


async def run_lists(settings: Settings, plan: Plan, out: Path) -> list[dict[str, Any]]:
    found = []
    for size in plan.list_sizes:
        print(f"  {size:,} threads", flush=True)
        largest = size == max(plan.list_sizes)
        one = await load.measure(
            settings, size, plan.list_runs, plan.wrk_seconds, plan.levels, out if largest else None
        )
        if one["profile"]:
            one["profile"]["what"] = (
                f"the API under wrk at {max(plan.levels)} connections, {size:,} threads, "
                "service key, page 1"
            )
        print("\n".join(load.report(one)), flush=True)
        found.append(one)
    return found


RUNNERS: dict[str, Callable[[Settings, Plan, Path], Awaitable[Any]]] = {
    "throughput": run_throughput,
    "rebuild": run_rebuild,
    "freshness": run_freshness,
    "lists": run_lists,
}


def memory(results: dict[str, Any]) -> dict[str, list[float]]:
    projector, api, rebuilds = [], [], []
    for by in (results.get("throughput") or {}).get("sizes", {}).values():
        projector += [r["rss"] for r in by["threadview"]]
    fresh = results.get("freshness") or {}
    for run in fresh.get("runs", []) + fresh.get("lower_rates", []):
        projector.append(run["rss_projector"])
        api.append(run["rss_api"])
    api += [found["rss_api"] for found in results.get("lists") or []]
    rebuilds += [r["rss"] for r in (results.get("rebuild") or {}).get("rounds", [])]
    found = {"rss_projector": projector, "rss_api": api, "rss_rebuild": rebuilds}
    return {k: [v for v in vs if v is not None and not math.isnan(v)] for k, vs in found.items()}


def readme_table(results: dict[str, Any], folder: str) -> str:
    m = results["machine"]
    lines = [
        f"Latest full run ({results['date']}, `python -m bench`, {results['took'] / 60:.0f} min; "
        f"{m['cores']} cores, {m['memory_gib']:.0f} GiB, {m['store']}, Kafka {m['kafka']}, "
        f"Python {m['python']}); every table, plot and profile in [{folder}]({folder}/README.md):",
        "",
        "| goal | measured | |",
        "|---|---|---|",
    ]
    for name, text, value, note in goals(results):
        digits = 2 if name == "api_ratio" else 0
        lines.append(f"| {text} | {value:,.{digits}f} {note} | {verdict(name, value)} |")
    return "\n".join(lines)


def update_readme(table: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    if begin not in text or end not in text:
        print(f"README.md has no {begin} ... {end} markers: not updated", file=sys.stderr)
        return
    head, rest = text.split(begin, 1)
    readme.write_text(f"{head}{begin}\n{table}\n{end}{rest.split(end, 1)[1]}")


def jsonable(value: Any) -> Any:
    """NaN as null, tuples as lists, keys as text: strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny data: a smoke test")
    parser.add_argument("--only", default=",".join(PARTS), help="parts to run, comma-separated")
    parser.add_argument("--out", type=Path, help="default bench/results/<date>[-quick]")
    parser.add_argument("--readme", action="store_true", help="update the README's table")
    parser.add_argument("--against", help="a git ref run beside this tree: throughput, freshness")
    parser.add_argument(
        "--render", type=Path, metavar="DIR", help="only redraw DIR's report from its raw figures"
    )
    args = parser.parse_args()
    if args.render:
        return render(args.render, args.readme)
    args.parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    if args.against:
        try:  # before any part: a ref that cannot run fails now, not 20 minutes in
            print(f"against {args.against} = {described(args.against, freshness.ENTRY_POINTS)}")
        except RuntimeError as error:
            parser.error(str(error))
    args.date = f"{datetime.now(UTC):%Y-%m-%d}"
    args.out = args.out or ROOT / "bench" / "results" / (args.date + "-quick" * args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    return asyncio.run(suite(args))


async def suite(args: argparse.Namespace) -> int:
    plan = replace(QUICK if args.quick else Plan(), against=args.against)
    out, date, parts = args.out, args.date, args.parts
    settings = Settings()
    started = time.perf_counter()
    backend = await throughput.backend_of(settings.mongo_url)
    results: dict[str, Any] = {
        "date": date,
        "quick": args.quick,
        "plan": asdict(plan),
        "machine": machine(settings, backend),
        "sections": {},
        "failed": {},
    }
    print(f"bench: {', '.join(parts)} -> {out}; {results['machine']}", flush=True)

    def save() -> None:
        results["took"] = time.perf_counter() - started
        results["memory"] = memory(results)
        results["profiles"] = {
            "projector": (results.get("freshness") or {}).get("profile"),
            "api": next((x["profile"] for x in results.get("lists") or [] if x["profile"]), None),
        }
        write_results(out, results)

    for part in parts:
        print(f"\n== {part} ==", flush=True)
        begun = time.perf_counter()
        try:
            results[part] = await RUNNERS[part](settings, plan, out)
        except Exception:  # noqa: BLE001 - reported, and the other parts still run
            results["failed"][part] = traceback.format_exc()
            print(f"{part} FAILED:\n{results['failed'][part]}", file=sys.stderr, flush=True)
        results["sections"][part] = time.perf_counter() - begun
        save()
    save()
    print("\n" + write_report(results, out, args.readme and not args.quick))
    print(f"\nresults in {out}; took {results['took'] / 60:.1f} min", flush=True)
    return 1 if results["failed"] else 0


def write_report(results: dict[str, Any], out: Path, readme: bool) -> str:
    """The Markdown report and the plots into ``out``; the README's table too when asked."""
    report = markdown(results)
    (out / "README.md").write_text(report)
    plots(results, out)
    if readme:
        update_readme(readme_table(results, out.resolve().relative_to(ROOT).as_posix()))
    return report


RESULTS = "results.json.gz"


def write_results(out: Path, results: dict[str, Any]) -> None:
    """Every figure, raw, compressed: the tables and plots are what git shows; this is what
    ``--render`` redraws them from. mtime=0 so the same figures give the same bytes."""
    raw = (json.dumps(jsonable(results), indent=1) + "\n").encode()
    (out / RESULTS).write_bytes(gzip.compress(raw, mtime=0))


def read_results(out: Path) -> dict[str, Any]:
    """A run's raw figures: ``results.json.gz``, or the plain ``results.json`` of older runs."""
    if (out / RESULTS).exists():
        found: dict[str, Any] = json.loads(gzip.decompress((out / RESULTS).read_bytes()))
    else:
        found = json.loads((out / "results.json").read_text())
    return found


def render(out: Path, readme: bool) -> int:
    """Rewrites a run's report and plots from its raw figures (after the report changed)."""
    results = read_results(out)
    results["memory"] = memory(results)
    write_report(results, out, readme)
    print(f"rewrote {out / 'README.md'} and its plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
