"""Events per second applied end to end, threadview's projector against the simplest one, with
the store already holding K unrelated threads.

    python -m bench.throughput [--sizes 300,3000,30000] [--threads 1000] [--rounds 1] [--cap 60]
                               [--peers naive,connector] [--against GIT-REF]

Publishes one generated log (testkit/logs.py: retries, disorder, poison) to a fresh topic.
Then, for each size K and each round, runs threadview's projector (``consumers.projector``)
and the naive one (``bench.naive_projector``: one store read and one write per event,
FastStream defaults), alternating (the order reversed every other round), each as its own
process with its own consumer group and a fresh database. Before a run, the projector's own
release creates that database's catalog and indexes (its ``threadview-keys list``, which
bootstraps the store) and K thread documents are inserted (ids unlike the log's, in the log's
organizations), so the projector writes into a collection of that size, as in production.

``--against REF`` adds one more peer, ``against``: REF's own ``consumers.projector``, from a
temporary git worktree of REF (bench/worktree.py) run with this venv, on the same log at each
size, its database set up by REF's bootstrap; its rate is printed beside threadview's as a
ratio. The worktree is removed at the end.

A run lasts from the process start until its group has committed the whole topic, or until
``--cap`` seconds after its first commit (the naive projector would need many minutes for the
whole log; its rate is steady). The group's lag is polled every 50 ms. The figure reported is
the steady rate: the records committed between the group's first commit seen and its last,
over the time between them (start-up, group join and the first batch left out; both ends are
commits, so the naive projector's 5 s auto-commit interval costs no precision); the rate
from the process start, start-up included, is printed beside it. Prints the figures side by
side with the goals (threadview's throughput at the largest size within 1.5x of that at the
smallest; threadview >= 10x the naive projector); never asserts them. Every run's database
and, at the end, the topics are dropped.

Why this module is longer than ~200 lines: one benchmark: the same log applied by threadview's
projector and its two peers into a store holding K threads, alternating, which needs the three
projectors' runs side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from pymongo import AsyncMongoClient

from bench.families import documents
from bench.procs import peak_rss
from bench.stats import fmt, machine, median, ratio
from bench.worktree import described, keys, tree_env, worktree, worktree_removed
from services.mongo.writes import Layout
from services.settings import Settings
from services.views import MAIN, collection_of
from testkit.kafka import create_topic, delete_topics, lag, produce
from testkit.logs import ORGS as LOG_ORGS
from testkit.logs import generate
from testkit.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
PROJECTORS = {
    "threadview": "consumers.projector",
    "naive": "bench.naive_projector",
    "connector": "bench.connector_projector",  # --peers: bulk upserts, no read, weaker rules
    "against": "consumers.projector",  # --against: of another release, from its worktree
}
PARTITIONS = 6
CHUNK = 1000
BATCH_LOG = re.compile(r"batch of (\d+):.* store (\d+) ms, commit (\d+) ms")
GOAL_FLAT, GOAL_NAIVE = 1.5, 10.0


@dataclass
class Run:
    steady: float  # events/s from the first commit to the last
    wall: float  # events/s from the process start
    startup: float  # s until the first commit was seen
    elapsed: float  # s from the process start to the last commit
    done: int  # records committed (fewer than the log's when stopped at the cap)
    prefill: float  # s to insert the K documents
    store_ms: float  # median store time per batch (threadview only, from its log)
    batch: float  # median records per batch (threadview only)
    rss: float  # MiB, the projector process's peak resident memory


class Progress:
    """The group's committed position on the topic, polled with long-lived clients (the same
    sum as testkit.kafka.lag, without a new connection per poll)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        self.ends: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        await self.admin.start()
        await self.consumer.start()
        described = await self.admin.describe_topics([self.topic])
        partitions = [
            TopicPartition(self.topic, p["partition"]) for p in described[0]["partitions"]
        ]
        self.ends = await self.consumer.end_offsets(partitions)

    @property
    def total(self) -> int:
        return sum(self.ends.values())

    async def lag(self, group: str) -> int:
        """Records the group has not committed; the whole topic while its coordinator is not
        known yet (a new group on a fresh broker)."""
        try:
            committed = await self.admin.list_consumer_group_offsets(group)
        except KafkaError:
            await asyncio.sleep(0.2)
            return self.total
        return sum(
            end - (committed[tp].offset if tp in committed else 0) for tp, end in self.ends.items()
        )

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.admin.close()


async def prefill(settings: Settings, size: int, seed: int, tree: Path = ROOT) -> float:
    """Indexes first (the bootstrap of the checkout ``tree``, as production starts: another
    release's indexes may differ), then ``size`` unrelated threads into ``main``'s collection."""
    started = time.perf_counter()
    await keys(settings, tree, "list")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url)
    layout = Layout.of(client[settings.mongo_database], collection_of(MAIN))
    threads = layout.threads
    try:
        generated = documents(size, seed=seed, prefix="thrd_pre_", orgs=LOG_ORGS)
        while chunk := list(itertools.islice(generated, CHUNK)):
            await threads.insert_many([document for document, _ in chunk])
            activity = [a for _, a in chunk if a is not None]  # (a release before 3: unread)
            if activity:
                await layout.activity.insert_many(activity)
        count = await threads.count_documents({})
        assert count == size, f"prefilled {count} threads, not {size}"
    finally:
        await client.close()
    return time.perf_counter() - started


async def drop(settings: Settings) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url)
    try:
        await client.drop_database(settings.mongo_database)
    finally:
        await client.close()


@dataclass
class Timeline:
    started: float
    commits: list[tuple[float, int]]  # (when seen, lag) each time the lag went down
    finished: bool  # the whole topic committed (else stopped at the cap)
    rss: float = float("nan")  # MiB, the process's peak resident memory


async def run(
    module: str,
    settings: Settings,
    progress: Progress,
    log: Path,
    limits: Any,
    tree: Path = ROOT,
) -> Timeline:
    """Runs ``module`` of the checkout ``tree`` until its group has committed the topic, or
    ``limits.cap`` seconds after its first commit, noting every commit seen."""
    group, cap, patience = settings.consumer_group, limits.cap, limits.patience
    with log.open("wb") as output:
        started = time.perf_counter()
        process = subprocess.Popen(  # noqa: ASYNC220 - runs for the whole measurement
            [sys.executable, "-m", module],
            env=tree_env(settings, tree),
            cwd=tree,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        commits: list[tuple[float, int]] = []
        try:
            while True:
                left = await progress.lag(group)
                now = time.perf_counter()
                if left < (commits[-1][1] if commits else progress.total):
                    commits.append((now, left))
                if left == 0 or (commits and now - commits[0][0] > cap):
                    return Timeline(started, commits, left == 0, peak_rss(process.pid))
                if process.poll() is not None:
                    raise RuntimeError(f"{module} exited:\n{tail(log)}")
                if now - started > patience:
                    raise RuntimeError(f"{module} still {left} records behind after {patience}s")
                await asyncio.sleep(0.05)
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def batches(log: Path) -> tuple[float, float]:
    """Median store milliseconds and records per batch, from the projector's batch log."""
    found = [m.groups() for m in BATCH_LOG.finditer(log.read_text(errors="replace"))]
    return median([float(s) for _, s, _ in found]), median([float(n) for n, _, _ in found])


async def measure(
    name: str,
    settings: Settings,
    size: int,
    progress: Progress,
    logs: Path,
    args: Any,
    tree: Path = ROOT,
) -> Run:
    """One run of projector ``name`` (of the checkout ``tree``) into a fresh database of
    ``size`` threads, dropped after."""
    try:
        filled = await prefill(settings, size, seed=size, tree=tree)
        log = logs / f"{settings.mongo_database}.log"
        timeline = await run(PROJECTORS[name], settings, progress, log, args, tree)
        if timeline.finished:  # every record committed, by the tests' own count too
            left = await lag(
                settings.kafka_bootstrap_servers, settings.topic, settings.consumer_group
            )
            assert left == 0, f"{settings.consumer_group} is {left} records behind"
        (first, first_lag), (last, last_lag) = timeline.commits[0], timeline.commits[-1]
        total, started = progress.total, timeline.started
        done = total - last_lag
        steady = (
            (first_lag - last_lag) / (last - first) if last > first else done / (last - started)
        )
        ours = name in ("threadview", "against")  # the batch log is threadview's
        store_ms, batch = batches(log) if ours else (float("nan"),) * 2
        return Run(
            steady,
            done / (last - started),
            first - started,
            last - started,
            done,
            filled,
            store_ms,
            batch,
            timeline.rss,
        )
    finally:
        await drop(settings)


Results = dict[int, dict[str, list[Run]]]


async def suite(
    kafka: str,
    mongo_url: str,
    sizes: list[int],
    threads: int,
    rounds: int,
    cap: float,
    patience: float = 600,
    peers: tuple[str, ...] = ("naive",),
    against: str | None = None,
) -> tuple[Results, dict[str, Any]]:
    """Every size and round, threadview and its ``peers`` (and ``against``'s projector, as
    peer ``against``) alternating; the runs, and what was run."""
    names = ("threadview", *peers) + ("against",) * bool(against)
    commit = described(against, (PROJECTORS["against"],)) if against else None
    run_id = uuid4().hex[:8]
    base = Settings(
        kafka_bootstrap_servers=kafka,
        mongo_url=mongo_url,
        topic=f"bench.{run_id}.threads.events",
        dlq_topic=f"bench.{run_id}.dlq",
        topic_partitions=PARTITIONS,
        projector_port=free_port(),  # not the port of a projector running beside the bench
    )
    logs = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    log = generate(seed=11, threads=threads)
    progress = Progress(base.kafka_bootstrap_servers, base.topic)
    results: Results = {k: {n: [] for n in names} for k in sizes}
    limits = argparse.Namespace(cap=cap, patience=patience)
    tree = worktree(against, logs) if against else ROOT
    try:
        await create_topic(base.kafka_bootstrap_servers, base.topic, PARTITIONS)
        await produce(base.kafka_bootstrap_servers, base.topic, log.records)
        await progress.start()
        backend = await backend_of(base.mongo_url)
        print(
            f"{backend}; {progress.total} records ({threads} threads) on {PARTITIONS} "
            f"partitions, topic {base.topic}; {machine()}; projector logs in {logs}"
            + (f"; against {against} = {commit}" if against else ""),
            flush=True,
        )
        for size in sizes:
            for round_ in range(rounds):
                for name in names if round_ % 2 == 0 else names[::-1]:
                    settings = base.model_copy(
                        update={
                            "consumer_group": f"bench-{run_id}-{name}-{size}-{round_}",
                            "mongo_database": f"bench_{run_id}_{name}_{size}_{round_}",
                        }
                    )
                    at = tree if name == "against" else ROOT
                    result = await measure(name, settings, size, progress, logs, limits, at)
                    results[size][name].append(result)
                    print(
                        f"  {size:>6} stored, {name:<10} {result.steady:>7.0f} events/s steady, "
                        f"{result.wall:>7.0f} overall ({result.done} records in "
                        f"{result.elapsed:.1f}s, first commit after {result.startup:.1f}s; "
                        f"prefill {result.prefill:.1f}s; peak RSS {result.rss:.0f} MiB)",
                        flush=True,
                    )
        about: dict[str, Any] = {"records": progress.total, "threads": threads}
        about |= {"partitions": PARTITIONS, "against": against, "commit": commit}
        return results, about | {"rounds": rounds, "cap": cap, "logs": str(logs)}
    finally:
        await progress.stop()
        await delete_topics(base.kafka_bootstrap_servers, f"bench.{run_id}.")
        if against:
            worktree_removed(tree)


async def backend_of(mongo_url: str) -> str:
    """``FerretDB 2.5.0`` or ``MongoDB 8.0.4``: what answers on ``mongo_url``."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        info = await client.admin.command("buildInfo")
    finally:
        await client.close()
    if "ferretdb" in info:
        return f"FerretDB {info['ferretdb'].get('version', '?')}"
    return f"MongoDB {info['version']}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="300,3000,30000", help="threads already stored")
    parser.add_argument("--threads", type=int, default=1000, help="threads in the log")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each projector per size")
    parser.add_argument("--mongo-url", default=Settings().mongo_url)
    parser.add_argument("--kafka", default=Settings().kafka_bootstrap_servers)
    parser.add_argument(
        "--cap",
        type=float,
        default=60,
        help="stop a run this many seconds after its first commit (the naive projector)",
    )
    parser.add_argument("--patience", type=float, default=600, help="longest run, seconds")
    parser.add_argument(
        "--peers", default="naive", help="naive and/or connector (bench/connector_projector.py)"
    )
    parser.add_argument("--against", help="a git ref whose projector runs as one more peer")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    peers = tuple(args.peers.split(","))
    if unknown := set(peers) - {"naive", "connector"}:
        parser.error(f"unknown peers {sorted(unknown)}: naive, connector")
    results, _ = await suite(
        args.kafka,
        args.mongo_url,
        sizes,
        args.threads,
        args.rounds,
        args.cap,
        args.patience,
        peers,
        args.against,
    )
    report(results, args)
    if "connector" in peers:
        print("\n".join(beside(results, "connector", "connector-style peer")))
    if args.against:
        print("\n".join(beside(results, "against", args.against)))


def beside(results: Results, name: str, label: str) -> list[str]:
    """Per size, threadview's steady rate over peer ``name``'s (medians): the comparison the
    main table leaves out, it being threadview against the naive projector."""
    lines = []
    for size, runs in results.items():
        fast, peer = (median([r.steady for r in runs[n]]) for n in ("threadview", name))
        rss = median([r.rss for r in runs[name]])
        lines.append(
            f"{size:>8} stored: threadview / {label} {ratio(fast, peer):.2f}x "
            f"({fast:,.0f} vs {peer:,.0f} events/s steady; its peak RSS {rss:.0f} MiB)"
        )
    return lines


def report(results: dict[int, dict[str, list[Run]]], args: argparse.Namespace) -> None:
    def rate(size: int, name: str, attribute: str = "steady") -> float:
        return median([getattr(r, attribute) for r in results[size][name]])

    print(
        f"\nevents/s, median of {args.rounds} round(s); steady = between the first commit and the "
        f"last (runs stopped {args.cap:.0f}s after their first commit); overall = from the "
        "process start; store ms = threadview's median store time per batch"
    )
    header = (
        f"{'stored':>8}{'threadview':>12}{'naive':>10}{'ratio':>9}"
        f"{'tv overall':>12}{'naive overall':>15}{'store ms':>10}{'batch':>7}"
        f"  goal >= {GOAL_NAIVE:.0f}x"
    )
    print(header)
    print("-" * len(header))
    if not all("naive" in runs for runs in results.values()):
        return  # the table compares with the naive projector
    for size in results:
        fast, slow = rate(size, "threadview"), rate(size, "naive")
        times = ratio(fast, slow)
        overall = rate(size, "threadview", "wall"), rate(size, "naive", "wall")
        batch = rate(size, "threadview", "store_ms"), rate(size, "threadview", "batch")
        print(
            f"{size:>8}{fmt(fast, 12, 0)}{fmt(slow, 10, 0)}{fmt(times, 9, 1, 'x')}"
            f"{fmt(overall[0], 12, 0)}{fmt(overall[1], 15, 0)}"
            f"{fmt(batch[0], 10, 0)}{fmt(batch[1], 7, 0)}"
            f"  {'ok' if times >= GOAL_NAIVE else 'MISS'}"
        )
    smallest, largest = min(results), max(results)
    flat = ratio(rate(largest, "threadview"), rate(smallest, "threadview"))
    print(
        f"threadview at {largest} / at {smallest} stored: {flat:.2f}x "
        f"(goal: within {GOAL_FLAT}x, i.e. >= {1 / GOAL_FLAT:.2f}x) "
        f"{'ok' if flat >= 1 / GOAL_FLAT else 'MISS'}"
    )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
