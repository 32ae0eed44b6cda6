"""bench.load's split of wrk's latencies into the answered requests' and the 503s'."""

from __future__ import annotations

import math

from bench.load import split


def test_the_503s_are_the_fastest_share_and_the_answered_the_rest() -> None:
    # 300 of 1,000 responses refused in 1-3 ms, the answered 700 at 10-709 ms
    latencies = sorted(
        [1000 + 10 * i for i in range(300)] + [10_000 + 1000 * i for i in range(700)]
    )
    grid = [latencies[round(p / 10 * len(latencies) / 100) - 1] for p in range(1, 1001)]
    found = split(grid, 0.3)
    assert found["ok_p50"] == 359.0 and found["ok_p99"] == 702.0
    assert found["shed_p50"] == 2.49 and found["shed_p99"] == 3.96


def test_without_503s_the_answered_are_all() -> None:
    grid = list(range(1000, 1_001_000, 1000))
    found = split(grid, 0.0)
    assert (found["ok_p50"], found["ok_p99"]) == (500.0, 990.0)
    assert math.isnan(found["shed_p50"]) and math.isnan(found["shed_p99"])
