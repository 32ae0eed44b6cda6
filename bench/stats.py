"""Small statistics and formatting helpers for the benchmarks (no numpy)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between the closest ranks, as
    numpy's default does; NaN when there are no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 50)


def ratio(numerator: float, denominator: float) -> float:
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator


def fmt(value: float, width: int, digits: int = 1, suffix: str = "") -> str:
    """``value`` right-aligned in ``width`` columns, or a dash when it is not a number."""
    text = "-" if math.isnan(value) else f"{value:.{digits}f}{suffix}"
    return f"{text:>{width}}"


def machine() -> str:
    """Cores and load, to judge how noisy the figures are."""
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return f"{os.cpu_count()} cores, load average {load}"
