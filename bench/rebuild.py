"""Events per second of a rebuild from the whole log, beside the live projector replaying the
same log and beside the store's own bulk-load rate of the rebuilt documents.

    python -m bench.rebuild [--threads 100000] [--events 1000000] [--cap 60] [--rounds 1]
                            [--against GIT-REF]

The log (bench/rebuild_log.py: ``threads`` threads, exactly ``events`` events, deterministic)
is the topic ``bench.rebuild.<threads>.<events>.v<VERSION>`` (6 partitions), produced once and
reused while it holds exactly ``events`` records (~300 bytes each); ``python -m
bench.rebuild_log --delete`` deletes these topics. Each round, each in a fresh database:

1. rebuild: ``python -m consumers.rebuild run --name <fresh> --json`` as a subprocess.
   events/s = records (its last line, ``done``) / wall seconds from its start to its exit;
   records / its own ``seconds.total`` and its phases beside it. Peak RSS: VmRSS summed over
   the process and all its descendants (its workers), sampled every 0.1 s. The view is checked
   against the generated log: one document per thread, as many messages in all.
2. (a) live projector: ``consumers.projector`` from offset 0 into an empty database, measured
   by ``bench.throughput.measure`` exactly as there: the rate between its group's first commit
   and its last, stopped ``--cap`` seconds after the first; the rate from its start beside it.
3. (b) raw load: the rebuilt view's documents — thread documents, activity documents and
   message records (read as raw BSON, untimed) — inserted into empty collections with
   ``insert_many`` (unordered, 1,000 a call, 4 calls in flight), then the indexes created
   (``services.mongo.migration.expand_view``): documents/s, and events/s equivalents = log records
   / insert seconds, and / (insert + index) seconds.

With ``--against REF`` each round also runs (c): the rebuild of another release (a git ref,
checked out in a temporary worktree, run with this venv) on the same log in its own database,
measured as 1., for the cost of a change side by side (e.g. the memory budget against the
release that folded whole partitions in memory).

With ``--rounds`` > 1 the rebuild and (a) alternate in order, and each figure is the median
(min-max), ratios taken within a round. Goals printed beside the figures, never asserted:
rebuild >= 20,000 events/s; >= 10x (a); (b) with indexes / rebuild <= 3; peak RSS <= 1 GiB.
The databases and the (a) runs' dead-letter topic are dropped.

Why this module is longer than ~200 lines: one benchmark whose three measurements (the rebuild,
the live projector on the same log, the store's raw rate) must share the log, the quiet store
and the report to be compared side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from asyncio.subprocess import PIPE
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient

from bench.procs import tree_rss
from bench.rebuild_log import PARTITIONS, delete, messages, publish
from bench.stats import machine, median, ratio
from bench.throughput import ROOT, Progress, backend_of, measure, tail
from bench.worktree import migrate, worktree, worktree_removed
from services.mongo.migration import expand_view
from services.mongo.writes import Layout
from services.settings import Settings
from testkit.processes import settings_env
from testkit.servers import free_port

RAW: CodecOptions[RawBSONDocument] = CodecOptions(document_class=RawBSONDocument)
CHUNK, LOADERS = 1000, 4
GOAL_RATE, GOAL_LIVE, GOAL_RAW, GOAL_RSS = 20_000, 10.0, 3.0, 1024.0  # RSS in MiB
Figures = dict[str, float]


async def rebuild(
    settings: Settings, name: str, log: Path, tree: Path = ROOT
) -> tuple[Figures, dict[str, Any]]:
    """Runs the rebuild CLI (of the checkout ``tree``) to its exit; its figures and its last
    (``done``) line."""
    command = [sys.executable, "-m", "consumers.rebuild", "run", "--name", name, "--json"]
    await migrate(settings, tree)  # the tree's own migrate, if it has one (bench.worktree)
    with log.open("wb") as errors:
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *command, env=settings_env(settings), cwd=tree, stdout=PIPE, stderr=errors
        )
        lines: list[bytes] = []
        reader = asyncio.create_task(_read(process.stdout, lines, started))
        exited, peak = asyncio.create_task(process.wait()), 0
        while not exited.done():
            peak = max(peak, tree_rss(process.pid))
            await asyncio.wait({exited}, timeout=0.1)
        wall = time.perf_counter() - started
        await reader
    done = json.loads(lines[-1]) if lines else {}
    if process.returncode or done.get("event") != "done":
        raise RuntimeError(f"rebuild exited {process.returncode}, last {done}:\n{tail(log)}")
    seconds, records = done["seconds"], done["records"]
    figures = {"rebuild": records / wall, "own": ratio(records, seconds["total"]), "wall": wall}
    figures |= {"rss": peak / 1024, "records": records}
    return figures | {p: seconds.get(p, float("nan")) for p in ("fold", "indexes", "total")}, done


async def _read(stream: asyncio.StreamReader | None, lines: list[bytes], started: float) -> None:
    """Keeps the CLI's lines; shows a progress line every 15 s."""
    assert stream is not None
    shown = started
    async for line in stream:
        lines += [line] if line.strip() else []
        if b'"progress"' in line and time.perf_counter() - shown > 15:
            shown = time.perf_counter()
            print(f"    {shown - started:5.0f}s {line.decode().strip()}", flush=True)


async def raw_load(view: Any, client: AsyncMongoClient[Any], database: str, desc: bool) -> Any:
    """Seconds to insert the view's documents — its threads, their activity and message
    records (services.documents) — into empty collections, then to index them; ``view``: the
    rebuilt view's thread collection (its siblings are found by name)."""
    source = Layout.of(view.database, view.name)
    target = Layout.of(client[database], "threads")
    loads = []
    for found, into in zip(
        (source.threads, source.activity, source.messages),
        (target.threads, target.activity, target.messages),
        strict=True,
    ):
        documents = await found.with_options(codec_options=RAW).find().to_list()
        await client[database].create_collection(into.name)
        loads.append((documents, into.with_options(codec_options=RAW)))
    chunks = iter(
        (documents, start) for documents, _ in loads for start in range(0, len(documents), CHUNK)
    )
    collection_of = {id(documents): into for documents, into in loads}

    async def loader() -> None:
        for documents, start in chunks:  # shared: each call takes the next chunk
            await collection_of[id(documents)].insert_many(
                documents[start : start + CHUNK], ordered=False
            )

    started = time.perf_counter()
    await asyncio.gather(*(loader() for _ in range(LOADERS)))
    inserted = time.perf_counter()
    await expand_view(client[database], "threads", desc)
    indexed = time.perf_counter()
    for documents, loaded in loads:
        stored = await loaded.count_documents({})
        assert stored == len(documents), f"{stored} documents inserted, not {len(documents)}"
    count = sum(len(documents) for documents, _ in loads)
    return (
        count,
        inserted - started,
        indexed - inserted,
        len(await target.threads.index_information()),
    )


async def one_round(r: int, base: Settings, client: Any, progress: Progress, args: Any) -> Figures:
    figures: Figures = {}
    db = f"{base.mongo_database}_{r}"
    steps = ["rebuild", "live"] + (["previous"] if args.tree else [])
    for step in steps if r % 2 == 0 else steps[::-1]:
        if step == "previous":
            settings = base.model_copy(update={"mongo_database": f"{db}_previous"})
            log = args.logs / f"{db}_previous.err"
            found, done = await rebuild(settings, f"prev{r}{args.run_id}", log, args.tree)
            figures |= {"previous": found["rebuild"], "previous_rss": found["rss"]}
            print(
                f"  (c) {args.against} {found['rebuild']:>9,.0f} events/s: {done['records']:,} "
                f"records in {found['wall']:.1f}s wall, phases {done['seconds']}, peak RSS "
                f"{found['rss']:.0f} MiB",
                flush=True,
            )
            await drop(client, f"{db}_previous")
        elif step == "rebuild":
            settings = base.model_copy(update={"mongo_database": db})
            found, done = await rebuild(settings, f"bench{r}{args.run_id}", args.logs / f"{db}.err")
            figures |= found
            names = await client[db].list_collection_names()
            [view] = [n for n in names if n.endswith(done["name"])]  # threads_<name>, only one
            source = client[db].get_collection(view, codec_options=RAW)
            messages = {"_id": None, "m": {"$sum": "$n"}}
            activity = Layout.of(client[db], view).activity
            [totals] = await (await activity.aggregate([{"$group": messages}])).to_list()
            got = (await source.count_documents({}), totals["m"])
            want = (args.threads, args.messages)
            print(
                f"  rebuild  {found['rebuild']:>9,.0f} events/s: {done['records']:,} records in "
                f"{found['wall']:.1f}s wall, phases {done['seconds']}, peak RSS {found['rss']:.0f}"
                f" MiB; view {source.name}: {got[0]:,} threads, {got[1]:,} messages "
                f"({'as generated' if got == want else f'MISMATCH: generated {want}'}); "
                f"memory {done.get('memory')}",
                flush=True,
            )
        else:
            fresh = {"mongo_database": f"{db}_live", "consumer_group": f"{db}_live"}
            settings, caps = base.model_copy(update=fresh), argparse.Namespace(cap=args.cap)
            caps.patience = args.cap + 600  # bench.throughput's limit on a whole run
            live = await measure("threadview", settings, 0, progress, args.logs, caps)
            figures |= {"live": live.steady, "live_overall": live.wall}
            print(
                f"  live     {live.steady:>9,.0f} events/s steady, {live.wall:,.0f} overall "
                f"({live.done:,} records in {live.elapsed:.1f}s, first commit after "
                f"{live.startup:.1f}s; store {live.store_ms:.0f} ms per {live.batch:.0f} records)",
                flush=True,
            )
    documents, insert, index, count = await raw_load(source, client, f"{db}_raw", args.desc)
    records, rate = figures["records"], figures["rebuild"]
    figures |= {"docs": documents / insert, "raw": records / insert, "insert": insert}
    figures |= {"raw_indexed": records / (insert + index), "index": index}
    figures |= {"vs_live": ratio(rate, figures["live"]), "raw_ratio_insert": figures["raw"] / rate}
    figures["raw_ratio"] = figures["raw_indexed"] / rate
    if args.tree:
        figures["vs_previous"] = ratio(rate, figures["previous"])
    print(
        f"  raw load {figures['raw_indexed']:>9,.0f} events/s: {documents:,} documents inserted "
        f"in {insert:.1f}s ({figures['docs']:,.0f}/s), {count} indexes in {index:.1f}s "
        f"(the view has {len(await source.index_information())})",
        flush=True,
    )
    await drop(client, db)
    return figures


async def drop(client: AsyncMongoClient[Any], prefix: str) -> None:
    for name in await client.list_database_names():
        if name.startswith(prefix):
            await client.drop_database(name)


ROWS = (  # label, the figures shown (median of each), digits
    ("rebuild, events/s: records / wall; / its seconds.total", "rebuild own", 0),
    ("(a) live projector, events/s: steady; overall", "live live_overall", 0),
    ("rebuild / (a)", "vs_live", 1),
    ("(b) documents/s inserted", "docs", 0),
    ("(b) events/s: insert + indexes; insert only", "raw_indexed raw", 0),
    ("(b) / rebuild: with indexes; insert only", "raw_ratio raw_ratio_insert", 2),
    ("rebuild peak RSS (process tree), MiB", "rss", 0),
    ("(c) the other release, events/s; its peak RSS, MiB", "previous previous_rss", 0),
    ("rebuild / (c)", "vs_previous", 2),
    ("rebuild seconds: wall; fold; indexes; total", "wall fold indexes total", 1),
    ("(b) seconds: insert; indexes", "insert index", 1),
)
GOALS: dict[str, tuple[str, Callable[[float], bool]]] = {  # first figure of a row: goal, holds
    "rebuild": (f">= {GOAL_RATE:,}", lambda v: v >= GOAL_RATE),
    "vs_live": (f">= {GOAL_LIVE:.0f}x", lambda v: v >= GOAL_LIVE),
    "raw_ratio": (f"<= {GOAL_RAW:.0f}x (with indexes)", lambda v: v <= GOAL_RAW),
    "rss": (f"<= {GOAL_RSS:.0f}", lambda v: v <= GOAL_RSS),
}


def report(rounds: list[Figures]) -> None:
    print(f"\nmedian of {len(rounds)} round(s), (min-max) when several; {machine()}\n")
    print("| figure | value | goal | holds |\n|---|---|---|---|")
    for label, keys, digits in ROWS:
        if any(key not in rounds[0] for key in keys.split()):
            continue  # (c) not run
        texts = []
        for key in keys.split():
            values = [r[key] for r in rounds]
            spread = f" ({min(values):,.{digits}f}-{max(values):,.{digits}f})"
            texts.append(f"{median(values):,.{digits}f}" + spread * (len(values) > 1))
        goal, holds = GOALS.get(keys.split()[0], ("", None))
        first = median([r[keys.split()[0]] for r in rounds])
        verdict = "" if holds is None else "ok" if holds(first) else "MISS"  # NaN: MISS
        print(f"| {label} | {'; '.join(texts)} | {goal} | {verdict} |")


async def suite(
    kafka: str,
    mongo_url: str,
    threads: int,
    events: int,
    rounds: int,
    cap: float,
    against: str | None = None,
) -> tuple[list[Figures], dict[str, Any]]:
    """Publishes the log unless it is there, then ``rounds`` rounds; their figures, and what
    was run."""
    args = argparse.Namespace(threads=threads, events=events, cap=cap, against=against)
    args.messages = messages(threads, events)
    args.logs = Path(tempfile.mkdtemp(prefix="bench-rebuild-"))
    args.run_id = run_id = uuid4().hex[:8]
    topic = await publish(kafka, threads, events)
    base = Settings(
        kafka_bootstrap_servers=kafka,
        mongo_url=mongo_url,
        topic=topic,
        projector_port=free_port(),  # not the port of a projector running beside the bench
    )
    base = base.model_copy(  # the (a) runs' dead letters (none in this log) go to a topic of ours
        update={"dlq_topic": f"{topic}.{run_id}.dlq", "mongo_database": f"bench_rebuild_{run_id}"}
    )
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_url)
    progress = Progress(kafka, topic)
    await progress.start()
    args.tree = worktree(against, args.logs) if against else None
    try:
        backend = await backend_of(mongo_url)
        args.desc = backend.startswith("FerretDB")  # as bootstrap decides
        print(
            f"{backend}; {progress.total:,} records ({threads:,} threads, "
            f"{args.messages:,} messages) on {PARTITIONS} partitions, topic {topic}; "
            f"{machine()}; logs in {args.logs}",
            flush=True,
        )
        rounds_done = []
        for r in range(rounds):
            print(f"round {r + 1} of {rounds}", flush=True)
            rounds_done.append(await one_round(r, base, client, progress, args))
        about = {"threads": threads, "events": events, "messages": args.messages, "topic": topic}
        return rounds_done, about | {"rounds": rounds, "cap": cap, "logs": str(args.logs)}
    finally:
        await drop(client, base.mongo_database)
        await client.close()
        await progress.stop()
        await delete(kafka, base.dlq_topic)
        if args.tree:
            worktree_removed(args.tree)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=100_000, help="threads in the log")
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the log")
    parser.add_argument("--cap", type=float, default=60, help="(a): seconds after 1st commit")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--against", help="(c): a git ref whose rebuild runs beside this one")
    parser.add_argument("--mongo-url", default=Settings().mongo_url)
    parser.add_argument("--kafka", default=Settings().kafka_bootstrap_servers)
    args = parser.parse_args()
    rounds, _ = await suite(
        args.kafka, args.mongo_url, args.threads, args.events, args.rounds, args.cap, args.against
    )
    report(rounds)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
