"""A real Prometheus over the projector and the API, for the dashboard's check
(tests/e2e/test_dashboard.py) and its picture (docs/grafana/draw.py).

The binaries are `scripts/stack prometheus`'s (built once into .cache/). :func:`running` writes a
prometheus.yml with one scrape job per target, checks it with promtool, starts Prometheus on a
free loopback port with its data in a folder of the caller's and stops it by PID. The
dashboard's queries are read from docs/grafana/threadview.json with its variables filled in as
Grafana does (:func:`substitute`); :func:`drive` makes the traffic both look at.

Why this module is longer than ~200 lines: starting, querying and stopping a real Prometheus and
the load that gives every dashboard panel data, shared by the dashboard's test and
docs/grafana/draw.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from testkit.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docs" / "grafana" / "threadview.json"
# the scrape jobs: the dashboard's variables find them by their metrics (label_values(metric, job))
PROJECTOR_JOB, API_JOB = "threadview-projector", "threadview-api"

Series = list[dict[str, Any]]  # a query's result: [{"metric": {...}, "values": [[t, "v"], ...]}]


def binaries() -> tuple[Path, Path]:
    """prometheus and promtool, built by scripts/stack on the first call (its log on stderr)."""
    out = subprocess.run(
        [ROOT / "scripts" / "stack", "prometheus"], check=True, stdout=subprocess.PIPE, text=True
    ).stdout.split()
    return Path(out[-2]), Path(out[-1])


class PrometheusError(Exception):
    """Prometheus answered a query with an error."""


class Client:
    """A Prometheus' HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def api(self, path: str, **params: Any) -> Any:
        body = self.http.get(f"/api/v1/{path}", params=params).json()
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def targets_up(self) -> dict[str, str]:
        """Each scrape job's health (of its last target)."""
        return {t["labels"]["job"]: t["health"] for t in self.api("targets")["activeTargets"]}

    def query_range(self, expr: str, start: float, end: float, step: float) -> Series:
        data = self.api("query_range", query=expr, start=start, end=end, step=step)
        result: Series = data["result"]
        return result

    def exposes(self, job: str, metric: str) -> bool:
        """Whether the job's target sent this metric's family (its HELP/TYPE lines count, so a
        labelled counter never incremented counts too)."""
        names = {metric, re.sub(r"_(total|bucket|count|sum)$", "", metric)}
        return any(
            self.api("targets/metadata", match_target=f'{{job="{job}"}}', metric=name)
            for name in names
        )


class Prometheus(Client):
    """A Prometheus server of our own, on a free loopback port."""

    def __init__(self, binary: Path, config: Path, data: Path, log: Path) -> None:
        super().__init__(f"http://127.0.0.1:{free_port()}")
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={data}",
                    f"--web.listen-address={self.url.removeprefix('http://')}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait(self, ready: Any, what: str, seconds: float = 60) -> None:
        """Until ``ready()`` is true; fails after ``seconds`` or when Prometheus exits."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                if ready():
                    return
            except httpx.HTTPError:
                pass
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Prometheus: {what}\n{self.log.read_text(errors='replace')}")
            time.sleep(0.25)

    def stop(self) -> None:
        self.http.close()
        if self.popen.poll() is None:
            self.popen.terminate()  # by its PID: nothing else of that name is touched
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@contextmanager
def running(targets: dict[str, str], folder: Path, interval: float = 1) -> Iterator[Prometheus]:
    """Prometheus scraping ``targets`` (job name: host:port of /metrics) every ``interval``
    seconds, its config, data and log in ``folder``; ready when this yields."""
    prometheus, promtool = binaries()
    config = folder / "prometheus.yml"
    config.write_text(  # JSON is YAML
        json.dumps(
            {
                "global": {"scrape_interval": f"{interval:g}s"},
                "scrape_configs": [
                    {"job_name": job, "static_configs": [{"targets": [target]}]}
                    for job, target in targets.items()
                ],
            },
            indent=2,
        )
    )
    check = subprocess.run(
        [promtool, "check", "config", config], capture_output=True, text=True, timeout=60
    )
    if check.returncode != 0:
        raise RuntimeError(f"promtool check config {config}:\n{check.stdout}{check.stderr}")
    server = Prometheus(prometheus, config, folder / "data", folder / "prometheus.log")
    try:
        server.wait(lambda: server.http.get("/-/ready").status_code == 200, "not ready")
        yield server
    finally:
        server.stop()


# --- the dashboard's queries -----------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    panel: str
    ref: str
    expr: str
    legend: str


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel with queries, those of collapsed rows too, in the dashboard's order."""
    found = []
    for panel in dashboard["panels"]:
        found += [p for p in [panel, *panel.get("panels", [])] if p.get("targets")]
    return found


def queries(panel: dict[str, Any]) -> list[Query]:
    return [
        Query(panel["title"], t["refId"], t["expr"], t.get("legendFormat", ""))
        for t in panel["targets"]
    ]


def variables(server: Client, dashboard: dict[str, Any]) -> dict[str, list[str]]:
    """Each query variable's values, as Grafana finds them: label_values(metric, label)."""
    found = {}
    for var in dashboard["templating"]["list"]:
        m = re.fullmatch(r"label_values\((\w+), *(\w+)\)", var["definition"])
        assert m, f"variable {var['name']}: {var['definition']}"
        metric, label = m.groups()
        found[var["name"]] = server.api(f"label/{label}/values", **{"match[]": metric})
    return found


def rate_interval(step: float, scrape: float) -> float:
    """Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval)."""
    return max(step + scrape, 4 * scrape)


def regex_escape(value: str) -> str:
    """A value in a regex inside a PromQL string, as Grafana writes it: each regex
    metacharacter after a backslash, itself escaped for the string (a bare backslash before
    another character is a PromQL error)."""
    return re.sub(r"[\\^$.|?*+()\[\]{}]", lambda m: "\\\\" + m[0].replace("\\", "\\\\"), value)


def substitute(expr: str, values: dict[str, list[str]], step: float, scrape: float) -> str:
    """The expression Grafana sends: a variable's values as a regex (v1|v2, escaped by
    :func:`regex_escape`), $__interval the
    step, $__rate_interval after :func:`rate_interval`. Fails on a variable it does not know."""
    builtins = {
        "__rate_interval": f"{rate_interval(step, scrape):g}s",
        "__interval": f"{step:g}s",
        **{name: "(" + "|".join(map(regex_escape, vs)) + ")" for name, vs in values.items()},
    }

    def value(m: re.Match[str]) -> str:
        name = m[1] or m[2]
        if name not in builtins:
            raise KeyError(f"unknown dashboard variable ${name} in {expr}")
        return builtins[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def legend(fmt: str, labels: dict[str, str]) -> str:
    if not fmt:
        return "{" + ", ".join(f"{k}={v}" for k, v in labels.items()) + "}"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), fmt).strip()


def finite(series: Series) -> int:
    """How many of the points are numbers (histogram_quantile over no increments is NaN)."""
    return sum(math.isfinite(float(v)) for s in series for _, v in s["values"])


# --- the load --------------------------------------------------------------------------------

KINDS = {"thread.message_added": 85, "thread.updated": 8, "thread.pinned": 3, "thread.unpinned": 3}
UNKNOWN = "thread.archived"  # not in contract v1: skipped, counted by type


async def drive(
    kafka: str,
    topic: str,
    api: str,
    key: str,
    seconds: float,
    rate: float = 300,
    poison: float = 0.01,
    unknown: float = 0.01,
    api_rate: float = 3,
    org: str = "org_e2e",
) -> Counter[str]:
    """For ``seconds``: ~``rate`` records/s over 200 threads (``poison`` of them bad, ``unknown``
    of an unknown type) and ~``api_rate`` API calls/s, some of them refused (400, 401, 404).
    Returns what was sent: records by kind, API answers by status."""
    from aiokafka import AIOKafkaProducer

    from consumers.sample import cloud_event

    sent: Counter[str] = Counter()
    rng = random.Random()
    run = f"{time.time_ns() % 10**9:09d}"
    threads = [f"thrd_load{run}_{n:03d}" for n in range(200)]
    created: set[str] = set()
    headers = [("content-type", b"application/cloudevents+json")]

    def record(tid: str) -> tuple[bytes, str]:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if tid not in created:
            created.add(tid)
            data = {"organization_id": org, "user_id": "usr_load", "title": f"Load {tid}"}
            return json.dumps(cloud_event("thread.created", tid, now, data)).encode(), "created"
        draw = rng.random()
        if draw < poison / 2:
            return b"{not json", "poison"
        if draw < poison:  # data.message_id missing: invalid_event
            event = cloud_event("thread.message_added", tid, now, {"role": "user"})
            return json.dumps(event).encode(), "poison"
        if draw < poison + unknown:
            return json.dumps(cloud_event(UNKNOWN, tid, now, {})).encode(), "unknown"
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        data = {"message_id": f"msg_{run}_{sent['records']}", "role": "user"}
        event = cloud_event(kind, tid, now, data if kind == "thread.message_added" else {})
        return json.dumps(event).encode(), kind

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=5)
        await producer.start()
        try:
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) < seconds:
                futures = []
                for _ in range(int(elapsed * rate) - sent["records"]):
                    tid = rng.choice(threads)
                    value, kind = record(tid)
                    futures.append(await producer.send(topic, value, tid.encode(), headers=headers))
                    sent["records"] += 1
                    sent[kind] += 1
                await asyncio.gather(*futures)
                await asyncio.sleep(0.05)
        finally:
            await producer.stop()

    async def call() -> None:
        calls = [
            ("/v1/threads", True),
            ("/v1/threads?limit=5&include_total=true", True),
            ("/v1/threads?limit=1000", True),  # out of range: 400
            ("/v1/threads/thrd_no_such_thread", True),  # 404
            ("/v1/threads", False),  # no key: 401
        ]
        async with httpx.AsyncClient(base_url=api, timeout=10) as client:
            start = time.monotonic()
            while time.monotonic() - start < seconds:
                path, keyed = rng.choices(calls, weights=[6, 2, 1, 1, 1])[0]
                r = await client.get(path, headers={"X-API-Key": key} if keyed else {})
                sent[f"api {r.status_code}"] += 1
                await asyncio.sleep(rng.expovariate(api_rate))

    await asyncio.gather(produce(), call())
    return sent
