"""A rebuild interrupted (Ctrl-C) or killed (SIGKILL) mid-way changes nothing live; the next run
resumes and is exact; status lists the leftovers and gc removes them."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from consumers.topics import ensure_topics
from services.failpoints import VARIABLE
from services.mongo.bootstrap import Services
from services.settings import Settings
from services.views import INTERRUPTED
from testkit.kafka import produce
from testkit.logs import Log, generate, reference
from testkit.processes import Process, run_cli
from tests.fault.harness import states_of

pytestmark = pytest.mark.fault
RUN = ("run", "--json", "--workers", "1", "--name")


def wait_for_progress(process: Process, deadline: float = 60) -> None:
    """Until the rebuild has folded some records (its first progress line)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        written = process.output()
        complete = written[: written.rfind("\n") + 1].splitlines()  # not a half-written line
        lines = [json.loads(line) for line in complete if line.startswith("{")]
        if any(line["event"] == "progress" and line["done"] > 0 for line in lines):
            return
        assert process.popen.poll() is None, process.output()
        time.sleep(0.01)
    pytest.fail(f"no progress:\n{process.output()}")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def wait_until_gone(pids: list[int], deadline: float = 10) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if not any(_running(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def _running(pid: int) -> bool:
    try:  # a zombie (exited, not reaped yet: its parent was killed) does not run
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def status(settings: Settings) -> dict[str, Any]:
    shown = run_cli("consumers.rebuild", settings, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    found: dict[str, Any] = json.loads(shown.stdout)
    return found


async def published(settings: Settings, seed: int) -> Log:
    """A generated log of 3,000 threads on the settings' topic."""
    log = generate(seed=seed, threads=3000)
    await ensure_topics(settings)
    await produce(settings.kafka_bootstrap_servers, settings.topic, log.records)
    return log


async def test_a_killed_rebuild_changes_nothing_live_and_the_next_run_resumes(
    settings: Settings, services: Services, run_process: Any
) -> None:
    settings = settings.model_copy(update={"topic_partitions": 6})
    log = await published(settings, 41)
    live_before = [d async for d in services.store.threads.find()]

    # when: a rebuild is interrupted with Ctrl-C, a second one SIGKILLed, both mid-way
    first = run_process("consumers.rebuild", settings, *RUN, "again")
    wait_for_progress(first)
    first.popen.send_signal(signal.SIGINT)
    assert first.popen.wait(30) == 130, first.output()
    assert (await services.catalog.require("again")).state == INTERRUPTED
    stopped = run_process("consumers.rebuild", settings, *RUN, "again")  # resumed, then
    wait_for_progress(stopped)
    stopped.popen.terminate()  # SIGTERM, as a service manager stops it
    assert stopped.popen.wait(30) == 130, stopped.output()
    assert (await services.catalog.require("again")).state == INTERRUPTED
    second = run_process("consumers.rebuild", settings, *RUN, "again")
    wait_for_progress(second)
    workers = children(second.popen.pid)
    second.kill()
    assert workers and wait_until_gone(workers), "a killed rebuild left its workers running"

    # then: the live view and the pointer are as before; status lists the leftover
    assert [d async for d in services.store.threads.find()] == live_before
    assert (await services.catalog.pointer()).live == "main"
    leftover = {v["name"]: v for v in status(settings)["views"]}["again"]
    assert leftover["state"] == "abandoned"
    partial = await services.catalog.require("again")
    assert sum(partial.end.values()) > 0 and len(partial.done) < len(partial.end)

    # and the next run resumes it and folds the whole log exactly
    done = run_cli("consumers.rebuild", settings, "run", "--name", "again", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"resuming again' in done.stdout
    assert await states_of(services, "again") == reference(log)

    # gc removes abandoned rebuilds only: a leftover goes, a ready view stays
    third = run_process("consumers.rebuild", settings, *RUN, "leftover")
    wait_for_progress(third)
    third.kill()
    collected = run_cli("consumers.rebuild", settings, "gc", "--json")
    assert json.loads(collected.stdout) == {"removed": ["leftover"]}, collected.stderr
    names = {v["name"] for v in status(settings)["views"]}
    assert names == {"main", "again"}
    left = await services.database.list_collection_names()
    assert not [name for name in left if name.startswith("threads_leftover")], left


async def test_a_tiny_memory_budget_gives_the_unbounded_view(
    settings: Settings, services: Services
) -> None:
    # given: 3,000 threads on 2 partitions, ~1,500 threads' states a partition
    settings = settings.model_copy(update={"topic_partitions": 2})
    log = await published(settings, 43)

    # when: one rebuild with the default budget, one with 1 MiB of states per worker
    unbounded = run_cli("consumers.rebuild", settings, "run", "--name", "wide", "--json")
    bounded = run_cli(
        "consumers.rebuild", settings, "run", "--name", "narrow", "--memory-mb", "1", "--json"
    )

    # then: the small budget flushed many times a partition, and both are the fold of the log
    assert unbounded.returncode == 0 and bounded.returncode == 0, bounded.stderr
    wide, narrow = (json.loads(p.stdout.splitlines()[-1]) for p in (unbounded, bounded))
    assert wide["memory"]["flushes"] == 2
    assert narrow["memory"]["flushes"] >= 6, narrow["memory"]
    assert narrow["memory"]["states_mb_per_worker"] == 1
    assert narrow["counts"]["merged"] > 0  # threads met in several chunks were merged
    assert {k: narrow["counts"][k] for k in ("records", "events", "rejected", "unknown")} == {
        k: wide["counts"][k] for k in ("records", "events", "rejected", "unknown")
    }
    for name in ("wide", "narrow"):
        assert await states_of(services, name) == reference(log), name
    compared = run_cli("consumers.rebuild", settings, "diff", "wide", "narrow")
    assert compared.returncode == 0, compared.stdout


@pytest.mark.parametrize("failpoint", ["rebuild.flushed:1", "rebuild.flushed:3"])
async def test_a_rebuild_killed_mid_partition_resumes_from_its_checkpoint(
    settings: Settings, services: Services, failpoint: str
) -> None:
    # given: a rebuild with a small budget, SIGKILLed (with its worker) right after a chunk
    # was merged into the view and before its checkpoint was written: the worst moment
    settings = settings.model_copy(update={"topic_partitions": 2})
    log = await published(settings, 44)
    args = ("run", "--name", "cut", "--workers", "1", "--memory-mb", "1", "--json")
    killed = run_cli("consumers.rebuild", settings, *args, env={VARIABLE: failpoint})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr

    # then: the view is abandoned with a checkpoint inside a partition (after the first
    # kill, none yet: the chunk is merged again from the partition's start)
    cut = await services.catalog.require("cut")
    assert {v["name"]: v for v in status(settings)["views"]}["cut"]["state"] == "abandoned"
    inside = [p for p, c in cut.checkpoint.items() if cut.begin[p] < c["offset"] < cut.end[p]]
    assert len(inside) == (0 if failpoint.endswith(":1") else 1), cut.checkpoint
    assert not cut.done

    # and the next run reads on from there and folds the whole log exactly
    done = run_cli("consumers.rebuild", settings, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    merged = sum(c["offset"] - cut.begin[p] for p, c in cut.checkpoint.items())
    assert (summary["resumed_from"] or 0) == merged
    assert summary["counts"]["records"] == len(log.records)
    assert summary["counts"]["rejected"] == len(log.poison)
    assert await states_of(services, "cut") == reference(log)
