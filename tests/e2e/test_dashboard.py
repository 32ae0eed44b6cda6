"""The Grafana dashboard checked by the real Prometheus: every query of every panel of
docs/grafana/threadview.json, run by Prometheus 3 (scripts/stack prometheus) over the
projector's and the API's /metrics during a short load, answers without error and with data."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import httpx
import pytest

from services.settings import Settings
from testkit.prometheus import (
    API_JOB,
    DASHBOARD,
    PROJECTOR_JOB,
    PrometheusError,
    drive,
    finite,
    legend,
    panels,
    queries,
    running,
    substitute,
    variables,
)

pytestmark = pytest.mark.e2e

SCRAPE = STEP = 1.0  # seconds: the scrape interval, and the step of the range queries
# A healthy run raises in no handler: this metric's query answers with its fallback series
# (`or on() label_replace(vector(0), ...)`, label "none"), and its name is checked against what
# the projector exposes instead. (The other fallbacks, dead letters and skipped types, must show
# their real series: the load makes both.)
MAY_BE_ZERO = {"faststream_received_processed_messages_exceptions_total"}


async def test_every_dashboard_query_answers_from_the_real_prometheus(
    settings: Settings,
    run_process: Any,
    api_client: httpx.Client,
    service_key: str,
    tmp_path: Any,
) -> None:
    # given: the projector and the API (api_client), and Prometheus scraping both every second
    settings = settings.model_copy(update={"lag_interval_seconds": 1.0})
    projector = run_process("consumers.projector", settings)
    targets = {
        PROJECTOR_JOB: f"127.0.0.1:{settings.projector_port}",
        API_JOB: f"127.0.0.1:{settings.api_ops_port}",
    }
    dashboard = json.loads(DASHBOARD.read_text())
    with running(targets, tmp_path, interval=SCRAPE) as server:
        server.wait(lambda: server.targets_up() == dict.fromkeys(targets, "up"), "targets not up")

        # when: records flow (some poison, some of an unknown type) and the API is called
        start = time.time()
        sent = await drive(
            settings.kafka_bootstrap_servers,
            settings.topic,
            str(api_client.base_url),
            service_key,
            seconds=15,
            rate=100,
            poison=0.03,
            unknown=0.03,
            api_rate=5,
        )
        assert sent["poison"] and sent["unknown"] and sent["api 400"] + sent["api 404"], sent

        def caught_up() -> bool:  # every record handled, as Prometheus saw it
            def value(expr: str) -> float:
                result = server.api("query", query=expr)["result"]
                return float(result[0]["value"][1]) if result else -1

            return (
                value("sum(threadview_events_dead_lettered_total)") >= sent["poison"]
                and value("sum(threadview_events_skipped_total)") >= sent["unknown"]
                and value("sum(threadview_consumer_lag_records)") == 0
            )

        try:
            server.wait(caught_up, "the projector did not catch up", 90)
        except RuntimeError as exc:
            pytest.fail(f"{exc}\n--- projector log ---\n{projector.output()}")
        await asyncio.sleep(3 * SCRAPE)  # the last rates' samples
        end = time.time()

        # then: the variables find one job each, as Grafana would list them
        values = variables(server, dashboard)
        assert values == {"projector_job": [PROJECTOR_JOB], "api_job": [API_JOB]}, values

        # and every query answers, with numbers, from metrics its job exposes
        problems, legends = [], {}
        for panel in panels(dashboard):
            for query in queries(panel):
                where = f"panel {query.panel!r}, query {query.ref}"
                expr = substitute(query.expr, values, STEP, SCRAPE)
                try:
                    series = server.query_range(expr, start, end, STEP)
                except PrometheusError as exc:
                    problems.append(f"{where}: {exc}\n    {expr}")
                    continue
                if not finite(series):
                    problems.append(f"{where}: no data\n    {expr}")
                    continue
                job = PROJECTOR_JOB if "$projector_job" in query.expr else API_JOB
                metrics = set(re.findall(r"([a-zA-Z_:][\w:]*)\{", query.expr))
                problems += [
                    f"{where}: {job} exposes no {m}" for m in metrics if not server.exposes(job, m)
                ]
                labels = re.findall(r"\{\{\s*(\w+)\s*\}\}", query.legend)
                real = [
                    s for s in series if all(s["metric"].get(k, "none") != "none" for k in labels)
                ]
                if labels and not real and not metrics & MAY_BE_ZERO:
                    problems.append(f"{where}: only the fallback series, no {labels}\n    {expr}")
                legends[query.panel, query.ref] = {
                    legend(query.legend, s["metric"]) for s in series
                }
        assert not problems, "\n".join(problems)

        # and the load shows where it should
        assert {"not_json", "invalid_event"} <= legends["Dead-lettered / s by reason", "A"]
        assert "skipped thread.archived" in legends["Events / s: applied and skipped", "B"]
        statuses = {
            s.rsplit(" ", 1)[1] for s in legends["API requests / s by handler and status", "A"]
        }
        assert {"200", "400", "401", "404"} <= statuses, statuses
