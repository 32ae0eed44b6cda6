"""Freshness: how long from a record's publication until its effect shows in GET /v1/threads,
while a steady stream is published.

    python -m bench.freshness [--rate 1000] [--seconds 60] [--out DIR]
    python -m bench.freshness --rates 1000,3000,5000 [--runs 3] [--against GIT-REF] [--seconds 60]

Runs the projector and the API as processes (fresh topic, group and database), publishes
``--rate`` events/s for ``--seconds``: messages to 2,000 threads created first (the stream
starts once the API lists them all, so the projector has joined its group and caught up), and every
tenth event a *probe*, a ``thread.created`` of a new thread in an organization of its own.
The publication time of a probe is taken just before its ``send``; a client polls
``GET /v1/threads?organization_id=<probes>&limit=100`` every 20 ms (newest first), and a
probe's freshness is the time of the first answer that lists it minus its publication time.
So a figure includes the producer's batching (linger 5 ms), the projector's batch wait
(``THREADVIEW_BATCH_TIMEOUT_MS``, 200 ms), its store write and commit, and up to one poll
interval plus one request. Prints p50/p95/p99/max beside the goal (p99 <= 250 ms) and writes
``freshness.json`` and ``freshness.png`` (freshness over time) to ``--out``.

With ``--rates``, ``--runs`` or ``--against`` it runs side by side instead: ``--runs`` runs at
each rate of this tree and, with ``--against REF``, of REF's own projector, API and key CLI
(``python -m`` of each in a temporary git worktree of REF, this venv: bench/worktree.py), each
run in its fresh topic, group and database, the side going first alternating run by run. The
database is set up by each side's own release (its ``threadview-keys create`` bootstraps it);
the topics by this one. First it drops the databases earlier bench runs left behind (per-run
names only, see ``drop_leftovers``); it prints the load average at the start and before and
after each run. Then per rate and side p50/p95/p99/max (medians over the runs), the p99's
min-max, whether it meets the goal, this tree's p99 over REF's, and each side's highest rate
that meets it. ``freshness.json`` holds every run; one ``freshness_<rate>_<side>.png`` each.

Why this module is longer than ~200 lines: one benchmark: the paced stream, the probes, the API
poller and the per-run figures are one measurement whose parts share the clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from bench.procs import Profile, peak_rss
from bench.stats import machine, median, percentile, ratio
from bench.throughput import drop
from bench.worktree import ROOT, TreeProcess, described, keys, worktree, worktree_removed
from consumers.sample import cloud_event
from consumers.topics import ensure_topics
from services.settings import Settings
from testkit.kafka import delete_topics
from testkit.servers import free_ports

THREADS, PROBE_EVERY, POLL = 2000, 10, 0.02
CATCH_UP = 120  # seconds after the stream a run waits for its last probes
PROBES_ORG = "org_probe"
GOAL_P99 = 0.250
PERCENTILES = ("p50", "p95", "p99", "max")
ENTRY_POINTS = ("consumers.projector", "api.main", "api.keys_cli")  # each side runs its own


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def seed(settings: Settings, client: httpx.AsyncClient) -> None:
    """Creates the threads the messages go to, and waits until the API lists them all, so the
    stream starts on a projector that has joined its group and caught up."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for n in range(THREADS):
            data = {"organization_id": "org_f", "user_id": "usr_f"}
            event = cloud_event("thread.created", f"thrd_f{n}", now_iso(), data)
            await producer.send(
                settings.topic, json.dumps(event).encode(), key=event["subject"].encode()
            )
        await producer.flush()
    finally:
        await producer.stop()
    params: dict[str, str | int] = {"organization_id": "org_f", "include_total": "true", "limit": 1}
    deadline = time.monotonic() + 120
    while (await client.get("/v1/threads", params=params)).json().get("total") != THREADS:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the projector did not apply the {THREADS} seed threads in 120 s")
        await asyncio.sleep(0.2)


async def publish(settings: Settings, rate: int, seconds: float, sent: dict[str, float]) -> int:
    """``rate`` events/s for ``seconds``, paced every 10 ms; probes' send times into ``sent``."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=5, acks="all"
    )
    await producer.start()
    count, started = 0, time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) - count
            for _ in range(due):
                count += 1
                if count % PROBE_EVERY == 0:
                    thread = f"thrd_probe_{count}"
                    data = {"organization_id": PROBES_ORG, "user_id": "usr_probe"}
                    event = cloud_event("thread.created", thread, now_iso(), data)
                    sent[thread] = time.monotonic()
                else:
                    thread = f"thrd_f{count % THREADS}"
                    event = cloud_event(
                        "thread.message_added", thread, now_iso(), {"message_id": f"m{count}"}
                    )
                await producer.send(settings.topic, json.dumps(event).encode(), key=thread.encode())
            await asyncio.sleep(0.01)
        await producer.flush()
    finally:
        await producer.stop()
    return count


async def watch(
    client: httpx.AsyncClient, sent: dict[str, float], seen: dict[str, float], done: asyncio.Event
) -> int:
    """Poll the probes' organization until every probe sent has been seen (after ``done``).

    Each poll reads two pages: the newest 100 probes, and the 100 after the last probe seen
    in sending order (oldest first). Partitions are applied unevenly, so a probe may show up
    after 100 newer ones; the second page still finds it when it does.
    """
    polls, gap = 0, 0
    while not (done.is_set() and len(seen) >= len(sent)):
        order = list(sent)
        while gap < len(order) and order[gap] in seen:
            gap += 1
        pages: list[dict[str, str | int]] = [{"limit": 100}]
        if gap < len(order):
            oldest: dict[str, str | int] = {"limit": 100, "order": "asc"}
            pages.append(oldest | ({"after": order[gap - 1]} if gap else {}))
        for page in pages:
            answer = await client.get("/v1/threads", params={"organization_id": PROBES_ORG, **page})
            at = time.monotonic()
            if answer.status_code == 200:
                for thread in answer.json()["data"]:
                    seen.setdefault(thread["id"], at)
        polls += 1
        await asyncio.sleep(POLL)
    return polls


async def measure(
    settings: Settings,
    rate: int,
    seconds: float,
    logs: Path,
    profile: Path | None = None,
    tree: Path = ROOT,
) -> dict[str, Any]:
    """One run of the projector and the API of the checkout ``tree``; with ``profile``, py-spy
    samples the projector while the stream is published and writes its flame graph and stacks
    there."""
    await ensure_topics(settings)
    made = await keys(settings, tree, "create", "--service", "--org", PROBES_ORG, "--org", "org_f")
    key = made.split()[0]
    projector = TreeProcess(ENTRY_POINTS[0], settings, logs / "projector.log", tree)
    api = TreeProcess(ENTRY_POINTS[1], settings, logs / "api.log", tree)
    client = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{settings.api_port}", headers={"X-API-Key": key}, timeout=10
    )
    try:
        await wait_ready(client)
        await seed(settings, client)
        sent: dict[str, float] = {}
        seen: dict[str, float] = {}
        done = asyncio.Event()
        watcher = asyncio.create_task(watch(client, sent, seen, done))
        spy = Profile(projector.popen.pid, seconds, profile, "projector") if profile else None
        published = await publish(settings, rate, seconds, sent)
        done.set()
        polls = -1  # it never caught up: the probes not seen count as later than any seen
        with contextlib.suppress(TimeoutError):
            polls = await asyncio.wait_for(watcher, CATCH_UP)
        memory = {
            "rss_projector": peak_rss(projector.popen.pid),
            "rss_api": peak_rss(api.popen.pid),
        }
        profiled = {"profile": await asyncio.to_thread(spy.wait)} if spy else {}
    finally:
        await client.aclose()
        projector.stop()
        api.stop()
    start = min(sent.values())
    points = sorted((sent[t] - start, seen[t] - sent[t]) for t in sent if t in seen)
    delays = [d for _, d in points] + [float("inf")] * (len(sent) - len(points))
    return (
        {
            "rate_asked": rate,
            "rate_published": published / seconds,
            "probes": len(sent),
            "probes_seen": len(points),
            "polls": polls,
            "p50": percentile(delays, 50),
            "p95": percentile(delays, 95),
            "p99": percentile(delays, 99),
            "max": max(delays, default=float("nan")),
            "caught_up": polls >= 0,
            "points": points,
        }
        | memory
        | profiled
    )


async def wait_ready(client: httpx.AsyncClient, deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the API did not become ready")


def plot(runs: list[list[tuple[float, float]]], out: Path, rate: int, who: str = "") -> None:
    """Freshness over time, one colour per run; ``who`` ran them, when it was not this tree."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 3.5))
    for n, points in enumerate(runs):
        xs, ys = [t for t, _ in points], [d * 1000 for _, d in points]
        axes.plot(xs, ys, ".", markersize=2, label=f"run {n + 1}" if len(runs) > 1 else None)
    axes.axhline(GOAL_P99 * 1000, color="red", linewidth=0.8, label="goal p99 250 ms")
    axes.set_xlabel("seconds into the run")
    axes.set_ylabel("publication → visible in the API (ms)")
    axes.set_title(f"Freshness at {rate} events/s published" + (f", {who}" if who else ""))
    axes.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)


@contextlib.asynccontextmanager
async def fresh_run(base: Settings, name: str) -> AsyncIterator[Settings]:
    """The settings of one run of the benchmark ``name``: a topic, dead-letter topic, consumer
    group and database of its own (named so that :func:`drop_leftovers` finds them when the run
    is killed), and free ports for its API and projector; the topics and the database are
    dropped after."""
    run = uuid4().hex[:8]
    ports = dict(zip(("api_port", "projector_port", "api_ops_port"), free_ports(3), strict=True))
    settings = base.model_copy(
        update={
            "topic": f"bench.{run}.{name}",
            "dlq_topic": f"bench.{run}.{name}.dlq",
            "consumer_group": f"bench-{name}-{run}",
            "mongo_database": f"bench_{name}_{run}",
            **ports,
        }
    )
    try:
        yield settings
    finally:
        await drop(settings)
        await delete_topics(settings.kafka_bootstrap_servers, f"bench.{run}.")


async def run_once(
    base: Settings, rate: int, seconds: float, profile: Path | None = None, tree: Path = ROOT
) -> dict[str, Any]:
    """One measurement (of the checkout ``tree``) on a fresh topic, group and database."""
    logs = Path(tempfile.mkdtemp(prefix="bench-freshness-"))
    async with fresh_run(base, "freshness") as settings:
        found = await measure(settings, rate, seconds, logs, profile, tree)
        return found | {"logs": str(logs)}


PER_RUN = "freshness|rebuild|append|consistency|watchers"  # the benchmarks of fresh_run and older
LEFTOVER = re.compile(rf"bench_(({PER_RUN})_)?[0-9a-f]{{8}}(_|$)")  # per-run names


async def drop_leftovers(mongo_url: str) -> list[str]:
    """Drops the databases of earlier bench runs that were killed before dropping their own, so
    the runs measure a store that holds only the benchmark's data (a leftover shares
    PostgreSQL's buffers and disk with them). Kept: the data bench.load and bench.paging keep for
    reuse (``bench_list_*``, ``bench_paging``), ``threadview`` and the tests'. A bench run going
    on beside this one would lose its database: one bench at a time on a store."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        names = [n for n in await client.list_database_names() if LEFTOVER.match(n)]
        for name in names:
            await client.drop_database(name)
    finally:
        await client.close()
    return names


def load() -> list[float]:
    """The 1, 5 and 15-minute load averages: how busy the shared machine was around a run."""
    return [round(x, 2) for x in os.getloadavg()]


async def compare(
    base: Settings, rates: list[int], runs: int, seconds: float, against: str | None = None
) -> dict[str, Any]:
    """``runs`` runs at each rate of this tree and, with ``against``, of that git ref's own
    projector and API (its worktree, this venv), the side going first alternating run by run,
    so a drift of the shared machine's load falls on both sides alike.

    Returns:
        What was run, and ``sides``: for "this" (and "against"), each rate's runs.
    """
    commit = described(against, ENTRY_POINTS) if against else None
    found: dict[str, Any] = {"rates": rates, "runs": runs, "seconds": seconds, "against": against}
    found |= {"commit": commit, "dropped": await drop_leftovers(base.mongo_url), "load": load()}
    print(
        f"freshness at {', '.join(map(str, rates))} events/s, {runs} run(s) of {seconds:.0f} s"
        + (f", this tree and {against} = {commit}" if against else "")
        + f"; {os.cpu_count()} cores, load average {found['load']}; dropped "
        f"{len(found['dropped'])} leftover bench database(s) {found['dropped']}",
        flush=True,
    )
    trees = {"this": ROOT}
    if against:
        trees["against"] = worktree(against, Path(tempfile.mkdtemp(prefix="bench-freshness-")))
    found["sides"] = {side: {rate: [] for rate in rates} for side in trees}
    try:
        await _alternate(base, found, trees)
    finally:
        if against:
            worktree_removed(trees["against"])
    return found


async def _alternate(base: Settings, found: dict[str, Any], trees: dict[str, Path]) -> None:
    """Every rate's runs, each side in its turn, into ``found["sides"]``."""
    turns = [(rate, n) for rate in found["rates"] for n in range(found["runs"])]
    for turn, (rate, n) in enumerate(turns):
        for side in list(trees) if turn % 2 == 0 else list(trees)[::-1]:
            before = load()
            one = await run_once(base, rate, found["seconds"], tree=trees[side])
            one |= {"load": before, "load_after": load()}  # the 1-minute one: mostly the run's
            found["sides"][side][rate].append(one)
            print(f"  {rate:>5}/s run {n + 1} {_label(found, side):<12}", _line(one), flush=True)


def _label(found: dict[str, Any], side: str) -> str:
    return "this tree" if side == "this" else str(found["against"])


def _line(run: dict[str, Any]) -> str:
    ms = "; ".join(f"{k} {run[k] * 1000:,.0f}" for k in ("p50", "p95", "p99", "max"))
    return (
        f"{run['rate_published']:,.0f}/s published, {run['probes_seen']} of {run['probes']} "
        f"probes seen; ms: {ms}; load average before {run['load']}, after {run['load_after']}"
    )


def compared(found: dict[str, Any]) -> list[str]:
    """The report of :func:`compare`: per rate and side the medians over the runs (p99 with its
    min-max) and whether p99 meets the goal, this tree's p99 over the other's; then the highest
    rate at which each side meets it."""
    lines = [f"median of {found['runs']} run(s) per rate and side, ms; p99 (min-max of the runs)"]
    lines.append(f"{'events/s':>9} {'side':<12}" + "".join(f"{k:>7}" for k in PERCENTILES))
    met: dict[str, list[int]] = {side: [] for side in found["sides"]}
    for rate in found["rates"]:
        p99s = {}
        for side, by_rate in found["sides"].items():
            row, p99s[side] = _row(by_rate[rate])
            met[side] += [rate] if p99s[side] <= GOAL_P99 * 1000 else []
            lines.append(f"{rate:>9} {_label(found, side):<12}{row}")
        if "against" in p99s:
            times = ratio(p99s["this"], p99s["against"])
            lines.append(f"{'':>9} p99 this tree / {found['against']}: {times:.2f}x")
    for side, rates in met.items():
        highest = f"{max(rates):,} events/s" if rates else f"none of {found['rates']}"
        lines.append(
            f"highest rate with p99 <= {GOAL_P99 * 1000:.0f} ms, {_label(found, side)}: {highest}"
        )
    return lines


def _row(runs: list[dict[str, Any]]) -> tuple[str, float]:
    """One side's medians at one rate, its p99's spread and verdict; and its median p99."""
    ms = {k: median([r[k] for r in runs]) * 1000 for k in PERCENTILES}
    spread = [r["p99"] * 1000 for r in runs]
    held = f"meets p99 <= {GOAL_P99 * 1000:.0f} ms" if ms["p99"] <= GOAL_P99 * 1000 else "MISSES"
    text = "".join(f"{ms[k]:>7,.0f}" for k in PERCENTILES)
    return f"{text}  p99 {ms['p99']:,.0f} ({min(spread):,.0f}-{max(spread):,.0f}) {held}", ms["p99"]


async def compared_main(args: argparse.Namespace) -> None:
    """``--rates``/``--runs``/``--against``: the side-by-side runs, their report, freshness.json
    and one plot per rate and side."""
    rates = [int(r) for r in args.rates.split(",")] if args.rates else [args.rate]
    found = await compare(Settings(), rates, args.runs, args.seconds, args.against)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "freshness.json").write_text(json.dumps(found, indent=1) + "\n")
    for side, by_rate in found["sides"].items():
        for rate, runs in by_rate.items():
            who = "" if side == "this" else f"{args.against} ({found['commit'].split()[0]})"
            plot([r["points"] for r in runs], args.out / f"freshness_{rate}_{side}.png", rate, who)
    print("\n".join(compared(found)))
    print(f"figures and plots in {args.out}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="the rate of one run")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rates", help="comma-separated rates, --runs runs each: side by side")
    parser.add_argument("--runs", type=int, default=1, help="runs per rate (and side)")
    parser.add_argument("--against", help="a git ref whose projector and API run beside these")
    parser.add_argument(
        "--out", type=Path, default=Path("bench/results") / f"{datetime.now(UTC):%Y-%m-%d}"
    )
    args = parser.parse_args()
    if args.rates or args.runs > 1 or args.against:
        await compared_main(args)
    else:
        await single(args)


async def single(args: argparse.Namespace) -> None:
    """One run of this tree at ``--rate``, as before the side-by-side runs existed."""
    found = await run_once(Settings(), args.rate, args.seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "freshness.json").write_text(json.dumps(found, indent=1) + "\n")
    plot([found["points"]], args.out / "freshness.png", args.rate)
    ms = {k: found[k] * 1000 for k in ("p50", "p95", "p99", "max")}
    print(f"freshness at {found['rate_published']:.0f} events/s published ({machine()}),")
    print(f"{found['probes_seen']} of {found['probes']} probes seen, {found['polls']} polls:")
    print("  p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms, max {max:.0f} ms".format(**ms))
    held = "holds" if found["p99"] <= GOAL_P99 else "MISSED"
    print(f"  goal p99 <= {GOAL_P99 * 1000:.0f} ms: {held}; plot and figures in {args.out}")
    print(f"  process logs in {found['logs']}")


if __name__ == "__main__":
    asyncio.run(main())
