"""The suite's results as a Markdown report and PNG plots (bench/__main__.py writes them).

Why this module is longer than ~200 lines: the whole report (every part's tables and plots) from
one results file, so that the README's goals table and docs/benchmarks.md come from one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.stats import median

GOALS: dict[str, tuple[str, Callable[[float], bool]]] = {  # name: (text, holds(figure))
    "freshness": ("freshness p99 <= 250 ms at 1,000 events/s", lambda v: v <= 250),
    "list_p50": ("list p50 <= 25 ms at 1,000,000 threads, every family", lambda v: v <= 25),
    "api_ratio": ("API p50 within 1.5x of the driver's", lambda v: v <= 1.5),
    "rss_projector": ("projector peak RSS <= 200 MB", lambda v: v <= 200),
    "rss_api": ("API peak RSS <= 150 MB", lambda v: v <= 150),
}


def spread(values: Sequence[float], digits: int = 0, unit: str = "") -> str:
    """``median (min–max)``, or the one value; a dash when there is none."""
    values = [v for v in values if v is not None and not math.isnan(v)]  # None: NaN in JSON
    if not values:
        return "-"
    text = f"{median(values):,.{digits}f}{unit}"
    if len(values) > 1:
        text += f" ({min(values):,.{digits}f}–{max(values):,.{digits}f})"
    return text


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def goals(results: dict[str, Any]) -> list[tuple[str, str, float, str]]:
    """Each goal the issue sets: (name, text, the figure it is judged on, a note on it)."""
    found: list[tuple[str, str, float, str]] = []
    fresh = results.get("freshness")
    if fresh:
        p99s = [r["p99"] * 1000 for r in fresh["runs"]]
        rate = median([r["rate_published"] for r in fresh["runs"]])
        found.append(
            ("freshness", "", median(p99s), f"ms, median p99 of the runs at {rate:,.0f}/s")
        )
    lists = results.get("lists") or []
    if lists:
        largest = max(lists, key=lambda x: x["threads"])
        paged = [
            r
            for r in largest["cases"]
            if r["kind"] == "list" and "include_total" not in r["family"]
        ]
        worst = max(paged, key=lambda r: r["api"]["p50"])
        found.append(
            (
                "list_p50",
                "",
                worst["api"]["p50"],
                f"ms, the slowest family at {largest['threads']:,} threads: "
                f"{worst['family']}, page {worst['page']}",
            )
        )
        ratios = [r["api_vs_driver"] for r in largest["cases"]]
        within = sum(1 for r in ratios if GOALS["api_ratio"][1](r))
        found.append(
            (
                "api_ratio",
                "",
                max(ratios),
                f"x, the largest of every case at {largest['threads']:,} threads (median "
                f"{median(ratios):.2f}x; {within} of {len(ratios)} within 1.5x)",
            )
        )
    memory = results.get("memory", {})
    for name in ("rss_projector", "rss_api"):
        if memory.get(name):
            found.append((name, "", max(memory[name]), "MiB, the highest peak of any run"))
    return [(n, GOALS[n][0], v, note) for n, _, v, note in found]


def verdict(name: str, value: float) -> str:
    return "holds" if GOALS[name][1](value) else "**missed**"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    out = [
        f"# threadview benchmarks, {results['date']}" + (" (quick)" if results["quick"] else ""),
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']:.0f} GiB; {m['store']}; "
        f"Kafka {m['kafka']}; Python {m['python']}; {m['os']}. "
        f"Load average at the start: {m['load']}. Took {results['took'] / 60:.1f} min.",
        "",
    ]
    rows = [
        [text, f"{value:,.{2 if name == 'api_ratio' else 0}f} {note}", verdict(name, value)]
        for name, text, value, note in goals(results)
    ]
    if rows:
        out += ["## Goals", "", *table(["goal", "measured", ""], rows), ""]
    out += _throughput(results.get("throughput"))
    out += _rebuild(results.get("rebuild"))
    out += _freshness(results.get("freshness"))
    for found in results.get("lists") or []:
        out += _lists(found)
    out += _memory(results.get("memory"))
    out += _profiles(results.get("profiles"))
    seconds = ", ".join(f"{k} {v / 60:.1f} min" for k, v in results["sections"].items())
    out += ["## Time per part", "", seconds, ""]
    return "\n".join(out)


def _throughput(found: dict[str, Any] | None) -> list[str]:
    if not found:
        return []
    about = found["about"]
    rows = []
    for size, runs in found["sizes"].items():
        ours = [r["steady"] for r in runs["threadview"]]
        naive = [r["steady"] for r in runs["naive"]]
        ratios = [a / b for a, b in zip(ours, naive, strict=True) if b]
        store = [r["store_ms"] for r in runs["threadview"]]
        rows.append(
            [f"{int(size):,}", spread(ours), spread(naive), spread(ratios, 1, "x"), spread(store)]
        )
    return [
        "## 1. Projection throughput",
        "",
        f"A {about['records']:,}-record log ({about['threads']:,} threads; retries, disorder, "
        f"poison) already in Kafka ({about['partitions']} partitions), applied by each projector "
        f"into a store already holding N other threads; the two alternate, {about['rounds']} "
        f"round(s); events/s between the group's first commit and its last (the naive one "
        f"stopped {about['cap']:.0f} s after its first commit). Median (min–max).",
        "",
        *table(
            [
                "threads stored",
                "threadview, events/s",
                "naive, events/s",
                "ratio",
                "store ms/batch",
            ],
            rows,
        ),
        "",
        "![throughput](throughput.png)",
        "",
    ]


def _rebuild(found: dict[str, Any] | None) -> list[str]:
    if not found:
        return []
    about, rounds = found["about"], found["rounds"]

    def of(key: str, digits: int = 0, unit: str = "") -> str:
        return spread([r[key] for r in rounds], digits, unit)

    rows = [
        [
            "`threadview-rebuild run`, start to exit",
            of("rebuild"),
            f"{of('wall', 1)} s (fold+load {of('fold', 1)}, indexes {of('indexes', 1)})",
        ],
        ["(a) the live projector replaying from offset 0", of("live"), ""],
        [
            "(b) `insert_many` of the final documents + indexes",
            of("raw_indexed"),
            f"{of('insert', 1)} + {of('index', 1)} s",
        ],
        ["rebuild / (a)", of("vs_live", 1, "x"), ""],
        ["(b) / rebuild", of("raw_ratio", 2, "x"), ""],
        ["rebuild peak RSS, all its processes", f"{of('rss')} MiB", ""],
    ]
    return [
        "## 2. Rebuild",
        "",
        f"{about['events']:,} events over {about['threads']:,} threads "
        f"({about['messages']:,} messages), {len(rounds)} round(s). Median (min–max).",
        "",
        *table(["", "events/s", "seconds"], rows),
        "",
    ]


def _freshness(found: dict[str, Any] | None) -> list[str]:
    if not found:
        return []
    runs = found["runs"]

    def ms(key: str) -> str:
        return spread([r[key] * 1000 for r in runs])

    rows = [
        [
            spread([r["rate_published"] for r in runs]),
            f"{sum(r['probes_seen'] for r in runs):,} of {sum(r['probes'] for r in runs):,}",
            ms("p50"),
            ms("p95"),
            ms("p99"),
            ms("max"),
        ]
    ]
    for run in found.get("lower_rates") or []:  # one run each, below the goal's rate
        rows.append(
            [
                f"{run['rate_published']:,.0f} (one run)",
                f"{run['probes_seen']:,} of {run['probes']:,}",
            ]
            + [f"{run[k] * 1000:,.0f}" for k in ("p50", "p95", "p99", "max")]
        )
    return [
        "## 3. Freshness",
        "",
        f"{len(runs)} run(s) of {found['seconds']:.0f} s at {found['rate']:,} events/s asked: "
        "publication of a probe `thread.created` to its first appearance in `GET /v1/threads` "
        "(polled every 20 ms). Median (min–max) over the runs; ms.",
        "",
        *table(["events/s published", "probes seen", "p50", "p95", "p99", "max"], rows),
        "",
        "![freshness](freshness.png)",
        "",
    ]


def _lists(found: dict[str, Any]) -> list[str]:
    cases = found["cases"]
    families: dict[str, dict[str, Any]] = {}
    for row in cases:
        page = "first" if row["page"] in ("1", "-") else "deep"  # "-": one thread by id
        families.setdefault(row["family"], {})[page] = row
    rows = []
    for name, pages in families.items():
        first, deep = pages.get("first"), pages.get("deep")
        rows.append(
            [
                name,
                cell(first, "driver_p50"),
                cell(first, "p50"),
                cell(first, "p99"),
                cell(first, "rps"),
                (deep["page"].split()[0] if deep else ""),
                cell(deep, "p50"),
                cell(deep, "p99"),
                f"{first['api_vs_driver']:.2f}x" if first else "",
            ]
        )
    sweep = [
        [
            f"{r['family']}, page {r['page'].split()[0]}",
            str(r["connections"]),
            f"{r['rps']:,.0f}",
            f"{r['p50']:.1f}",
            f"{r['p99']:.1f}",
            str(r["errors"]),
        ]
        for r in found["sweep"]
    ]
    threads = found["threads"]
    return [
        f"## 4. List latency at {threads:,} threads",
        "",
        "Five organizations (one with ~70%); limit 20; ms. The API is timed by wrk with one "
        "connection (requests/s = one client's), the driver by `MongoThreadStore.page` in a "
        f"loop; the API's peak RSS was {found['rss_api']:.0f} MiB. Data loaded in "
        f"{found['load_seconds']:.0f} s.",
        "",
        *table(
            [
                "family",
                "page 1, driver p50",
                "page 1, API p50",
                "API p99",
                "req/s",
                "deep page",
                "deep, API p50",
                "API p99",
                "API/driver (p1)",
            ],
            rows,
        ),
        "",
        "Under load (wrk, N connections, 2 threads):",
        "",
        *table(["request", "connections", "requests/s", "p50", "p99", "errors"], sweep),
        "",
        f"![list latency](lists_{threads}.png)",
        "",
    ]


def cell(row: dict[str, Any] | None, key: str) -> str:
    """One figure of a list case: the API's (wrk) p50, p99 or rps, or the case's own."""
    if row is None:
        return ""
    value = row["api"][key] if key in ("p50", "p99", "rps") else row[key]
    return f"{value:,.{0 if key == 'rps' else 1}f}"


def _memory(found: dict[str, Any] | None) -> list[str]:
    if not found:
        return []
    labels = {
        "rss_projector": "projector (every throughput and freshness run)",
        "rss_api": "API (every freshness and list run)",
        "rss_rebuild": "rebuild, all its processes",
    }
    rows = [
        [labels[k], spread(v, 0, " MiB"), f"max {max(v):,.0f} MiB"] for k, v in found.items() if v
    ]
    return ["## 5. Memory (peak RSS)", "", *table(["process", "median (min–max)", ""], rows), ""]


def _profiles(found: dict[str, Any] | None) -> list[str]:
    if not found:
        return []
    out = ["## 6. Profiles (py-spy)", ""]
    for name, profile in found.items():
        if not profile:
            continue
        if "error" in profile:
            out += [f"{name}: py-spy failed: {profile['error']}", ""]
            continue
        columns = [profile["packages"], profile["own"], profile["ours"]]
        rows = []
        for n in range(max(len(c) for c in columns)):
            row = []
            for column in columns:
                cell = column[n] if n < len(column) else None
                row += [f"`{cell[0]}`", f"{cell[1]:.0%}"] if cell else ["", ""]
            rows.append(row)
        out += [
            f"**{name}**: {profile['what']}; {profile['samples']:,} samples of its busy "
            f"time (idle waits left out); flame graph [{profile['svg']}]({profile['svg']}), "
            f"stacks [{profile['raw']}]({profile['raw']}).",
            "",
            *table(
                ["package (own time)", "", "function (own time)", "", "threadview (total)", ""],
                rows,
            ),
            "",
        ]
    return out


def plots(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(figure: Any, name: str) -> None:
        figure.tight_layout()
        figure.savefig(out / name, dpi=110)
        plt.close(figure)

    found = results.get("throughput")
    if found:
        sizes = list(found["sizes"])
        figure, axes = plt.subplots(figsize=(7, 3.5))
        for shift, name in ((-0.2, "threadview"), (0.2, "naive")):
            values = [median([r["steady"] for r in found["sizes"][s][name]]) for s in sizes]
            axes.bar([i + shift for i in range(len(sizes))], values, width=0.4, label=name)
        axes.set_xticks(range(len(sizes)), [f"{int(s):,} stored" for s in sizes])
        axes.set_ylabel("events/s")
        axes.set_title("Projection throughput")
        axes.legend()
        save(figure, "throughput.png")

    found = results.get("freshness")
    if found:
        from bench.freshness import plot

        plot([r["points"] for r in found["runs"]], out / "freshness.png", found["rate"])

    for lists in results.get("lists") or []:
        cases = [r for r in lists["cases"] if r["kind"] == "list"]
        names = [f"{r['family']} · p{r['page'].split()[0]}" for r in cases]
        figure, axes = plt.subplots(figsize=(9, 0.28 * len(cases) + 1.2))
        ys = range(len(cases))
        axes.barh([y + 0.2 for y in ys], [r["driver_p50"] for r in cases], 0.4, label="driver p50")
        axes.barh([y - 0.2 for y in ys], [r["api"]["p50"] for r in cases], 0.4, label="API p50")
        axes.axvline(25, color="red", linewidth=0.8, label="goal 25 ms")
        axes.set_yticks(list(ys), names, fontsize=7)
        axes.invert_yaxis()
        axes.set_xscale("log")
        axes.set_xlabel("ms (log scale)")
        axes.set_title(f"GET /v1/threads at {lists['threads']:,} threads")
        axes.legend(fontsize=7)
        save(figure, f"lists_{lists['threads']}.png")

    _sweep_plot(results.get("lists") or [], out, plt, save)


def _sweep_plot(
    lists: list[dict[str, Any]], out: Path, plt: Any, save: Callable[..., None]
) -> None:
    if not lists:
        return
    figure, axes = plt.subplots(figsize=(7, 3.5))
    for found in lists:
        series: dict[str, list[tuple[int, float]]] = {}
        for r in found["sweep"]:
            label = f"{found['threads']:,}: {r['family']} p{r['page'].split()[0]}"
            series.setdefault(label, []).append((r["connections"], r["rps"]))
        for label, points in series.items():
            axes.plot([c for c, _ in points], [v for _, v in points], marker="o", label=label)
    axes.set_xscale("log", base=2)
    axes.set_xlabel("wrk connections")
    axes.set_ylabel("requests/s")
    axes.set_title("API throughput under load")
    axes.legend(fontsize=7)
    save(figure, "sweep.png")
