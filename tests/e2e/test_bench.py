"""``python -m bench --quick``: the benchmark suite's smoke test. Every part runs on tiny data
against the real servers and must produce its files and sane contents; no timing is judged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import read_results
from testkit.servers import ROOT, Servers

pytestmark = pytest.mark.e2e


def test_quick_suite_measures_every_part(servers: Servers, tmp_path: Path) -> None:
    env = os.environ | {
        "THREADVIEW_KAFKA_BOOTSTRAP_SERVERS": servers.kafka,
        "THREADVIEW_MONGO_URL": servers.mongo_url,
        "PYTHONUNBUFFERED": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results: dict[str, Any] = read_results(tmp_path)
    assert results["failed"] == {}
    assert set(results["sections"]) == {"throughput", "rebuild", "freshness", "lists"}

    [(_, runs)] = results["throughput"]["sizes"].items()
    records = results["throughput"]["about"]["records"]
    assert [r["done"] for r in runs["threadview"]] == [records]  # the whole log applied
    assert runs["naive"][0]["done"] > 0

    [rebuilt] = results["rebuild"]["rounds"]
    assert rebuilt["records"] == results["rebuild"]["about"]["events"]
    assert rebuilt["live"] > 0 and rebuilt["raw_indexed"] > 0

    for run in results["freshness"]["runs"]:
        assert run["probes"] > 0 and run["probes_seen"] == run["probes"]

    [lists] = results["lists"]
    families = {row["family"] for row in lists["cases"]}
    assert len(families) >= 13 and any(row["kind"] == "get" for row in lists["cases"])
    for row in lists["cases"] + lists["sweep"]:
        api = row.get("api", row)
        assert api["requests"] > 0 and api["errors"] == 0, row
    assert all(row["driver_runs"] >= 3 for row in lists["cases"])

    for name, peaks in results["memory"].items():
        assert peaks and min(peaks) > 10, (name, peaks)  # MiB: read from real processes
    for name, profile in results["profiles"].items():
        assert profile and profile.get("samples", 0) > 0, (name, profile)
        assert (tmp_path / profile["svg"]).stat().st_size > 0

    report = (tmp_path / "README.md").read_text()
    for heading in ("Goals", "Projection throughput", "Rebuild", "Freshness", "List latency"):
        assert heading in report
    for plot in ("throughput.png", "freshness.png", "lists_3000.png", "sweep.png"):
        assert (tmp_path / plot).read_bytes()[:4] == b"\x89PNG"
