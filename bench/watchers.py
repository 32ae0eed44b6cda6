"""The watch's cost: 1,000 idle watchers of GET /v1/threads/watch on one API process, beside
what a team would deploy otherwise: the same clients polling GET /v1/threads (same filters).

    python -m bench.watchers [--watchers 1000] [--seconds 30] [--poll-seconds 1] [--rate 10]

Projector and API run as processes (fresh topic, group and database, dropped after); the clients
are spread over 8 organizations, 16 per service key of their organization (the per-key cap, left
at its default), each filtering by it. A fresh API process per side, so each side's memory is
its own, each window ``--seconds``. Watchers (httpx, this process): the API idle; all watching
(each got ``position``), nothing published; ``--rate`` messages/s, each to a seeded thread not
written before, whose fan-out runs from its produce acknowledgement until the last watcher of its
organization got its ``thread`` event. Pollers (wrk, one connection each): the API idle; each
polling every ``--poll-seconds`` (jittered 0.5-1.5x, after its answer), ``--rate`` messages/s
published; their freshness is computed: half the time between two answered polls. CPU: utime +
stime (/proc/<pid>/stat) over a window, % of one core: the API, the store (FerretDB on 27017,
PostgreSQL and its backends: scripts/stack's pid files), Kafka and the clients. ``--out DIR``:
watchers.json.

Why this module is longer than ~250 lines: two sides of one comparison, each with its own client
(wrk's script for the pollers is here: one file), measured alike and printed in one table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
from aiokafka import AIOKafkaProducer

from bench.freshness import drop_leftovers, fresh_run, load, now_iso, wait_ready
from bench.procs import tree_rss
from bench.stats import machine, percentile
from bench.worktree import ROOT, TreeProcess, keys
from consumers.sample import cloud_event
from consumers.topics import ensure_topics
from services.mongo.bootstrap import bootstrap
from services.settings import Settings, get_settings

ORGS = [f"org_w{n}" for n in range(8)]
RUN = ROOT / ".cache" / "run"  # scripts/stack's pid files
STACK = {
    "store": ("ferretdb.pid", "postgres-documentdb/data/postmaster.pid"),
    "kafka": ("kafka.pid",),
}
Plan = list[tuple[str, str]]  # (organization, key) per client; (thread, organization) per thread


def cpu_seconds(pid: int) -> float:
    """User + system seconds of ``pid``, its descendants and the children it reaped."""
    ticks, pending = 0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError, ValueError):  # a process that ended meanwhile
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
            if current == pid:
                ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_now(pids: dict[str, list[int]]) -> dict[str, float]:
    found = {name: sum(cpu_seconds(pid) for pid in group) for name, group in pids.items()}
    return {"clients": time.process_time()} | found


async def measured(api: int, seconds: float, clients: int | None = None) -> dict[str, float]:
    """CPU (% of one core) over ``seconds`` of the API, the store, Kafka and the clients (this
    process, or the process ``clients``); the API's RSS (MiB) at the end."""
    pids = {"api": [api]} | ({"clients": [clients]} if clients else {})
    for name, files in STACK.items():
        pids[name] = [int((RUN / f).read_text().split()[0]) for f in files if (RUN / f).exists()]
    before, started = cpu_now(pids), time.monotonic()
    await asyncio.sleep(seconds)
    after, spent = cpu_now(pids), time.monotonic() - started
    found = {f"cpu_{name}": 100 * (after[name] - before[name]) / spent for name in before}
    return found | {"rss_api": tree_rss(api) / 1024}


class Watchers:
    """What the watchers received: how many started, events by kind, each thread's arrivals."""

    def __init__(self) -> None:
        self.positioned = 0
        self.kinds: Counter[str] = Counter()
        self.arrivals: dict[str, list[float]] = {}

    async def watch(self, client: httpx.AsyncClient, org: str) -> None:
        params = {"organization_id": org}
        async with client.stream("GET", "/v1/threads/watch", params=params) as response:
            if response.status_code != 200:
                body = (await response.aread())[:300]
                raise RuntimeError(f"the watch answered {response.status_code}: {body!r}")
            kind = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.kinds[kind] += 1
                    self.positioned += kind == "position"
                    if kind == "thread":
                        thread = json.loads(line[6:])["id"]
                        self.arrivals.setdefault(thread, []).append(time.monotonic())
                    elif kind == "reset":
                        raise RuntimeError(f"a watcher was reset: {line}")


async def publish(settings: Settings, kind: str, threads: Plan, rate: float) -> dict[str, float]:
    """One ``kind`` event to each of ``threads``, ``rate`` a second, each acknowledged (acks=all)
    before the next; when each thread's was."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    acked: dict[str, float] = {}
    started = time.monotonic()
    try:
        for n, (thread, org) in enumerate(threads):
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            data = {"organization_id": org, "user_id": "usr_w"}
            if kind == "thread.message_added":
                data = {"message_id": uuid4().hex[:8]}
            value = json.dumps(cloud_event(kind, thread, now_iso(), data)).encode()
            await producer.send_and_wait(settings.topic, value, thread.encode())
            acked[thread] = time.monotonic()
    finally:
        await producer.stop()
    return acked


async def seeded(settings: Settings, admin: str, threads: Plan) -> None:
    """Creates ``threads`` and waits until the API lists them all."""
    await publish(settings, "thread.created", threads, math.inf)
    params: dict[str, str | int] = {"include_total": "true", "limit": 1}
    async with httpx.AsyncClient(base_url=url(settings), headers={"X-API-Key": admin}) as api:
        deadline = time.monotonic() + 120
        while (await api.get("/v1/threads", params=params)).json().get("total") != len(threads):
            if time.monotonic() > deadline:
                raise RuntimeError("the projector did not apply the seed threads in 120 s")
            await asyncio.sleep(0.2)


async def client_keys(settings: Settings, count: int) -> Plan:
    """Client n is of ``ORGS[n % 8]``; each 16 clients of an organization share a key."""
    services = await bootstrap(settings)
    made: dict[tuple[str, int], str] = {}
    plan: Plan = []
    try:
        for n in range(count):
            org = ORGS[n % len(ORGS)]
            slot = (org, n // len(ORGS) // settings.api_max_watchers_per_key)
            if slot not in made:
                made[slot] = (await services.keys.create("service", [org]))[1]
            plan.append((org, made[slot]))
    finally:
        await services.close()
    return plan


def url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.api_port}"


@contextlib.asynccontextmanager
async def api_process(settings: Settings, log: Path, admin: str) -> AsyncIterator[int]:
    """A fresh API process, ready and having answered one list; its pid."""
    api = TreeProcess("api.main", settings, log, ROOT)
    try:
        async with httpx.AsyncClient(base_url=url(settings), headers={"X-API-Key": admin}) as c:
            await wait_ready(c)
            await c.get("/v1/threads", params={"organization_id": ORGS[0]})
        yield api.popen.pid
    finally:
        api.stop()


def fan_out(acked: dict[str, float], got: Watchers, audience: dict[str, int]) -> dict[str, float]:
    """Per probe: until the last watcher of its organization got it (inf: not all did), and
    until each watcher got it."""
    last, each = [], []
    for thread, at in acked.items():
        times = got.arrivals.get(thread, [])
        each += [t - at for t in times]
        last.append(max(times) - at if len(times) >= audience[thread] else math.inf)
    figures = {"last_p50": percentile(last, 50), "last_p99": percentile(last, 99)}
    figures |= {"each_p50": percentile(each, 50), "each_p99": percentile(each, 99)}
    return figures | {"probes": len(acked), "complete": sum(not math.isinf(t) for t in last)}


async def watch_side(settings: Settings, api: int, plan: Plan, threads: Plan, args: Any) -> Any:
    found: dict[str, Any] = {"idle": await measured(api, args.seconds)}
    unbounded = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    http = {  # one client per key, a connection for each of its watchers
        key: httpx.AsyncClient(
            base_url=url(settings), headers={"X-API-Key": key}, timeout=30, limits=unbounded
        )
        for key in {key for _, key in plan}
    }
    got, started = Watchers(), time.monotonic()
    tasks = [asyncio.create_task(got.watch(http[key], org)) for org, key in plan]
    try:
        while got.positioned < len(plan):
            for task in (t for t in tasks if t.done()):  # refused or ended: why
                raise RuntimeError(f"a watch ended before the benchmark: {task.exception()!r}")
            if time.monotonic() - started > 120:
                raise RuntimeError(f"{got.positioned} of {len(plan)} watchers started in 120 s")
            await asyncio.sleep(0.05)
        found["connect_s"] = time.monotonic() - started
        probes = threads[: int(args.rate * args.seconds)]
        for phase, sent in (("watchers", []), ("busy", probes)):
            counted = got.kinds.copy()
            publishing = asyncio.create_task(
                publish(settings, "thread.message_added", sent, args.rate)
            )
            found[phase] = await measured(api, args.seconds)
            acked = await publishing
            await asyncio.sleep(3 if sent else 0)  # the last probes' fan-out
            found[phase]["events_per_s"] = {
                k: (n - counted[k]) / args.seconds for k, n in got.kinds.items()
            }
        per_org = Counter(org for org, _ in plan)
        found["busy"] |= fan_out(acked, got, {thread: per_org[org] for thread, org in threads})
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(client.aclose() for client in http.values()))
    return found


POLLERS = """-- the pollers (bench/watchers.py): args every_ms, then organization, key per client.
-- Requests go round the clients; a connection's next is sent every_ms (0.5-1.5x, jittered) after
-- its answer; the summary is one JSON line: [status, count] per thread, errors, p50 (us).
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args)
  every, clients, n, statuses = tonumber(args[1]), {}, 0, {}
  for i = 2, #args, 2 do table.insert(clients, {args[i], args[i + 1]}) end
end
request = function()
  n = n + 1
  local client = clients[n % #clients + 1]
  local headers = {["X-API-Key"] = client[2]}
  return wrk.format("GET", "/v1/threads?organization_id=" .. client[1], headers)
end
response = function(status) statuses[status] = (statuses[status] or 0) + 1 end
delay = function() return math.floor(every * (0.5 + math.random())) end
done = function(summary, latency, requests)
  local found, e = {}, summary.errors
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      table.insert(found, string.format("[%d, %d]", status, count))
    end
  end
  io.write(string.format('{"seconds": %f, "p50_us": %d, "errors": %d, "statuses": [%s]}\\n',
    summary.duration / 1e6, latency:percentile(50), e.connect + e.read + e.write + e.timeout,
    table.concat(found, ", ")))
end
"""


async def poll_side(
    settings: Settings, api: int, plan: Plan, threads: Plan, args: Any, logs: Path
) -> Any:
    """wrk, one connection per client, each polling every ``--poll-seconds`` on average."""
    found: dict[str, Any] = {"idle": await measured(api, args.seconds)}
    (logs / "pollers.lua").write_text(POLLERS)
    every = str(round(args.poll_seconds * 1000))
    wrk = await asyncio.create_subprocess_exec(
        *("wrk", "-t2", f"-c{len(plan)}", f"-d{args.seconds:.0f}s", "--timeout", "30s"),
        *("-s", str(logs / "pollers.lua"), url(settings), "--", every),
        *(part for client in plan for part in client),
        stdout=asyncio.subprocess.PIPE,
    )
    sent = threads[: int(args.rate * args.seconds)]
    publishing = asyncio.create_task(publish(settings, "thread.message_added", sent, args.rate))
    found["pollers"] = window = await measured(api, args.seconds, wrk.pid)
    out, _ = await wrk.communicate()
    await publishing
    summary = json.loads(out.decode().strip().splitlines()[-1])
    statuses: Counter[int] = Counter()
    for status, count in summary["statuses"]:  # per wrk thread
        statuses[status] += count
    window["ok_per_s"] = statuses.pop(200, 0) / summary["seconds"]
    window["shed_per_s"] = statuses.pop(503, 0) / summary["seconds"]
    window["failed_per_s"] = (statuses.total() + summary["errors"]) / summary["seconds"]
    window["request_p50"] = summary["p50_us"] / 1e6  # of every answer, 503s too
    answered = window["ok_per_s"] / max(window["ok_per_s"] + window["shed_per_s"], 1e-9)
    # computed: a poller's 200s come every poll-seconds / answered; a change waits half of that
    window["fresh_mean"] = args.poll_seconds / 2 / max(answered, 1e-9) + window["request_p50"]
    return found


async def measure(base: Settings, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    async with fresh_run(base, "watchers") as settings:
        await ensure_topics(settings)
        every_org = [part for org in ORGS for part in ("--org", org)]
        admin = (await keys(settings, ROOT, "create", "--service", *every_org)).split()[0]
        plan = await client_keys(settings, args.watchers)
        per_org = math.ceil(args.rate * args.seconds / len(ORGS)) + 1
        threads = [(f"thrd_{org}_{n}", org) for n in range(per_org) for org in ORGS]
        projector = TreeProcess("consumers.projector", settings, logs / "projector.log", ROOT)
        found: dict[str, Any] = {"keys": len({key for _, key in plan}), "threads": len(threads)}
        try:
            async with api_process(settings, logs / "api-watch.log", admin) as api:
                await seeded(settings, admin, threads)
                found["watch"] = await watch_side(settings, api, plan, threads, args)
            async with api_process(settings, logs / "api-poll.log", admin) as api:
                found["poll"] = await poll_side(settings, api, plan, threads, args, logs)
        finally:
            projector.stop()
        return found


def cells(r: dict[str, Any], idle: dict[str, Any] | None, clients: int) -> dict[str, str]:
    """One column of the table: a window's figures by row (``idle``: its side's baseline)."""

    def ms(low: str, high: str) -> str:
        return f"{r[low] * 1000:.0f} / {r[high] * 1000:.0f}" if low in r else "-"

    requests = "-"
    if "ok_per_s" in r:
        requests = f"{r['ok_per_s']:.0f} / {r['shed_per_s']:.0f} / {r['failed_per_s']:.0f}"
    fresh = f"{r['fresh_mean']:.1f} s mean" if "fresh_mean" in r else ms("each_p50", "each_p99")
    events = ", ".join(f"{n:.0f} {kind}" for kind, n in r.get("events_per_s", {}).items() if n)
    return {
        "API RSS, MiB": f"{r['rss_api']:.1f}",
        "KiB per client": f"{(r['rss_api'] - idle['rss_api']) * 1024 / clients:.1f}"
        if idle
        else "-",
        "API CPU, % of a core": f"{r['cpu_api']:.1f}",
        "store CPU (FerretDB + PostgreSQL), %": f"{r['cpu_store']:.1f}",
        "Kafka CPU, %": f"{r['cpu_kafka']:.1f}",
        "clients' CPU (watchers: this process; pollers: wrk), %": f"{r['cpu_clients']:.1f}",
        "requests/s answered 200 / 503 / failed": requests,
        "events/s to the clients": events or "-",
        "to the last watcher, p50 / p99 ms": ms("last_p50", "last_p99"),
        "freshness at a client, p50 / p99 ms (pollers: computed)": fresh,
    }


def report(found: dict[str, Any], args: argparse.Namespace) -> list[str]:
    watch, polls, n, rate = found["watch"], found["poll"], args.watchers, args.rate
    columns = {
        "API idle": cells(watch["idle"], None, n),
        f"{n:,} watchers, idle": cells(watch["watchers"], watch["idle"], n),
        f"{n:,} watchers, {rate:g} msg/s": cells(watch["busy"], watch["idle"], n),
        "fresh API idle": cells(polls["idle"], None, n),
        f"{n:,} pollers every {args.poll_seconds:g} s, {rate:g} msg/s": cells(
            polls["pollers"], polls["idle"], n
        ),
    }
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in columns["API idle"]:
        lines.append(f"| {row} | " + " | ".join(c[row] for c in columns.values()) + " |")
    busy = watch["busy"]
    lines.append(
        f"{busy['complete']} of {busy['probes']} probes reached all their organization's watchers;"
        f" {found['keys']} keys; all {n:,} watching {watch['connect_s']:.1f} s after the first"
    )
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument("--rate", type=float, default=10, help="messages/s published when busy")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    settings = get_settings()
    dropped = await drop_leftovers(settings.mongo_url)
    print(f"dropped {len(dropped)} leftover databases; {machine()}", flush=True)
    logs = Path(tempfile.mkdtemp(prefix="bench-watchers-"))
    found = {"args": vars(args) | {"out": str(args.out)}, "load_before": load()}
    found |= await measure(settings, args, logs)
    found["load_after"] = load()
    print("\n".join(report(found, args)))
    print(
        f"load average before {found['load_before']}, after {found['load_after']}; logs in {logs}"
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "watchers.json").write_text(json.dumps(found, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
