"""The benchmark report's arithmetic: profile attribution, spreads and goal verdicts."""

from __future__ import annotations

import math
from pathlib import Path

from bench.procs import hot
from bench.summary import goals, spread

ENTRY = "_run_module_as_main (<frozen runpy>:198);main (consumers/projector.py:229)"
WRITE = "Projector._write (services/projector.py:118)"
STACKS = [  # py-spy's collapsed stacks: frames joined by ";", then the samples
    f"{ENTRY};Runner.run (asyncio/runners.py:118);{WRITE};"
    "MongoThreadStore.load (services/mongo/store.py:106);decode_all (bson/__init__.py:1) 6",
    f"{ENTRY};{WRITE};fold (services/projection.py:92) 3",
    f"{ENTRY};select (selectors.py:468) 1",
    "not a stack line",
]


def test_hot_attributes_samples_to_packages_and_our_functions(tmp_path: Path) -> None:
    raw = tmp_path / "stacks.txt"
    raw.write_text("\n".join(STACKS) + "\n")
    found = hot(raw)
    assert found["samples"] == 10
    assert dict(found["packages"]) == {
        "bson": 0.6,
        "threadview/services": 0.3,
        "python (stdlib)": 0.1,
    }
    assert found["own"][0] == ("decode_all (__init__.py)", 0.6)
    ours = dict(found["ours"])  # total time, once per stack
    assert ours["Projector._write (projector.py)"] == 0.9
    assert ours["MongoThreadStore.load (store.py)"] == 0.6
    assert ours["main (projector.py)"] == 1.0
    assert "Runner.run (runners.py)" not in ours


def test_spread_is_the_median_with_its_range_and_skips_missing_values() -> None:
    assert spread([3.0, 1.0, 2.0]) == "2 (1–3)"
    assert spread([2.5], 1, " ms") == "2.5 ms"
    assert spread([math.nan, None, 4.0]) == "4"  # type: ignore[list-item]
    assert spread([]) == "-"


def test_goals_judge_the_largest_size_and_every_run() -> None:
    def case(family: str, driver: float, api: float, kind: str = "list") -> dict[str, object]:
        return {
            "family": family,
            "page": "1",
            "kind": kind,
            "driver_p50": driver,
            "api": {"p50": api},
            "api_vs_driver": api / driver,
        }

    results = {
        "freshness": {
            "runs": [{"p99": 0.2, "rate_published": 1000.0}, {"p99": 0.3, "rate_published": 990}]
        },
        "lists": [
            {"threads": 100, "cases": [case("a", 1, 90)]},  # the smaller size is not judged
            {
                "threads": 1000,
                "cases": [
                    case("a", 10, 12),
                    case("b", 20, 24),
                    case("include_total=true", 900, 950),  # reported apart
                    case("floor", 1, 1.4, kind="get"),
                ],
            },
        ],
        "memory": {"rss_projector": [70.0, 210.0], "rss_api": [80.0]},
    }
    found = {name: value for name, _, value, _ in goals(results)}
    assert found["freshness"] == 250  # ms: the median of the runs' p99s
    assert found["list_p50"] == 24  # the slowest paged family, totals aside
    assert math.isclose(found["api_ratio"], 1.4)  # the largest ratio, the floor included
    assert found["rss_projector"] == 210 and found["rss_api"] == 80
