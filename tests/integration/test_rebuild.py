"""threadview-rebuild against real Kafka and the real store: full and point-in-time rebuilds,
diff, export, and what the project's topics are created with.

Why this module is longer than ~200 lines: the rebuild's commands end to end (run, resume,
status, diff, export, gc, fold refusals), one test each over one set-up.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from consumers import build, compare
from consumers.progress import JsonLines
from consumers.swap import swap as swap_view
from consumers.topics import ensure_topics
from services.decoding import EVENT_MODELS, decode
from services.events import Event, LogPosition
from services.mongo.bootstrap import Services, bootstrap
from services.projection import FOLD_VERSION, ThreadState, fold, view
from services.settings import Settings
from services.views import READY, ViewError
from testkit.kafka import lag, produce
from testkit.logs import ORGS, Log, comparable, generate, reference
from testkit.processes import run_cli
from tests.fault.harness import assert_every_list_query_answers, published, states_of

pytestmark = pytest.mark.integration


async def rebuilt(services: Services, name: str, **options: Any) -> dict[str, Any]:
    return await build.run(services, name, JsonLines(every=60), **options)


def fold_of(records: list[Any], as_of: datetime | None = None) -> dict[str, ThreadState]:
    events: dict[str, list[Event]] = {}
    for i, (key, value, headers) in enumerate(records):
        decoded = decode(key, value, headers)
        if not isinstance(decoded, EVENT_MODELS):
            continue
        decoded.at(LogPosition(0, 0, i))  # the log's order (see testkit.logs.reference)
        if as_of is None or decoded.time <= as_of:
            events.setdefault(decoded.subject, []).append(decoded)
    return {thread: comparable(fold(None, batch)) for thread, batch in events.items()}


@pytest.fixture
async def log(settings: Settings) -> Log:
    return await published(settings, generate(seed=11, threads=300))


async def test_a_rebuild_is_the_fold_of_the_whole_log_and_leaves_live_alone(
    services: Services, log: Log
) -> None:
    summary = await rebuilt(services, "full")

    assert await states_of(services, "full") == reference(log)
    counts = summary["counts"]
    assert counts["records"] == summary["records"] == len(log.records)
    assert (counts["rejected"], counts["unknown"]) == (len(log.poison), log.unknown)
    built = await services.catalog.require("full")
    assert built.state == READY and built.fold_version == FOLD_VERSION
    assert built.reached == built.end and sum(built.end.values()) == len(log.records)
    assert await services.store.threads.count_documents({}) == 0  # the live view: untouched
    assert (await services.catalog.pointer()).live == "main"
    # the indexes were built after the load: every request family is served exactly
    served = replace(services, store=services.store_of(built))
    await assert_every_list_query_answers(served, [view(s) for s in reference(log).values()])
    with pytest.raises(ViewError, match="exists already|exists and is ready"):
        await rebuilt(services, "full")


async def test_as_of_keeps_the_events_up_to_a_time(services: Services, log: Log) -> None:
    events = [decode(*record) for record in log.records]
    times = sorted(e.time for e in events if isinstance(e, EVENT_MODELS))
    cut = times[len(times) // 2]

    await rebuilt(services, "then", as_of=cut)

    expected = fold_of(log.records, as_of=cut)
    assert len(expected) < len(reference(log)) or expected != reference(log)
    assert await states_of(services, "then") == expected
    assert (await services.catalog.require("then")).as_of == cut


async def test_as_was_keeps_the_records_appended_by_a_time(
    settings: Settings, services: Services
) -> None:
    generated = generate(seed=12, threads=200)
    half = len(generated.records) // 2
    await ensure_topics(settings)  # LogAppendTime: a record's time is when the broker took it
    await produce(settings.kafka_bootstrap_servers, settings.topic, generated.records[:half])
    await asyncio.sleep(0.05)
    cut = datetime.now(UTC)
    await asyncio.sleep(0.05)
    await produce(settings.kafka_bootstrap_servers, settings.topic, generated.records[half:])

    summary = await rebuilt(services, "was", as_was=cut)

    assert summary["records"] == half
    assert await states_of(services, "was") == fold_of(generated.records[:half])


async def test_diff_reports_exactly_the_changed_threads(
    settings: Settings, services: Services, log: Log
) -> None:
    await rebuilt(services, "a")
    await rebuilt(services, "b")
    a = services.store_of(await services.catalog.require("a"))
    b = services.store_of(await services.catalog.require("b"))
    same = await compare.diff(a, b)
    created = [t for t, state in reference(log).items() if state.creation is not None]
    assert not same.differ and same.same == len(created)
    assert _cli(settings, "diff", "a", "b").returncode == 0

    ids = sorted(created)
    await b.threads.update_one({"_id": ids[0]}, {"$set": {"title": "tampered"}})
    await b.layout.activity.update_one({"_id": ids[1]}, {"$inc": {"n": 1}}, upsert=True)
    await b.threads.update_one({"_id": ids[2]}, {"$set": {"rev": 99, "clock.title.id": "x"}})
    await b.threads.delete_one({"_id": ids[3]})
    copied = await a.threads.find_one({"_id": ids[4]})
    assert copied is not None
    await b.threads.insert_one({**copied, "_id": "thrd_zz"})

    found = await compare.diff(a, b)

    assert (found.changed, found.only_a, found.only_b) == (2, 1, 1)  # rev and clocks: not data
    assert {(s["id"], s["kind"], tuple(s["fields"])) for s in found.sample} == {
        (ids[0], "changed", ("title",)),
        (ids[1], "changed", ("message_count",)),
        (ids[3], "only in A", ()),
        ("thrd_zz", "only in B", ()),
    }
    shown = _cli(settings, "diff", "a", "b", "--json")
    assert shown.returncode == 1, shown.stderr
    assert json.loads(shown.stdout)["changed"] == 2


async def test_export_round_trips_to_the_api_documents(
    settings: Settings, services: Services, log: Log, tmp_path: Path
) -> None:
    await rebuilt(services, "x")
    out = tmp_path / "x.jsonl"
    done = _cli(settings, "export", "x", "--format", "jsonl", "--out", str(out))
    assert done.returncode == 0, done.stderr
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    listed = {t for t, s in reference(log).items() if s.creation is not None}
    assert [t["id"] for t in exported] == sorted(listed)

    # the same documents as the API answers, served from that view (THREADVIEW_VIEW)
    from api.main import create_app

    pinned = settings.model_copy(update={"view": "x"})
    app = create_app(pinned)
    app.state.services = await bootstrap(pinned)
    _, key = await services.keys.create("service", list(ORGS))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://t", headers={"X-API-Key": key}
    ) as client:
        for thread in exported[::7]:
            answered = await client.get(f"/v1/threads/{thread['id']}")
            assert answered.status_code == 200 and answered.json() == thread
    await app.state.services.close()

    csv_out = tmp_path / "x.csv"
    assert _cli(settings, "export", "x", "--format", "csv", "--out", str(csv_out)).returncode == 0
    assert len(csv_out.read_text().splitlines()) == len(exported) + 1


async def test_project_topics_never_expire_and_carry_append_times(settings: Settings) -> None:
    await ensure_topics(settings)
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, t) for t in (settings.topic, settings.dlq_topic)
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        # a topic just created may not have reached the broker's metadata yet: its describe
        # then answers UNKNOWN_TOPIC_OR_PARTITION with no entries (CI, once); ask again
        for _ in range(50):
            described = [
                resource
                for response in await admin.describe_configs(resources)
                for resource in response.resources
            ]
            if all(resource[0] == 0 for resource in described):
                break
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    assert len(described) == 2
    for resource in described:
        assert resource[0] == 0, resource
        configs = {entry[0]: entry[1] for entry in resource[4]}
        assert configs["retention.ms"] == "-1", resource[3]
        assert configs["retention.bytes"] == "-1"
        assert configs["message.timestamp.type"] == "LogAppendTime"


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("consumers.rebuild", settings, *args)


async def test_a_projector_refuses_a_live_view_of_another_fold_until_a_swap_fixes_it(
    settings: Settings, services: Services, run_process: Any, log: Log
) -> None:
    # given: the live view built by another fold version, on a pointer older than the field
    # (the catalog entry says it), and records waiting
    await services.catalog.update("main", fold_version=FOLD_VERSION - 1)
    await services.catalog.pointers.update_one({"_id": "live"}, {"$unset": {"fold_version": ""}})
    projector = run_process("consumers.projector", settings)
    readyz = f"http://127.0.0.1:{settings.projector_port}/readyz"
    why = (
        f"the live view 'main' was built by fold version {FOLD_VERSION - 1}; this projector "
        f"folds with {FOLD_VERSION}: rebuild it (threadview-rebuild run, then swap)"
    )

    # then: it says so at ERROR and is unready at once, and writes and commits nothing
    async def refusing() -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(readyz)
        return answer.status_code == 503 and answer.json()["problems"] == [why]

    await _until(refusing, projector)
    await asyncio.sleep(3)  # a few batch attempts
    assert await lag(settings.kafka_bootstrap_servers, settings.topic, settings.consumer_group)
    assert await services.store.threads.count_documents({}) == 0
    assert f"ERROR services.projector not writing; the batch waits: {why}" in projector.output()
    assert "store unavailable" not in projector.output()  # not told as a store failure

    # when: a view of this fold version is built and swapped in
    await rebuilt(services, "fixed")
    await swap_view(services, "fixed", JsonLines(every=60))

    # then: the stalled batch goes on from its committed offsets, into the new view, exactly
    async def caught_up() -> bool:
        return not await lag(
            settings.kafka_bootstrap_servers, settings.topic, settings.consumer_group
        )

    await _until(caught_up, projector)
    assert await states_of(services, "fixed") == reference(log)
    assert await services.store.threads.count_documents({}) == 0  # main: never written
    output = projector.output()
    assert output.count("not writing; the batch waits") == 1, output  # however many attempts
    assert f"writing again; no longer refused: {why}" in output

    async def ready() -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(readyz)).status_code == 200

    await _until(ready, projector)


async def _until(check: Any, process: Any, deadline: float = 90) -> None:
    end = time.monotonic() + deadline
    while True:
        try:
            if await check():
                return
        except httpx.HTTPError:
            pass  # not listening yet
        assert process.popen.poll() is None, process.output()
        assert time.monotonic() < end, process.output()[-3000:]
        await asyncio.sleep(0.3)


async def test_an_api_on_a_view_that_does_not_exist_refuses_to_start(
    settings: Settings, services: Services
) -> None:
    with pytest.raises(ViewError, match="no view named 'nope'"):
        await bootstrap(settings.model_copy(update={"view": "nope"}))
