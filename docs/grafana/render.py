"""Draw docs/grafana/dashboard.png: the panels of threadview.json, computed from live /metrics.

No Prometheus and no Grafana needed: the script scrapes the projector's and the API's /metrics
every --interval seconds for --seconds, evaluates each panel's own PromQL expression (read from
threadview.json) over those scrapes, and draws the panels where the dashboard puts them.

    .venv/bin/python docs/grafana/render.py [--projector URL] [--api URL] [--api-metrics URL]
        [--seconds 90] [--out docs/grafana/dashboard.png] [--drive [--key KEY]] [--self-check]

--drive also makes traffic while it samples: realistic thread events published to the events
topic (THREADVIEW_TOPIC, default threads.events; ~300 events/s over a few hundred threads, 1 %
poison records) and a few API calls per second (X-API-Key from --key, else .cache/run/demo-key).
--self-check runs the same pipeline over simulated exposition text (no servers), checks the
computed numbers, and writes /tmp/threadview-dashboard-selfcheck.png.

The PromQL evaluator understands what the dashboard uses: selectors with =, !=, =~, !~; rate(),
irate() and increase() (over the scrapes inside the window, counter resets handled, without
Prometheus' extrapolation to the window's edges); sum, min, max, avg and count with `by`;
histogram_quantile() (Prometheus' interpolation); time(), vector(); + - * / and `or`.
$__rate_interval is --rate-window; the dashboard's variables ($projector_job, $api_job) take
their "All" value.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DASHBOARD = HERE / "threadview.json"
TITLE = "threadview — Grafana dashboard (docs/grafana/threadview.json), rendered from live /metrics"
SELF_CHECK_TITLE = (
    "threadview — Grafana dashboard (docs/grafana/threadview.json), "
    "rendered from SIMULATED metrics (render.py --self-check)"
)

Labels = frozenset[tuple[str, str]]
Vector = dict[Labels, float]
Value = float | Vector

# --- scrapes ---------------------------------------------------------------------------------


@dataclass
class Scrape:
    """One sampling tick: every sample of every target, by sample name then label set."""

    t: float
    series: dict[str, dict[Labels, float]] = field(default_factory=dict)

    def add(self, text: str, job: str, instance: str) -> int:
        count = 0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.endswith("_created"):  # prometheus_client's creation stamps
                    continue
                labels = {**sample.labels, "job": job, "instance": instance}
                self.series.setdefault(sample.name, {})[frozenset(labels.items())] = float(
                    sample.value
                )
                count += 1
        return count


# --- PromQL, the subset the dashboard uses ---------------------------------------------------

AGGREGATIONS = {"sum", "min", "max", "avg", "count"}
FUNCTIONS = {"rate", "irate", "increase", "histogram_quantile", "time", "vector"}
TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<op>=~|!~|!=|==|[-+*/(){}\[\],=])
    )""",
    re.VERBOSE,
)
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class PromQLError(ValueError):
    pass


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Selector:
    name: str
    matchers: tuple[tuple[str, str, str], ...]
    range_s: float | None = None


@dataclass(frozen=True)
class Aggregate:
    op: str
    by: tuple[str, ...] | None
    expr: Any


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Binary:
    op: str
    left: Any
    right: Any


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        if text[pos] == "[":  # a range: [10s], [1m30s]
            end = text.index("]", pos)
            tokens.append(("range", text[pos + 1 : end].strip()))
            pos = end + 1
            continue
        m = TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise PromQLError(f"cannot read {text[pos:]!r}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


def parse_duration(text: str) -> float:
    parts = DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise PromQLError(f"not a duration: {text!r}")
    return sum(float(n) * DURATION_UNITS[u] for n, u in parts)


class Parser:
    """Recursive descent: or < + - < * / < unary minus < primary."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def parse(self) -> Any:
        node = self.expr()
        if self.i != len(self.tokens):
            raise PromQLError(f"unexpected {self.tokens[self.i][1]!r} in {self.text!r}")
        return node

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if value is not None and token[1] != value:
            raise PromQLError(f"expected {value!r}, got {token[1]!r} in {self.text!r}")
        self.i += 1
        return token

    def expr(self) -> Any:
        node = self.additive()
        while self.peek() == ("ident", "or"):
            self.take()
            node = Binary("or", node, self.additive())
        return node

    def additive(self) -> Any:
        node = self.multiplicative()
        while self.peek()[1] in ("+", "-") and self.peek()[0] == "op":
            op = self.take()[1]
            node = Binary(op, node, self.multiplicative())
        return node

    def multiplicative(self) -> Any:
        node = self.unary()
        while self.peek()[1] in ("*", "/") and self.peek()[0] == "op":
            op = self.take()[1]
            node = Binary(op, node, self.unary())
        return node

    def unary(self) -> Any:
        if self.peek() == ("op", "-"):
            self.take()
            return Binary("*", Num(-1.0), self.unary())
        return self.primary()

    def labels_list(self) -> tuple[str, ...]:
        self.take("(")
        names: list[str] = []
        while self.peek()[1] != ")":
            names.append(self.take()[1])
            if self.peek()[1] == ",":
                self.take()
        self.take(")")
        return tuple(names)

    def primary(self) -> Any:
        kind, value = self.peek()
        if kind == "num":
            self.take()
            return Num(float(value))
        if value == "(":
            self.take()
            node = self.expr()
            self.take(")")
            return node
        if kind != "ident":
            raise PromQLError(f"unexpected {value!r} in {self.text!r}")
        self.take()
        if value in AGGREGATIONS:
            by = None
            if self.peek()[1] == "by":
                self.take()
                by = self.labels_list()
            self.take("(")
            inner = self.expr()
            self.take(")")
            if self.peek()[1] == "by":
                self.take()
                by = self.labels_list()
            if self.peek()[1] == "without":
                raise PromQLError("`without` is not supported")
            return Aggregate(value, by, inner)
        if value in FUNCTIONS:
            self.take("(")
            args = []
            while self.peek()[1] != ")":
                args.append(self.expr())
                if self.peek()[1] == ",":
                    self.take()
            self.take(")")
            return Call(value, tuple(args))
        if self.peek()[1] == "(":
            raise PromQLError(f"function {value}() is not supported")
        matchers: list[tuple[str, str, str]] = []
        if self.peek()[1] == "{":
            self.take()
            while self.peek()[1] != "}":
                label = self.take()[1]
                op = self.take()[1]
                kind_s, literal = self.take()
                if kind_s != "str" or op not in ("=", "!=", "=~", "!~"):
                    raise PromQLError(f"bad matcher {label}{op}{literal} in {self.text!r}")
                matchers.append((label, op, literal[1:-1].encode().decode("unicode_escape")))
                if self.peek()[1] == ",":
                    self.take()
            self.take("}")
        range_s = None
        if self.peek()[0] == "range":
            range_s = parse_duration(self.take()[1])
        return Selector(value, tuple(matchers), range_s)


def _matches(labels: Labels, matchers: tuple[tuple[str, str, str], ...]) -> bool:
    have = dict(labels)
    for label, op, want in matchers:
        value = have.get(label, "")
        if op == "=" and value != want:
            return False
        if op == "!=" and value == want:
            return False
        if op == "=~" and not re.fullmatch(want, value):
            return False
        if op == "!~" and re.fullmatch(want, value):
            return False
    return True


def _apply(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
    return a / b


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' bucketQuantile: linear interpolation inside the bucket holding the rank."""
    buckets = sorted(buckets)
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        return math.nan
    counts, running = [], 0.0
    for _, count in buckets:  # rates of cumulative counts can be slightly non-monotonic
        running = max(running, count)
        counts.append(running)
    total = counts[-1]
    if total <= 0 or math.isnan(total):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    rank = q * total
    b = next(i for i, c in enumerate(counts) if c >= rank)
    if b == len(buckets) - 1:
        return buckets[-2][0]
    upper = buckets[b][0]
    if b == 0 and upper <= 0:
        return upper
    lower = 0.0 if b == 0 else buckets[b - 1][0]
    below = 0.0 if b == 0 else counts[b - 1]
    in_bucket = counts[b] - below
    return lower + (upper - lower) * ((rank - below) / in_bucket if in_bucket else 1.0)


class Evaluator:
    def __init__(self, scrapes: list[Scrape]) -> None:
        self.scrapes = scrapes

    def at(self, node: Any, i: int) -> Value:
        if isinstance(node, Num):
            return node.value
        if isinstance(node, Selector):
            if node.range_s is not None:
                raise PromQLError(f"range vector {node.name}[...] outside rate()")
            series = self.scrapes[i].series.get(node.name, {})
            return {k: v for k, v in series.items() if _matches(k, node.matchers)}
        if isinstance(node, Aggregate):
            return self.aggregate(node, i)
        if isinstance(node, Call):
            return self.call(node, i)
        if isinstance(node, Binary):
            return self.binary(node, i)
        raise PromQLError(f"cannot evaluate {node!r}")

    def aggregate(self, node: Aggregate, i: int) -> Vector:
        inner = self.vector(self.at(node.expr, i))
        groups: dict[Labels, list[float]] = {}
        for labels, value in inner.items():
            key = frozenset((k, v) for k, v in labels if node.by is not None and k in node.by)
            groups.setdefault(key, []).append(value)
        reduce: dict[str, Callable[[list[float]], float]] = {
            "sum": sum,
            "min": min,
            "max": max,
            "avg": lambda vs: sum(vs) / len(vs),
            "count": lambda vs: float(len(vs)),
        }
        return {key: reduce[node.op](values) for key, values in groups.items()}

    def call(self, node: Call, i: int) -> Value:
        if node.fn == "time":
            return self.scrapes[i].t
        if node.fn == "vector":
            return {frozenset(): self.scalar(self.at(node.args[0], i))}
        if node.fn in ("rate", "irate", "increase"):
            (sel,) = node.args
            if not isinstance(sel, Selector) or sel.range_s is None:
                raise PromQLError(f"{node.fn}() needs a range selector")
            return self.rate(node.fn, sel, i)
        if node.fn == "histogram_quantile":
            q = self.scalar(self.at(node.args[0], i))
            groups: dict[Labels, list[tuple[float, float]]] = {}
            for labels, value in self.vector(self.at(node.args[1], i)).items():
                le = dict(labels).get("le")
                if le is None:
                    continue
                key = frozenset((k, v) for k, v in labels if k != "le")
                groups.setdefault(key, []).append((float(le), value))
            return {key: histogram_quantile(q, b) for key, b in groups.items()}
        raise PromQLError(f"function {node.fn}() is not supported")

    def rate(self, fn: str, sel: Selector, i: int) -> Vector:
        assert sel.range_s is not None
        now = self.scrapes[i].t
        window = [
            s for s in self.scrapes[: i + 1] if s.t >= now - sel.range_s - 1e-6
        ]  # oldest first
        out: Vector = {}
        for labels, _ in self.scrapes[i].series.get(sel.name, {}).items():
            if not _matches(labels, sel.matchers):
                continue
            points = [
                (s.t, s.series[sel.name][labels])
                for s in window
                if labels in s.series.get(sel.name, {})
            ]
            if len(points) < 2:
                continue
            if fn == "irate":
                points = points[-2:]
            increase = 0.0
            for (_, prev), (_, cur) in zip(points, points[1:], strict=False):
                increase += cur - prev if cur >= prev else cur  # a counter reset
            span = points[-1][0] - points[0][0]
            key = frozenset((k, v) for k, v in labels if k != "__name__")
            out[key] = increase if fn == "increase" else increase / span
        return out

    def binary(self, node: Binary, i: int) -> Value:
        left, right = self.at(node.left, i), self.at(node.right, i)
        if node.op == "or":
            lv, rv = self.vector(left), self.vector(right)
            return {**rv, **lv}
        if isinstance(left, float) and isinstance(right, float):
            return _apply(node.op, left, right)
        if isinstance(left, float):
            assert isinstance(right, dict)
            return {k: _apply(node.op, left, v) for k, v in right.items()}
        if isinstance(right, float):
            return {k: _apply(node.op, v, right) for k, v in left.items()}
        return {k: _apply(node.op, v, right[k]) for k, v in left.items() if k in right}

    @staticmethod
    def vector(value: Value) -> Vector:
        if isinstance(value, dict):
            return value
        raise PromQLError("expected an instant vector, got a scalar")

    @staticmethod
    def scalar(value: Value) -> float:
        if isinstance(value, float):
            return value
        raise PromQLError("expected a scalar, got a vector")


def substitute(expr: str, rate_window: float) -> str:
    """Grafana's variables: $__rate_interval and friends; dashboard variables take 'All'."""
    window = f"{rate_window:g}s"
    expr = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", window, expr)
    return re.sub(r"\$\{?[A-Za-z_]\w*\}?", ".+", expr)


def legend(fmt: str, labels: Labels) -> str:
    have = dict(labels)
    if fmt and fmt != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: have.get(m.group(1), ""), fmt).strip()
    shown = {k: v for k, v in have.items() if k not in ("job", "instance")}
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(shown.items())) + "}"


@dataclass
class Series:
    name: str
    ref: str
    values: list[float]


def evaluate_target(
    target: dict[str, Any], scrapes: list[Scrape], rate_window: float
) -> list[Series]:
    node = Parser(substitute(target["expr"], rate_window)).parse()
    ev = Evaluator(scrapes)
    by_labels: dict[Labels, list[float]] = {}
    for i in range(len(scrapes)):
        value = ev.at(node, i)
        vector = {frozenset(): value} if isinstance(value, float) else value
        for labels, v in vector.items():
            by_labels.setdefault(labels, [math.nan] * len(scrapes))[i] = v
    out = [
        Series(legend(target.get("legendFormat", ""), labels), target["refId"], values)
        for labels, values in by_labels.items()
    ]
    return sorted(out, key=lambda s: s.name)


# --- drawing ---------------------------------------------------------------------------------

BG = "#111217"
PANEL = "#181b1f"
BORDER = "#2c3235"
TEXT = "#ccccdc"
DIM = "#8e8e9e"
GRID = "#25282d"
# Grafana's classic palette (color mode palette-classic), in its order
# fmt: off
PALETTE = [
    "#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A9", "#705DA0",
    "#508642", "#CCA300", "#447EBC", "#C15C17", "#890F02", "#0A437C", "#6D1F62", "#584477",
]
# fmt: on
NAMED = {
    "green": "#73BF69",
    "yellow": "#FADE2A",
    "orange": "#FF9830",
    "red": "#F2495C",
    "blue": "#5794F2",
    "purple": "#B877D9",
    "text": TEXT,
}


def color_of(name: str) -> str:
    return NAMED.get(name, name)


def _num(v: float) -> str:
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    if a >= 1:
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return f"{v:.3g}"


def fmt_unit(v: float, unit: str) -> str:
    if math.isnan(v):
        return "No data"
    if math.isinf(v):
        return "∞"
    if unit == "s":
        a = abs(v)
        if a == 0:
            return "0 s"
        if a < 1e-3:
            return f"{_num(v * 1e6)} µs"
        if a < 1:
            return f"{_num(v * 1e3)} ms"
        if a < 120:
            return f"{_num(v)} s"
        if a < 7200:
            return f"{_num(v / 60)} min"
        return f"{_num(v / 3600)} h"
    if unit == "percentunit":
        return f"{_num(v * 100)}%"
    suffix = " req/s" if unit == "reqps" else ""
    a = abs(v)
    if a >= 1e9:
        return f"{_num(v / 1e9)} B{suffix}"
    if a >= 1e6:
        return f"{_num(v / 1e6)} Mil{suffix}"
    if a >= 1e3:
        return f"{_num(v / 1e3)} K{suffix}"
    return f"{_num(v)}{suffix}"


def threshold_color(value: float, thresholds: dict[str, Any]) -> str:
    color = "green"
    for step in thresholds.get("steps", []):
        if step.get("value") is None or value >= step["value"]:
            color = step["color"]
    return color_of(color)


def _override(panel: dict[str, Any], series: Series) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for ov in panel.get("fieldConfig", {}).get("overrides", []):
        matcher = ov.get("matcher", {})
        hit = (matcher.get("id") == "byFrameRefID" and matcher.get("options") == series.ref) or (
            matcher.get("id") == "byName" and matcher.get("options") == series.name
        )
        if hit:
            props.update({p["id"]: p["value"] for p in ov.get("properties", [])})
    return props


class Canvas:
    """The dashboard's 24-column grid on a matplotlib figure, in pixels."""

    WIDTH = 2000
    UNIT = 34  # pixels per grid row
    GAP = 8
    HEADER = 110

    def __init__(self, dashboard: dict[str, Any]) -> None:
        from matplotlib.figure import Figure

        bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
        self.height = self.HEADER + bottom * self.UNIT + self.GAP * 2
        self.fig = Figure(figsize=(self.WIDTH / 100, self.height / 100), dpi=100, facecolor=BG)
        self.col = (self.WIDTH - self.GAP) / 24

    def box(self, x: float, y: float, w: float, h: float) -> list[float]:
        """Pixels (from the top left) to figure fractions [left, bottom, width, height]."""
        return [x / self.WIDTH, 1 - (y + h) / self.height, w / self.WIDTH, h / self.height]

    def panel_px(self, pos: dict[str, int]) -> tuple[float, float, float, float]:
        x = self.GAP + pos["x"] * self.col
        y = self.HEADER + pos["y"] * self.UNIT
        return x, y, pos["w"] * self.col - self.GAP, pos["h"] * self.UNIT - self.GAP

    def text(self, x: float, y: float, s: str, **kw: Any) -> None:
        self.fig.text(x / self.WIDTH, 1 - y / self.height, s, **kw)


def draw_row(canvas: Canvas, panel: dict[str, Any]) -> None:
    x, y, w, _ = canvas.panel_px(panel["gridPos"])
    canvas.text(
        x + 2,
        y + canvas.UNIT / 2,
        "⌄ " + panel["title"],
        color=TEXT,
        fontsize=13,
        fontweight="bold",
        va="center",
    )


def draw_frame(canvas: Canvas, panel: dict[str, Any]) -> tuple[float, float, float, float]:
    from matplotlib.patches import FancyBboxPatch

    x, y, w, h = canvas.panel_px(panel["gridPos"])
    left, bottom, width, height = canvas.box(x, y, w, h)
    canvas.fig.patches.append(
        FancyBboxPatch(
            (left, bottom),
            width,
            height,
            boxstyle="round,pad=0,rounding_size=0.002",
            transform=canvas.fig.transFigure,
            facecolor=PANEL,
            edgecolor=BORDER,
            linewidth=1,
            zorder=-1,
        )
    )
    canvas.text(
        x + 10, y + 16, panel["title"], color=TEXT, fontsize=11, fontweight="bold", va="center"
    )
    return x, y, w, h


def _times(scrapes: list[Scrape]) -> list[datetime]:
    return [datetime.fromtimestamp(s.t) for s in scrapes]


def draw_stat(
    canvas: Canvas, panel: dict[str, Any], series: list[Series], times: list[datetime]
) -> None:
    x, y, w, h = draw_frame(canvas, panel)
    defaults = panel["fieldConfig"]["defaults"]
    unit, thresholds = defaults.get("unit", "short"), defaults.get("thresholds", {})
    values = series[0].values if series else []
    last = next((v for v in reversed(values) if not math.isnan(v)), math.nan)
    color = threshold_color(last, thresholds) if not math.isnan(last) else DIM
    if values and not all(math.isnan(v) for v in values):
        ax = canvas.fig.add_axes(canvas.box(x + 1, y + h * 0.45, w - 2, h * 0.55 - 1))
        ax.fill_between(times, values, color=color, alpha=0.18, linewidth=0)
        ax.plot(times, values, color=color, alpha=0.7, linewidth=1.2)
        ax.set_axis_off()
        ax.set_xlim(times[0], times[-1])
        finite = [v for v in values if not math.isnan(v)]
        ax.set_ylim(min(0, min(finite)), max(finite) * 1.15 or 1)
    canvas.text(
        x + w / 2,
        y + h * 0.55,
        fmt_unit(last, unit),
        color=color,
        fontsize=30,
        fontweight="bold",
        ha="center",
        va="center",
    )


def _y_formatter(unit: str) -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: fmt_unit(v, unit))


def draw_timeseries(
    canvas: Canvas, panel: dict[str, Any], series: list[Series], times: list[datetime]
) -> None:
    import matplotlib.dates as mdates
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    x, y, w, h = draw_frame(canvas, panel)
    defaults = panel["fieldConfig"]["defaults"]
    custom = defaults.get("custom", {})
    unit = defaults.get("unit", "short")
    legend_opts = panel.get("options", {}).get("legend", {})
    table = bool(legend_opts.get("calcs"))
    right = legend_opts.get("placement") == "right"
    drawn = [s for s in series if not all(math.isnan(v) for v in s.values)]

    # styles and legend entries first: the legend's size decides the plot's
    styles, handles, labels = [], [], []
    width_name = max((len(s.name) for s in drawn), default=0)
    for n, s in enumerate(drawn):
        props = _override(panel, s)
        fixed = props.get("color", {}).get("fixedColor")
        style = {
            "color": color_of(fixed) if fixed else PALETTE[n % len(PALETTE)],
            "linewidth": props.get("custom.lineWidth", custom.get("lineWidth", 1)) + 0.8,
            "fill": props.get("custom.fillOpacity", custom.get("fillOpacity", 0)) / 100,
            "linestyle": "--" if props.get("custom.lineStyle", {}).get("fill") == "dash" else "-",
        }
        styles.append(style)
        handles.append(Line2D([], [], color=style["color"], linewidth=3, ls=style["linestyle"]))
        label = s.name
        if table:
            ok = [v for v in s.values if not math.isnan(v)]
            last, top = fmt_unit(ok[-1], unit), fmt_unit(max(ok), unit)
            label = f"{s.name:<{width_name}}  {last:>9}  {top:>9}"
        labels.append(label)
    title = f"{'':<{width_name}}  {'Last':>9}  {'Max':>9}" if table else None
    font = {"family": "monospace", "size": 9.5} if table else {"size": 10}
    if right:
        legend_w = 60 + 7.6 * max((len(label) for label in labels), default=0)
        box_w, box_h, ncol = legend_w, h - 40, 1
        plot = (x + 78, y + 34, w - 96 - legend_w, h - 34 - 28)
        legend_box = (x + w - legend_w - 8, y + 34, legend_w, box_h)
    else:
        longest = max((len(label) for label in labels), default=1)
        ncol = 1 if table else max(1, min(len(labels), int((w - 20) // (longest * 7.2 + 44))))
        # matplotlib fills a legend column by column, Grafana row by row
        order = [r * ncol + c for c in range(ncol) for r in range(-(-len(labels) // ncol))]
        order = [i for i in order if i < len(labels)]
        handles, labels = [handles[i] for i in order], [labels[i] for i in order]
        rows = math.ceil(len(labels) / ncol) + (1 if table else 0)
        box_w, box_h = w - 20, 19 * rows + 6 if labels else 0
        plot = (x + 78, y + 34, w - 96, h - 34 - 28 - box_h)
        legend_box = (x + 10, y + h - box_h - 4, box_w, box_h)

    ax = canvas.fig.add_axes(canvas.box(*plot))
    ax.set_facecolor(PANEL)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(colors=DIM, labelsize=10, length=0)
    ax.grid(True, color=GRID, linewidth=0.8)
    ax.set_xlim(times[0], times[-1])
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=6))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.yaxis.set_major_formatter(_y_formatter(unit))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    if not drawn:
        ax.set_ylim(0, 1)
        ax.set_yticklabels([])
        ax.text(
            0.5,
            0.5,
            "No data",
            transform=ax.transAxes,
            color=DIM,
            fontsize=14,
            ha="center",
            va="center",
        )
        return
    for s, style in zip(drawn, styles, strict=True):
        ax.plot(
            times,
            s.values,
            color=style["color"],
            linewidth=style["linewidth"],
            linestyle=style["linestyle"],
        )
        if style["fill"]:
            ax.fill_between(times, s.values, color=style["color"], alpha=style["fill"], lw=0)
    finite = [v for s in drawn for v in s.values if math.isfinite(v)]
    lo = min(defaults.get("min", min(finite)), min(finite)) if finite else 0
    top = max(finite) if finite else lo
    # 10 % headroom; a flat line (all 0) gets one unit; the axis reaches axisSoftMax at least
    hi = max(top + (top - lo) * 0.1 if top > lo else lo + 1, custom.get("axisSoftMax", lo))
    if top <= lo and custom.get("axisSoftMax", lo) > lo:
        hi = custom["axisSoftMax"]
    ax.set_ylim(lo, hi)
    mode = custom.get("thresholdsStyle", {}).get("mode", "off")
    if mode != "off":
        steps = defaults.get("thresholds", {}).get("steps", [])
        for k, step in enumerate(steps):
            start = lo if step.get("value") is None else step["value"]
            end = steps[k + 1]["value"] if k + 1 < len(steps) else hi
            c = color_of(step["color"])
            if "area" in mode and start < hi:
                ax.axhspan(max(start, lo), min(end, hi), color=c, alpha=0.09, linewidth=0)
            if step.get("value") is not None and lo < start < hi:
                ax.axhline(
                    start,
                    color=c,
                    linewidth=1,
                    linestyle="--" if "dash" in mode else "-",
                    alpha=0.8,
                )
    lax = canvas.fig.add_axes(canvas.box(*legend_box))
    lax.set_axis_off()
    legend = lax.legend(
        handles,
        labels,
        loc="upper left",
        ncol=ncol,
        frameon=False,
        labelcolor=TEXT,
        handlelength=1.0,
        columnspacing=1.6,
        borderaxespad=0,
        handletextpad=0.5,
        prop=font,
        title=title,
        title_fontproperties=font,
        alignment="left",
    )
    if legend.get_title():
        legend.get_title().set_color(DIM)


def draw(
    dashboard: dict[str, Any],
    scrapes: list[Scrape],
    out: Path,
    rate_window: float,
    title: str,
    subtitle: str,
) -> list[str]:
    """Draws every panel; returns the titles of the panels that had no data."""
    canvas = Canvas(dashboard)
    canvas.text(canvas.GAP + 2, 34, title, color=TEXT, fontsize=17, fontweight="bold", va="center")
    canvas.text(canvas.GAP + 2, 72, subtitle, color=DIM, fontsize=10.5, va="center")
    times = _times(scrapes)
    empty = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            draw_row(canvas, panel)
            continue
        series = [
            s for t in panel.get("targets", []) for s in evaluate_target(t, scrapes, rate_window)
        ]
        if all(all(math.isnan(v) for v in s.values) for s in series):
            empty.append(panel["title"])
        if panel["type"] == "stat":
            draw_stat(canvas, panel, series, times)
        elif panel["type"] == "timeseries":
            draw_timeseries(canvas, panel, series, times)
        else:
            raise SystemExit(f"panel type {panel['type']!r} ({panel['title']}) is not drawn")
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.fig.savefig(out, facecolor=BG)
    return empty


# --- sampling --------------------------------------------------------------------------------


def metrics_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/metrics") else url + "/metrics"


async def sample(
    targets: dict[str, str], seconds: float, interval: float, failures: Counter[str]
) -> list[Scrape]:
    import httpx

    scrapes: list[Scrape] = []
    start = time.monotonic()
    async with httpx.AsyncClient(timeout=min(interval, 5.0)) as client:
        n = 0
        while True:
            t = time.time()
            scrape = Scrape(t)
            responses = await asyncio.gather(
                *(client.get(url) for url in targets.values()), return_exceptions=True
            )
            for (job, url), r in zip(targets.items(), responses, strict=True):
                if isinstance(r, BaseException) or r.status_code != 200:
                    failures[job] += 1
                    continue
                scrape.add(r.text, job, url.split("/")[2])
            scrapes.append(scrape)
            n += 1
            if n % 10 == 0:
                print(f"[render] {n} scrapes in {time.monotonic() - start:.0f} s", flush=True)
            due = start + n * interval
            if due - start > seconds + 1e-6:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
    return scrapes


# --- load ------------------------------------------------------------------------------------


@dataclass
class DriveStats:
    events: int = 0
    poison: Counter[str] = field(default_factory=Counter)
    api: Counter[str] = field(default_factory=Counter)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


EVENT_WEIGHTS = {
    "thread.message_added": 80,
    "thread.updated": 9,
    "thread.pinned": 3,
    "thread.unpinned": 3,
    "thread.deleted": 1.5,
    "thread.restored": 1.5,
    "thread.archived": 1,  # not in contract v1: skipped and counted
    "thread.reaction_added": 1,  # likewise
}
POISON_WEIGHTS = {"not_json": 70, "invalid_event": 15, "not_utf8": 8, "key_mismatch": 7}


class LoadEvents:
    """Events of a few hundred threads, as platform services would publish them."""

    def __init__(self, threads: int, poison: float, seed: int | None = None) -> None:
        from consumers.sample import cloud_event

        self.cloud_event = cloud_event
        self.rng = random.Random(seed)
        run = f"{int(time.time()) % 100000:05d}"
        self.ids = [f"thrd_load{run}_{i:04d}" for i in range(threads)]
        self.created: set[str] = set()
        self.messages: Counter[str] = Counter()
        self.poison = poison

    def _data(self, kind: str, tid: str) -> dict[str, Any]:
        n = int(tid.rsplit("_", 1)[1])
        rng = self.rng
        if kind == "thread.created":
            return {
                "organization_id": "org_load",
                "user_id": f"usr_load_{n % 17}",
                "assistant_id": f"asst_load_{n % 5}",
                "title": f"Load thread {n}",
                "metadata": {"source": "render.py --drive"},
                "space_ids": [f"space_load_{n % 3}"],
            }
        if kind == "thread.message_added":
            self.messages[tid] += 1
            assistant = rng.random() < 0.5
            return {
                "message_id": f"msg_{tid}_{self.messages[tid]}",
                "role": "assistant" if assistant else "user",
                "model": rng.choice(["gpt-4o", "gpt-4o-mini"]) if assistant else None,
            }
        if kind == "thread.updated":
            return rng.choice(
                [
                    {"title": f"Load thread {n} (renamed {rng.randrange(1000)})"},
                    {"status": rng.choice(["active", "inactive"])},
                    {"metadata": {"source": "render.py --drive", "n": str(rng.randrange(99))}},
                ]
            )
        return {}

    def next(self) -> tuple[bytes, bytes, str | None]:
        """(key, value, poison reason or None)."""
        rng = self.rng
        tid = rng.choice(self.ids)
        if rng.random() < self.poison:
            reason = rng.choices(list(POISON_WEIGHTS), weights=list(POISON_WEIGHTS.values()))[0]
            if reason == "not_json":
                return tid.encode(), b"{not json", reason
            if reason == "not_utf8":
                return tid.encode(), b'{"id": "\xff\xfe"}', reason
            event = self.cloud_event("thread.message_added", tid, _now(), {"role": "user"})
            if reason == "invalid_event":  # data.message_id missing
                return tid.encode(), json.dumps(event).encode(), reason
            event["data"] = {"message_id": f"msg_{tid}_x"}
            return b"thrd_someone_else", json.dumps(event).encode(), reason
        if tid not in self.created:
            kind = "thread.created"
            self.created.add(tid)
        else:
            kinds = list(EVENT_WEIGHTS)
            kind = rng.choices(kinds, weights=list(EVENT_WEIGHTS.values()))[0]
        event = self.cloud_event(kind, tid, _now(), self._data(kind, tid))
        return tid.encode(), json.dumps(event).encode(), None


async def produce(
    stop: asyncio.Event, rate: float, threads: int, poison: float, stats: DriveStats
) -> None:
    from aiokafka import AIOKafkaProducer

    from services.settings import get_settings

    settings = get_settings()
    try:
        from consumers.topics import ensure_topics

        await ensure_topics(settings)
    except Exception as exc:  # the projector creates the topic too
        print(f"[render] could not ensure topics ({exc!r}); publishing anyway", file=sys.stderr)
    events = LoadEvents(threads, poison)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
    )
    await producer.start()
    headers = [("content-type", b"application/cloudevents+json")]
    try:
        start = time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - start) * rate) - stats.events - sum(stats.poison.values())
            futures = []
            for _ in range(max(0, due)):
                key, value, reason = events.next()
                futures.append(await producer.send(settings.topic, value, key=key, headers=headers))
                if reason:
                    stats.poison[reason] += 1
                else:
                    stats.events += 1
            if futures:
                await asyncio.gather(*futures)
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()


async def call_api(
    stop: asyncio.Event, base: str, key: str | None, per_second: float, stats: DriveStats
) -> None:
    import httpx

    rng = random.Random()
    auth = {"X-API-Key": key} if key else {}
    after: str | None = None
    calls: list[tuple[float, Callable[[], tuple[str, dict[str, str]]]]] = [
        (30, lambda: ("/v1/threads", auth)),
        (20, lambda: (f"/v1/threads?limit=2{'&after=' + after if after else ''}", auth)),
        (10, lambda: ("/v1/threads?include_total=true&order=asc", auth)),
        (8, lambda: ("/v1/threads?is_pinned=true", auth)),
        (12, lambda: ("/v1/threads/thrd_abc123", auth)),
        (4, lambda: ("/v1/threads/thrd_no_such_thread", auth)),
        (4, lambda: ("/v1/threads?limit=1000", auth)),  # out of range: a 4xx
        (4, lambda: ("/v1/threads", {})),  # no key: 401
        (2, lambda: ("/healthz", {})),  # probes: served, not counted in http_requests_total
        (2, lambda: ("/readyz", {})),
    ]
    weights = [w for w, _ in calls]
    async with httpx.AsyncClient(base_url=base, timeout=5.0) as client:
        while not stop.is_set():
            path, headers = rng.choices(calls, weights=weights)[0][1]()
            if not key and headers is auth:
                path, headers = "/v1/threads", {}
            try:
                r = await client.get(path, headers=headers)
                stats.api[str(r.status_code)] += 1
                if path.startswith("/v1/threads?limit=2") and r.status_code == 200:
                    body = r.json()
                    after = body.get("last_id") if body.get("has_more") else None
            except (httpx.HTTPError, ValueError) as exc:
                stats.api[type(exc).__name__] += 1
            await asyncio.sleep(rng.expovariate(per_second))


# --- self-check ------------------------------------------------------------------------------


def simulated_scrapes(ticks: int = 46, interval: float = 2.0) -> list[Scrape]:
    """Exposition text from prometheus_client itself, for a known, steady load."""
    from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
    from prometheus_client import Counter as PCounter

    proj, api = CollectorRegistry(), CollectorRegistry()
    fs = ["app_name", "broker", "handler"]
    applied = PCounter("threadview_events_applied", "", registry=proj)
    skipped = PCounter("threadview_events_skipped", "", ["type"], registry=proj)
    dead = PCounter("threadview_events_dead_lettered", "", ["reason"], registry=proj)
    batch = Histogram(
        "threadview_batch_records", "", buckets=(1, 10, 50, 100, 250, 500), registry=proj
    )
    store = Histogram("threadview_store_write_seconds", "", registry=proj)
    retries = PCounter("threadview_store_retries", "", ["cause"], registry=proj)
    lag = Gauge("threadview_consumer_lag_records", "", ["topic", "partition"], registry=proj)
    fresh = Gauge(
        "threadview_projection_freshness_seconds", "", ["topic", "partition"], registry=proj
    )
    last = Gauge("threadview_last_batch_timestamp_seconds", "", registry=proj)
    fs_recv = PCounter("faststream_received_messages", "", fs, registry=proj)
    fs_done = PCounter("faststream_received_processed_messages", "", [*fs, "status"], registry=proj)
    fs_dur = Histogram(
        "faststream_received_processed_messages_duration_seconds", "", fs, registry=proj
    )
    PCounter(  # never raised: no series, as in a healthy projector
        "faststream_received_processed_messages_exceptions",
        "",
        [*fs, "exception_type"],
        registry=proj,
    )
    requests = PCounter("http_requests", "", ["handler", "method", "status"], registry=api)
    latency = Histogram(
        "http_request_duration_seconds", "", ["handler", "method", "status"], registry=api
    )
    fsl = ("threadview-projector", "kafka", "threads.events")
    rng = random.Random(7)
    t0 = time.time() - ticks * interval
    scrapes = []
    for i in range(ticks):
        t = t0 + i * interval
        applied.inc(600)  # 300/s
        dead.labels("not_json").inc(4)  # 2/s
        skipped.labels("thread.archived").inc(2)
        for _ in range(10):  # 5 batches/s of 60 records (le=100 bucket)
            batch.observe(60)
            store.observe(0.02 + rng.random() * 0.01)  # 20-30 ms: le=0.025 and le=0.05
            fs_recv.labels(*fsl).inc()
            fs_done.labels(*fsl, "acked").inc()
            fs_dur.labels(*fsl).observe(0.03)
        retries.labels("conflict").inc(1 if i % 3 == 0 else 0)
        for p in range(6):
            lag.labels("threads.events", str(p)).set(10 * p + (i % 4))
        for p in range(6):  # partition 5 the worst; at 0.8 s on the last scrape
            fresh.labels("threads.events", str(p)).set((0.8 + (i % 5) * 0.1) * (p + 1) / 6)
        last.set(t - 0.1)
        for _ in range(9):
            requests.labels("/v1/threads", "GET", "2xx").inc()
            latency.labels("/v1/threads", "GET", "2xx").observe(0.004)
        requests.labels("/v1/threads", "GET", "5xx").inc()  # 10 % of 5 req/s
        latency.labels("/v1/threads", "GET", "5xx").observe(0.2)
        scrape = Scrape(t)
        scrape.add(generate_latest(proj).decode(), "threadview-projector", "sim:8001")
        scrape.add(generate_latest(api).decode(), "threadview-api", "sim:8000")
        scrapes.append(scrape)
    return scrapes


def self_check(dashboard: dict[str, Any], out: Path) -> None:
    scrapes = simulated_scrapes()
    window = 10.0

    def last(title: str, ref: str = "A", name: str | None = None) -> float:
        series = [  # two panels may share a title (a stat and its timeseries)
            s
            for panel in dashboard["panels"]
            if panel["title"] == title
            for target in panel["targets"]
            if target["refId"] == ref
            for s in evaluate_target(target, scrapes, window)
        ]
        chosen = [s for s in series if name is None or s.name == name]
        assert chosen, (title, ref, name, [s.name for s in series])
        return chosen[0].values[-1]

    checks = {
        ("Events applied / s", "A", None): (300, 1e-9),
        ("Dead-lettered / s by reason", "A", "not_json"): (2, 1e-9),
        ("Events / s: applied and skipped", "B", "skipped thread.archived"): (1, 1e-9),
        ("Total consumer lag", "A", None): (150 + 6 * (45 % 4), 1e-9),
        ("Consumer lag per partition", "A", "threads.events p5"): (50 + 45 % 4, 1e-9),
        ("Projection freshness", "A", "freshness"): (0.8, 1e-9),
        ("Projection freshness", "A", "threads.events p5"): (0.8, 1e-9),
        ("Time since last batch", "A", None): (0.1, 1e-6),
        # 60 records, all in (50, 100]: p50 = 50 + 50 * 0.5 = 75, p95 = 97.5
        ("Batch size p50 / p95 (records)", "A", "p50"): (75, 1e-9),
        ("Batch size p50 / p95 (records)", "B", "p95"): (97.5, 1e-9),
        ("FastStream processed messages / s by status", "A", "acked"): (5, 1e-9),
        ("FastStream processed messages / s by status", "B", "received"): (5, 1e-9),
        ("API requests / s by handler and status", "A", "/v1/threads 2xx"): (4.5, 1e-9),
        ("API 5xx ratio", "A", "5xx ratio"): (0.1, 1e-9),
        # 90 % of requests at 4 ms, in the first bucket (0, 0.005]: p50 = 0.005 * 0.5 / 0.9
        ("API latency p50 / p95 / p99 by handler", "A", "/v1/threads p50"): (
            0.005 * 0.5 / 0.9,
            1e-9,
        ),
    }
    for (title, ref, name), (want, tol) in checks.items():
        got = last(title, ref, name)
        assert abs(got - want) <= tol * max(1, abs(want)), f"{title} {ref} {name}: {got} != {want}"
    p95 = last("Store write latency p50 / p95 / p99", "B", "p95")
    assert 0.025 <= p95 <= 0.05, p95
    assert histogram_quantile(0.5, [(1, 0), (math.inf, 0)]) != histogram_quantile(
        0.5, [(1, 0), (math.inf, 0)]
    )  # NaN without observations
    assert Parser('sum by (a) (rate(x{b=~"c|d"}[1m]))').parse() == Aggregate(
        "sum", ("a",), Call("rate", (Selector("x", (("b", "=~", "c|d"),), 60.0),))
    )
    empty = draw(
        dashboard,
        scrapes,
        out,
        window,
        SELF_CHECK_TITLE,
        f"simulated exposition text (prometheus_client), {len(scrapes)} scrapes 2 s apart; "
        f"rate window {window:g} s",
    )
    assert empty == [], empty
    print(f"[render] self-check ok: {len(checks) + 3} checks, every panel drawn -> {out}")


# --- main ------------------------------------------------------------------------------------


def demo_key() -> str | None:
    path = ROOT / ".cache" / "run" / "demo-key"
    if not path.exists():
        return None
    return path.read_text().strip() or None


async def run(args: argparse.Namespace, dashboard: dict[str, Any]) -> tuple[list[Scrape], str]:
    targets = {
        "threadview-projector": metrics_url(args.projector),
        "threadview-api": metrics_url(args.api_metrics),
    }
    import httpx

    async with httpx.AsyncClient(timeout=5) as client:
        for job, url in targets.items():
            try:
                r = await client.get(url)
                r.raise_for_status()
            except httpx.HTTPError as exc:
                raise SystemExit(f"[render] {job}: {url} does not answer ({exc!r})") from exc
            if job == "threadview-projector" and "threadview_" not in r.text:
                print(f"[render] warning: no threadview_ metrics at {url}", file=sys.stderr)

    stats = DriveStats()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    key = args.key or demo_key()
    if args.drive:
        sys.path.insert(0, str(ROOT))
        tasks = [
            asyncio.create_task(produce(stop, args.rate, args.threads, args.poison, stats)),
            asyncio.create_task(
                call_api(
                    stop, args.api.rstrip("/").removesuffix("/metrics"), key, args.api_rate, stats
                )
            ),
        ]
        print(f"[render] driving load for {args.warmup:g} s before sampling")
        await asyncio.sleep(args.warmup)
    failures: Counter[str] = Counter()
    sampler = asyncio.create_task(sample(targets, args.seconds, args.interval, failures))
    try:  # a load task that fails stops the sampling: a picture without its load says nothing
        await asyncio.wait([sampler, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():  # they only end when told to
                sampler.cancel()
                raise SystemExit(f"[render] --drive stopped: {task.exception()!r}")
        scrapes = await sampler
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    for job, n in failures.items():
        print(f"[render] warning: {n} failed scrapes of {job}", file=sys.stderr)
    when = datetime.fromtimestamp(scrapes[0].t).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    subtitle = (
        f"{len(scrapes)} scrapes every {args.interval:g} s from {when} of "
        f"{targets['threadview-projector']} and {targets['threadview-api']}; "
        f"rate window ($__rate_interval) {args.rate_window:g} s"
    )
    if args.drive:
        bad = sum(stats.poison.values())
        total = stats.events + bad
        seconds = args.seconds + args.warmup
        api = ", ".join(f"{k}: {v}" for k, v in sorted(stats.api.items()))
        subtitle += (
            f"\nload (render.py --drive): {total} records in {seconds:g} s "
            f"(~{total / seconds:.0f}/s over {args.threads} threads, {bad} poison: "
            f"{', '.join(f'{k} {v}' for k, v in sorted(stats.poison.items()))}); "
            f"{sum(stats.api.values())} API calls ({api})"
        )
        print(f"[render] {subtitle.splitlines()[1]}")
    return scrapes, subtitle


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    projector_port = os.environ.get("THREADVIEW_PROJECTOR_PORT", "8001")
    api_port = os.environ.get("THREADVIEW_API_PORT", "8000")
    ops_port = os.environ.get("THREADVIEW_API_OPS_PORT", "8002")
    parser.add_argument(
        "--projector",
        default=f"http://127.0.0.1:{projector_port}",
        help="the projector's base URL or /metrics URL",
    )
    parser.add_argument(
        "--api", default=f"http://127.0.0.1:{api_port}", help="the API's base URL (its calls)"
    )
    parser.add_argument(
        "--api-metrics",
        default=f"http://127.0.0.1:{ops_port}",
        help="the API's ops port, base URL or /metrics URL (its metrics)",
    )
    parser.add_argument("--seconds", type=float, default=90, help="how long to sample")
    parser.add_argument("--interval", type=float, default=2, help="seconds between scrapes")
    parser.add_argument(
        "--rate-window", type=float, default=10, help="seconds that $__rate_interval stands for"
    )
    parser.add_argument("--out", type=Path, default=HERE / "dashboard.png")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument(
        "--drive", action="store_true", help="publish events and call the API while sampling"
    )
    parser.add_argument("--key", help="X-API-Key for --drive (default: .cache/run/demo-key)")
    parser.add_argument("--rate", type=float, default=300, help="events/s with --drive")
    parser.add_argument("--threads", type=int, default=400, help="threads with --drive")
    parser.add_argument("--poison", type=float, default=0.01, help="share of poison records")
    parser.add_argument("--api-rate", type=float, default=5, help="API calls/s with --drive")
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds of load before sampling (default 6 with --drive)",
    )
    parser.add_argument(
        "--self-check",
        action="store_true",
        help="render simulated metrics, check the numbers, no servers",
    )
    args = parser.parse_args(argv)
    dashboard = json.loads(args.dashboard.read_text())
    if args.self_check:
        out = (
            args.out
            if args.out != HERE / "dashboard.png"
            else Path("/tmp/threadview-dashboard-selfcheck.png")
        )
        self_check(dashboard, out)
        return
    if args.warmup is None:
        args.warmup = 6.0 if args.drive else 0.0
    scrapes, subtitle = asyncio.run(run(args, dashboard))
    if len(scrapes) < 3:
        raise SystemExit("[render] too few scrapes to draw rates")
    empty = draw(dashboard, scrapes, args.out, args.rate_window, TITLE, subtitle)
    for title in empty:
        print(f"[render] no data: {title}", file=sys.stderr)
    print(f"[render] wrote {args.out}")


if __name__ == "__main__":
    main()
