"""Builds a view from the log: every partition replayed from its first record, in parallel.

Reads outside any consumer group (the live projector is untouched) and read committed, from
the first offsets to the end offsets captured at the start (or, with ``as_was``, to the first
record appended after that time). Each worker process folds a partition with the same fold as
the projector, holding states up to its share of the memory budget, then merges them into the
view (consumers.replay.load_partition) and records a checkpoint; the view's collections and
indexes are created by the migration's code (services.mongo.migration.expand_view: a rebuild runs
with the admin's store credential), the indexes after the load (on FerretDB before it). A
thread whose records sit on several partitions is merged from all of them, so the view is the
fold of the whole log however the records were partitioned. The catalog entry
records the offsets, the checkpoints and the progress, so an interrupted rebuild resumes where
it stopped, inside a partition (``run --name`` again), or is removed by ``gc``. The catalog's
rules (a new entry or one to resume, checkpoints, what is abandoned) are services.rebuild's.

Why this module is longer than ~200 lines: the build's whole protocol (capture the offsets,
start or resume the entry, run the workers, collect their checkpoints, mark the view ready)
and its resume argument read in one place; the catalog's rules are services.rebuild's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any

from consumers.progress import Reporter
from consumers.replay import (
    Job,
    Tally,
    init_worker,
    rebuild_partition,
    retrying,
    worker_context,
)
from consumers.topics import reader, topic_offsets
from services import owners
from services.mongo.bootstrap import Services
from services.mongo.migration import expand_view
from services.mongo.store import transient
from services.rebuild import abandoned as abandoned  # tests/unit/test_views.py imports it here
from services.rebuild import checkpoint, truncation_warning
from services.rebuild import start as start_or_resume
from services.views import FAILED, INTERRUPTED, READY, View, check_name

HEARTBEAT = owners.HEARTBEAT  # seconds between progress writes to the catalog

# The memory budget (run --memory-mb) is for all of the rebuild's processes: each worker gets
# an equal share of what the rebuild's own process leaves, keeps WORKER_MB of it for itself
# (the interpreter, the drivers, a fetch in flight: measured ~110 MiB) and holds fold states
# up to the rest, at least MIN_STATES_MB, before merging them into the view.
DEFAULT_MEMORY_MB, MAIN_MB, WORKER_MB, MIN_STATES_MB = 768, 150, 150, 1


def states_budget(memory_mb: int, workers: int) -> int:
    """The bytes of fold states each of ``workers`` holds before it merges them into the view."""
    return max(MIN_STATES_MB, (memory_mb - MAIN_MB) // workers - WORKER_MB) * 1024 * 1024


async def run(
    services: Services,
    name: str,
    reporter: Reporter,
    as_of: datetime | None = None,
    as_was: datetime | None = None,
    workers: int = 2,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> dict[str, Any]:
    """Build (or resume building) the view ``name``; return its summary.

    Raises:
        ViewError: the name is taken by a ready view or by a rebuild still running, or a
            resumed rebuild was asked for other times than it started with.
    """
    catalog = services.catalog
    started = time.monotonic()
    view = await _start(services, check_name(name), as_of, as_was, reporter)
    store = services.store_of(view)
    start = {p: checkpoint(view, p) for p in view.end}
    pending = sorted(  # the most left to read first
        (p for p in view.end if start[p] < view.end[p]),
        key=lambda p: view.end[p] - start[p],
        reverse=True,
    )
    total = sum(view.end[p] - view.begin[p] for p in view.end)
    already = sum(start[p] - view.begin[p] for p in view.end)
    workers = max(1, min(workers, len(pending)))
    budget = states_budget(memory_mb, workers)
    peak: list[int] = []
    database, descending = services.database, services.descending_indexes
    try:
        # the view's collections and indexes come from the migration's code (the same DDL as
        # threadview-admin migrate, so a rebuild runs with the admin's store credential).
        # DocumentDB builds an index on one core while the other idles, ~27 s for the list
        # indexes of 100,000 threads; since messages no longer write thread documents (fold
        # version 3), keeping the indexes up during the fold costs less than that
        await expand_view(database, view.collection, descending, indexes=descending)
        reporter.phase("fold", total)
        results = await _load(services, view, pending, start, workers, budget, already, reporter)
        peak = [result["peak_rss_mb"] for result in results.values()]
        fold_seconds = time.monotonic() - started
        reporter.phase("indexes")
        await expand_view(database, view.collection, descending)
        threads = await store.threads.count_documents({})
        spread = await store.spread()
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt | asyncio.CancelledError)
        with contextlib.suppress(Exception):
            await catalog.update(
                view.name,
                state=INTERRUPTED if interrupted else FAILED,
                error=None if interrupted else repr(exc),
            )
        raise
    tally = _tally(await catalog.require(view.name))
    seconds = time.monotonic() - started
    await catalog.update(
        view.name,
        state=READY,
        reached=view.end,
        finished_at=datetime.now(UTC),
        counts=tally.as_dict(),
        progress={"seconds": round(seconds, 1)},
        error=None,
    )
    return {
        "name": view.name,
        "collection": view.collection,
        "as_of": as_of,
        "as_was": as_was,
        "records": total,
        "events": tally.events,
        "threads": threads,
        "threads_on_several_partitions": spread,
        "counts": tally.as_dict(),
        "memory": {
            "budget_mb": memory_mb,
            "workers": workers,
            "states_mb_per_worker": budget // 2**20,
            "flushes": tally.flushes,
            "peak_rss_mb": {
                "rebuild": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                "worker": max(peak, default=None),
            },
        },
        "resumed_from": already or None,
        "per_second": round(total / seconds) if seconds else None,
        "seconds": {
            "fold": round(fold_seconds, 1),
            "indexes": round(seconds - fold_seconds, 1),
            "total": round(seconds, 1),
        },
    }


def _tally(view: View) -> Tally:
    """The whole rebuild's tally: the sum of its partitions' checkpoints."""
    total = Tally() if view.checkpoint else Tally(**view.counts)  # an entry from before them
    for found in view.checkpoint.values():
        total.add(Tally(**found["counts"]))
    return total


async def _start(
    services: Services,
    name: str,
    as_of: datetime | None,
    as_was: datetime | None,
    reporter: Reporter,
) -> View:
    """A new catalog entry with the topic's offsets now, or the one of a rebuild to resume
    (services.rebuild.start)."""
    settings = services.settings
    consumer = reader(settings)
    await consumer.start()
    try:
        offsets = await topic_offsets(consumer, settings.topic, as_was)
    finally:
        await consumer.stop()
    if warning := truncation_warning(settings.topic, offsets.truncated()):
        reporter.note(warning)
    return await start_or_resume(
        services.catalog,
        name,
        settings.topic,
        offsets.begin,
        offsets.end,
        as_of,
        as_was,
        reporter.note,
    )


async def _load(
    services: Services,
    view: View,
    pending: list[int],
    start: dict[int, int],
    workers: int,
    budget: int,
    done: int,
    reporter: Reporter,
) -> dict[int, dict[str, Any]]:
    """Run the partitions on ``workers`` processes, reporting progress and heartbeats; return
    each partition's result (consumers.replay.load_partition)."""
    context = worker_context()
    queue = context.Queue()
    loop = asyncio.get_running_loop()
    executor = ProcessPoolExecutor(workers, context, init_worker, (queue, os.getpid()))
    futures: dict[asyncio.Future[dict[str, Any]], int] = {}
    results: dict[int, dict[str, Any]] = {}
    finished_all = False
    try:
        for p in pending:
            counts = (
                view.checkpoint.get(p, {}).get("counts", {}) if start[p] > view.begin[p] else {}
            )
            job = Job(
                view.name, view.collection, p, start[p], view.end[p], view.as_of, budget, counts
            )
            submitted: Future[dict[str, Any]] = executor.submit(
                rebuild_partition, services.settings, job
            )
            futures[asyncio.wrap_future(submitted, loop=loop)] = p
        remaining = set(futures)
        beat = 0.0
        while remaining:
            finished, remaining = await asyncio.wait(remaining, timeout=0.25)
            while not queue.empty():
                done += queue.get_nowait()[1]
            for future in finished:
                results[futures[future]] = future.result()
                view.done.append(futures[future])
                await retrying(lambda: services.catalog.update(view.name, done=view.done))
            reporter.advance(done)
            if time.monotonic() - beat > HEARTBEAT:
                beat = time.monotonic()
                await _heartbeat(services, view.name, reporter)
        finished_all = True
    finally:
        if not finished_all:  # Ctrl-C or an error: no worker may write on afterwards
            for process in list((getattr(executor, "_processes", None) or {}).values()):
                process.terminate()
        executor.shutdown(wait=finished_all, cancel_futures=True)
    return results


async def _heartbeat(services: Services, name: str, reporter: Reporter) -> None:
    try:
        await services.catalog.update(
            name, heartbeat_at=datetime.now(UTC), progress=reporter.snapshot()
        )
    except Exception as exc:
        if not transient(exc):
            raise  # else the next one may get through; the workers wait for the store too
