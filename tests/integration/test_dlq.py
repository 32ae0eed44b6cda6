"""threadview-dlq against real Kafka and the real store: list and show dead letters, and
re-drive them once each after their cause is fixed.

Why this module is longer than ~200 lines: every command and output of threadview-dlq against
one dead-letter topic written once for the module.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer

from consumers.dead_letters import dead_letter_headers
from consumers.dlq_output import render_value
from consumers.sample import cloud_event
from consumers.topics import ensure_topics, reader, topic_offsets
from services.mongo.bootstrap import Services
from services.mongo.redrive_marks import MARKS
from services.projector import Record
from services.redrive import REDRIVEN_FROM
from services.settings import Settings
from testkit.kafka import Raw, create_topic, read_all, structured
from testkit.processes import run_cli

pytestmark = pytest.mark.integration

THREAD = "thrd_dlq_1"
# what an older projector said about two valid events (a bug since fixed), and a real reason
WRONG = "subject does not match the record key"
BAD = "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2"
NOT_UTF8 = b"\xff\x00\x01"


@dataclass(frozen=True)
class DeadLetter:
    """One record written to the dead-letter topic, as the projector's committer writes it."""

    original: Raw
    reason: str
    origin: tuple[str, int, int]
    offset: int = -1  # in partition 0 of the dead-letter topic, once written


async def write_dead_letters(
    settings: Settings, transactions: Sequence[Sequence[DeadLetter]]
) -> list[DeadLetter]:
    """Publish dead letters to partition 0 of the DLQ, one Kafka transaction per group, as
    consumers/committer.py does (each commit marker takes an offset: the offsets have gaps)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        transactional_id=f"test-dlq-{uuid4().hex}",
        enable_idempotence=True,
        acks="all",
    )
    await producer.start()
    written = []
    try:
        for letters in transactions:
            async with producer.transaction():
                for letter in letters:
                    key, value, headers = letter.original
                    topic, partition, offset = letter.origin
                    record = Record(topic, partition, offset, key, value, headers, 1_700_000_000)
                    sent = await producer.send_and_wait(
                        settings.dlq_topic,
                        value,
                        key=key,
                        partition=0,
                        headers=dead_letter_headers(record, letter.reason),
                    )
                    written.append(DeadLetter(**{**letter.__dict__, "offset": sent.offset}))
    finally:
        await producer.stop()
    return written


@pytest.fixture
async def letters(settings: Settings) -> list[DeadLetter]:
    """A thread.created and a thread.message_added refused by an older projector's bug, and a
    record that is not JSON at all; the message carries a header that is not UTF-8."""
    await ensure_topics(settings)
    created = structured(
        cloud_event(
            "thread.created",
            THREAD,
            "2025-11-17T10:00:00Z",
            {"organization_id": "org_a", "user_id": "usr_a", "title": "Redriven"},
        )
    )
    key, value, headers = structured(
        cloud_event(
            "thread.message_added",
            THREAD,
            "2025-11-17T10:05:00Z",
            {"message_id": "msg_1", "role": "user"},
        )
    )
    message = (key, value, [*headers, ("x-trace", NOT_UTF8)])
    bad: tuple[bytes, bytes, list[tuple[str, bytes]]] = (b"thrd_dlq_bad", b"{not json", [])
    return await write_dead_letters(
        settings,
        [
            [
                DeadLetter(created, WRONG, (settings.topic, 1, 7)),
                DeadLetter(bad, BAD, (settings.topic, 2, 40)),
            ],
            [DeadLetter(message, WRONG, (settings.topic, 1, 9))],
        ],
    )


def dlq(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("consumers.dlq", settings, *args)


def dlq_json(settings: Settings, *args: str) -> Any:
    done = dlq(settings, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def at(letter: DeadLetter) -> str:
    """The PARTITION:OFFSET form, which works whatever the DLQ's partition count."""
    return f"0:{letter.offset}"


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = reader(settings)
    await consumer.start()
    try:
        return (await topic_offsets(consumer, topic)).end
    finally:
        await consumer.stop()


async def test_a_dead_letter_redriven_after_its_cause_is_fixed_is_applied_once(
    settings: Settings, services: Services, letters: list[DeadLetter], run_process: Any
) -> None:
    created, bad, message = letters
    marks = services.database[MARKS]
    before = await end_offsets(settings, settings.topic)

    # a dry run says what would go, and sends and marks nothing
    dry = dlq_json(settings, "redrive", "--dry-run", "--reason", "SUBJECT does not")
    assert (dry["selected"], dry["would_redrive"], dry["redriven"]) == (2, 2, 0)
    assert [r["status"] for r in dry["records"]] == ["would re-drive"] * 2
    assert await end_offsets(settings, settings.topic) == before
    assert await marks.count_documents({}) == 0

    projector = run_process("consumers.projector", settings)
    done = dlq_json(settings, "redrive", "--reason", "subject does not")
    assert (done["selected"], done["redriven"], done["already_redriven"]) == (2, 2, 0)
    redriven = {r["id"]: r for r in done["records"]}
    ids = [f"{settings.dlq_topic}:0:{letter.offset}" for letter in (created, message)]
    assert sorted(redriven) == sorted(ids)

    # on the events topic: the original key, value and headers, plus where each came from
    sent = await read_all(settings.kafka_bootstrap_servers, settings.topic, expect=2)
    assert len(sent) == 2
    by_value = {r.value: r for r in sent}
    for letter, mark_id in zip((created, message), ids, strict=True):
        key, value, headers = letter.original
        record = by_value[value]
        assert record.key == key
        assert list(record.headers) == [*headers, (REDRIVEN_FROM, mark_id.encode())]
        assert redriven[mark_id]["target"] == f"{settings.topic}:{record.partition}:{record.offset}"
        mark = await marks.find_one({"_id": mark_id})
        assert mark is not None
        assert (mark["topic"], mark["partition"], mark["offset"]) == (
            settings.topic,
            record.partition,
            record.offset,
        )
    assert await marks.count_documents({}) == 2

    # the projector applies them: the thread is listed, with its one message
    deadline = time.monotonic() + 60
    thread = None
    while time.monotonic() < deadline:
        thread = await services.store.read(THREAD)
        if thread is not None and thread.get("message_count") == 1:
            break
        assert projector.popen.poll() is None, projector.output()
        await asyncio.sleep(0.2)
    assert thread is not None and thread["message_count"] == 1, projector.output()
    assert thread["title"] == "Redriven"

    # once each: the same selection again sends nothing
    produced = await end_offsets(settings, settings.topic)
    assert sum(produced.values()) - sum(before.values()) == 2
    again = dlq_json(settings, "redrive", "--reason", "subject does not")
    assert (again["selected"], again["redriven"], again["already_redriven"]) == (2, 0, 2)
    assert {r["target"] for r in again["records"]} == {r["target"] for r in done["records"]}
    assert await end_offsets(settings, settings.topic) == produced
    assert await marks.count_documents({}) == 2
    # and the projector took them as valid: nothing new in the dead-letter topic
    assert dlq_json(settings, "list")["count"] == 3


async def test_list_and_show_describe_the_dead_letters(
    settings: Settings, letters: list[DeadLetter]
) -> None:
    created, bad, message = letters
    listed = dlq_json(settings, "list")
    single = listed["partitions"] == 1
    assert listed["count"] == 3
    assert listed["reasons"] == {WRONG: 2, "not valid JSON": 1}
    rows = listed["dead_letters"]
    assert [(r["partition"], r["offset"]) for r in rows] == [(0, x.offset) for x in letters]
    assert [r["address"] for r in rows] == [str(x.offset) if single else at(x) for x in letters]
    assert [r["reason"] for r in rows] == [WRONG, BAD, WRONG]  # in full
    assert [r["origin"] for r in rows] == [
        f"{settings.topic}:1:7",
        f"{settings.topic}:2:40",
        f"{settings.topic}:1:9",
    ]
    assert [r["key"] for r in rows] == [THREAD, "thrd_dlq_bad", THREAD]
    assert all(r["failed_at"] for r in rows)

    def addresses(*args: str) -> list[int]:
        return [r["offset"] for r in dlq_json(settings, "list", *args)["dead_letters"]]

    assert addresses("--reason", "json") == [bad.offset]
    assert addresses("--from", at(bad)) == [bad.offset, message.offset]
    assert addresses("--to", at(bad)) == [created.offset, bad.offset]
    assert addresses("--from", at(bad), "--to", at(bad)) == [bad.offset]
    assert addresses("--from", at(message), "--reason", "json") == []
    if single:  # a bare offset names a record of a one-partition topic
        assert addresses("--from", str(message.offset)) == [message.offset]

    # on a terminal: a table with reasons shortened, then the counts per kind of reason
    table = dlq(settings, "list")
    assert table.returncode == 0, table.stderr
    assert BAD not in table.stdout and BAD[:40] in table.stdout
    assert "3 dead letters" in table.stdout
    assert f"2  {WRONG}" in table.stdout and "1  not valid JSON" in table.stdout

    shown = dlq_json(settings, "show", at(message))
    key, value, headers = message.original
    assert value is not None
    assert (shown["key"], shown["value"], shown["value_encoding"]) == (
        THREAD,
        value.decode(),
        "text",
    )
    assert shown["size"] == len(value) and shown["timestamp"]
    names = [h["name"] for h in shown["headers"]]
    assert names == [name for name, _ in headers] + [
        "dlq.reason",
        "dlq.topic",
        "dlq.partition",
        "dlq.offset",
        "dlq.timestamp",
        "dlq.failed_at",
    ]
    values = {h["name"]: h["value"] for h in shown["headers"]}
    assert values["x-trace"] == "hex:ff0001"
    assert values["dlq.reason"] == WRONG
    assert (values["dlq.topic"], values["dlq.partition"], values["dlq.offset"]) == (
        settings.topic,
        "1",
        "9",
    )
    assert dlq_json(settings, "show", at(bad))["value"] == "{not json"
    assert render_value(NOT_UTF8) == ("/wAB", "base64")

    text = dlq(settings, "show", at(message))
    assert text.returncode == 0 and "hex:ff0001" in text.stdout and WRONG in text.stdout


async def test_a_bad_offset_or_topic_is_a_one_line_error(
    settings: Settings, letters: list[DeadLetter]
) -> None:
    created, bad, message = letters
    marker = bad.offset + 1  # the first transaction's commit marker
    for args in (
        ["show", "abc"],
        ["show", "0:-1"],
        ["show", "0:1:2"],
        ["show", "7:0"],  # no such partition
        ["show", f"0:{message.offset + 5}"],  # past the end
        ["show", f"0:{marker}"],  # an offset that holds no record
        ["list", "--from", "x"],
        ["redrive", "--to", "zz"],
    ):
        done = dlq(settings, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("threadview-dlq: "), (args, done.stderr)

    # a topic with several partitions: a bare offset is ambiguous, PARTITION:OFFSET is not
    wide = settings.model_copy(update={"dlq_topic": f"{settings.dlq_topic}.wide"})
    await create_topic(settings.kafka_bootstrap_servers, wide.dlq_topic, 2)
    await write_dead_letters(wide, [[DeadLetter(bad.original, BAD, (settings.topic, 0, 1))]])
    ambiguous = dlq(wide, "show", "0")
    assert ambiguous.returncode == 2 and "PARTITION:OFFSET" in ambiguous.stderr
    assert dlq_json(wide, "show", "0:0")["address"] == "0:0"

    missing = dlq(settings.model_copy(update={"dlq_topic": "test.no.such.dlq"}), "list")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
