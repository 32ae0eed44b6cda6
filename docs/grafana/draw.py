"""Draw docs/grafana/dashboard.png: every panel of threadview.json, from a real Prometheus.

    .venv/bin/python docs/grafana/draw.py --prometheus URL [--minutes 30] [--out PNG]
    .venv/bin/python docs/grafana/draw.py --drive [--seconds 90] [--rate 300] [--key KEY]

Each panel's own queries go to Prometheus' /api/v1/query_range, with the dashboard's variables
filled in as Grafana does (each job variable: the jobs its label_values() finds), and are drawn
where the dashboard puts the panel, one line per series, named by the query's legend.
--drive draws the local stack under load: with scripts/run's projector and API running, it
starts a Prometheus of its own (testkit/prometheus.py: built by `scripts/stack prometheus`,
scraping both every second), publishes ~--rate records/s (1 % poison, 1 % of an unknown type)
and calls the API a few times a second (X-API-Key from --key, else .cache/run/demo-key) for
--seconds, then draws that window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from testkit import prometheus as prom  # noqa: E402  (the repository's root, just above)

UNITS = {"s": "seconds", "percentunit": "ratio", "reqps": "requests/s", "short": ""}


def draw(
    client: prom.Client, dashboard: dict[str, Any], window: tuple[float, float], scrape: float
) -> Any:
    """The figure: one small plot per panel, laid out by the panels' gridPos."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    start, end = window
    step = max(scrape, (end - start) / 240)
    values = prom.variables(client, dashboard)
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    fig = plt.figure(figsize=(22, height * 0.42))
    grid = fig.add_gridspec(
        height, 24, hspace=1.6, wspace=1.2, left=0.04, right=0.99, top=0.95, bottom=0.02
    )
    for row in (p for p in dashboard["panels"] if p["type"] == "row"):
        y = row["gridPos"]["y"]
        ax = fig.add_subplot(grid[y : y + 1, :])
        ax.axis("off")
        ax.text(0, 0, row["title"], fontsize=15, weight="bold", transform=ax.transAxes)
    for panel in prom.panels(dashboard):
        pos = panel["gridPos"]
        ax = fig.add_subplot(
            grid[pos["y"] + 1 : pos["y"] + pos["h"], pos["x"] : pos["x"] + pos["w"]]
        )
        last = ""
        for query in prom.queries(panel):
            expr = prom.substitute(query.expr, values, step, scrape)
            for series in client.query_range(expr, start, end, step):
                seconds = np.array([float(t) for t, _ in series["values"]])
                days = seconds / 86400  # matplotlib dates: days since 1970 (UTC)
                points = [float(v) for _, v in series["values"]]
                name = prom.legend(query.legend, series["metric"])
                ax.plot(days, points, label=name, linewidth=1.2)
                last = f"{points[-1]:.3g}"
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        title = panel["title"] + (f"  (now {last})" if panel["type"] == "stat" and last else "")
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_ylabel(UNITS.get(unit, unit), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))  # type: ignore[no-untyped-call]
        ax.grid(alpha=0.3)
        ax.set_xlim(start / 86400, end / 86400)
        if ax.lines and panel["type"] != "stat":
            ax.legend(fontsize=6, loc="upper left", ncol=2)
        elif not ax.lines:
            ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes, color="grey")
    return fig


async def drive(args: argparse.Namespace, folder: Path) -> tuple[Any, str]:
    """Prometheus over scripts/run's projector and API under load: the figure, what was sent."""
    from services.settings import get_settings

    settings = get_settings()
    key = args.key or (ROOT / ".cache" / "run" / "demo-key").read_text().strip()
    targets = {
        prom.PROJECTOR_JOB: f"127.0.0.1:{settings.projector_port}",
        prom.API_JOB: f"127.0.0.1:{settings.api_ops_port}",
    }
    with prom.running(targets, folder) as server:
        server.wait(lambda: server.targets_up() == dict.fromkeys(targets, "up"), "targets down")
        start = time.time()
        sent = await prom.drive(
            settings.kafka_bootstrap_servers,
            settings.topic,
            f"http://127.0.0.1:{settings.api_port}",
            key,
            seconds=args.seconds,
            rate=args.rate,
            org="org_12345",  # the demo key's organization
        )
        stop = time.time()
        await asyncio.sleep(3)  # the last scrapes
        window = (start + 5, stop)  # the first rates need two scrapes
        dashboard = json.loads(prom.DASHBOARD.read_text())
        fig = draw(server, dashboard, window, 1.0)
        api = ", ".join(f"{k[4:]}: {v}" for k, v in sorted(sent.items()) if k.startswith("api "))
        return fig, (
            f"load: {sent['records']} records in {args.seconds:g} s ({sent['poison']} poison, "
            f"{sent['unknown']} of an unknown type); API calls by status: {api}; "
            "Prometheus 3 scraping both every 1 s"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", help="a Prometheus that scrapes the projector and the API")
    parser.add_argument("--minutes", type=float, default=30, help="the window with --prometheus")
    parser.add_argument("--scrape", type=float, default=15, help="its scrape interval (seconds)")
    parser.add_argument("--drive", action="store_true", help="the local stack under load")
    parser.add_argument("--seconds", type=float, default=90, help="how long --drive drives")
    parser.add_argument("--rate", type=float, default=300, help="records/s with --drive")
    parser.add_argument("--key", help="X-API-Key for --drive (default: .cache/run/demo-key)")
    parser.add_argument("--out", type=Path, default=HERE / "dashboard.png")
    args = parser.parse_args(argv)
    if args.drive == bool(args.prometheus):
        parser.error("one of --prometheus URL or --drive")
    if args.drive:
        with tempfile.TemporaryDirectory(prefix="threadview-prometheus-") as folder:
            fig, subtitle = asyncio.run(drive(args, Path(folder)))
    else:
        client = prom.Client(args.prometheus)
        end = time.time()
        dashboard = json.loads(prom.DASHBOARD.read_text())
        fig = draw(client, dashboard, (end - args.minutes * 60, end), args.scrape)
        subtitle = f"from {args.prometheus}, last {args.minutes:g} minutes"
    fig.suptitle(
        f"threadview: docs/grafana/threadview.json, queried from Prometheus (UTC)\n{subtitle}",
        fontsize=13,
    )
    fig.savefig(args.out, dpi=80)
    print(f"[draw] wrote {args.out}")


if __name__ == "__main__":
    main()
