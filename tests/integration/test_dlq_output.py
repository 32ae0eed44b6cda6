"""threadview-dlq's output against real Kafka: what a producer put in a record cannot steer
the operator's terminal, and a selection is read as it is printed, never held whole."""

from __future__ import annotations

import inspect
import json

import pytest
from aiokafka import TopicPartition

from consumers import dlq_topic as dlq
from consumers.topics import ensure_topics
from services.mongo.bootstrap import Services
from services.settings import Settings
from testkit.kafka import Raw
from tests.integration.test_dlq import DeadLetter, write_dead_letters
from tests.integration.test_dlq import dlq as run

pytestmark = pytest.mark.integration

KEY = b"thrd_\x1b[2J_key"
VALUE = '{"title": "first"}\n\x1b[2J\x1b]0;owned\x07\x9b31m\r\u2028done'
REASON = "not_json: \x1b[31mred\x1b[0m\nFAKE LINE"


@pytest.fixture
async def hostile(settings: Settings) -> DeadLetter:
    """A dead letter whose key, header, value and reason hold ANSI sequences and newlines."""
    await ensure_topics(settings)
    raw: Raw = (KEY, VALUE.encode(), [("x-note", b"line1\r\nline2\x1b[1A")])
    (letter,) = await write_dead_letters(
        settings, [[DeadLetter(raw, REASON, (settings.topic, 0, 3))]]
    )
    return letter


def _no_controls(text: str) -> None:
    for char in ("\x1b", "\x9b", "\x07", "\r", "\u2028"):
        assert char not in text, (char, text)


async def test_producer_bytes_print_escaped(
    settings: Settings, services: Services, hostile: DeadLetter
) -> None:
    address = f"0:{hostile.offset}"
    # when: shown, listed and (dry) re-driven as text
    text = run(settings, "show", address)
    listed = run(settings, "list")
    redriven = run(settings, "redrive", "--dry-run")
    # then: every control character is an escape, the value one line
    for done in (text, listed, redriven):
        assert done.returncode == 0, done.stderr
        _no_controls(done.stdout)
    shown = '{"title": "first"}\\n\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\r\\u2028done'
    assert text.stdout.splitlines()[-1] == shown
    assert "line1\\r\\nline2\\x1b[1A" in text.stdout
    assert "thrd_\\x1b[2J_key" in listed.stdout and "thrd_\\x1b[2J_key" in redriven.stdout
    assert not any(line.startswith("FAKE LINE") for line in listed.stdout.splitlines())
    # and as JSON: valid, the very same values, with no raw control character either
    for args in (["show", address], ["list"], ["redrive", "--dry-run"]):
        done = run(settings, *args, "--json")
        assert done.returncode == 0, done.stderr
        _no_controls(done.stdout)
        assert len(done.stdout.splitlines()) == 1
        parsed = json.loads(done.stdout)
        if args[0] == "show":
            assert parsed["value"] == VALUE and parsed["key"] == KEY.decode()
        else:
            rows = parsed["dead_letters" if args[0] == "list" else "records"]
            assert [r["key"] for r in rows] == [KEY.decode()]
            assert [r["reason"] for r in rows] == [REASON]


async def test_a_selection_is_read_as_it_is_used(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: 60 dead letters, read 10 a fetch
    await ensure_topics(settings)
    letter = DeadLetter((b"k", b"{}", []), "not_json: x", (settings.topic, 0, 1))
    written = await write_dead_letters(settings, [[letter] * 60])
    monkeypatch.setattr(dlq, "FETCH_RECORDS", 10)
    assert inspect.isasyncgenfunction(dlq.records)
    consumer, topic = await dlq._open(settings)
    try:
        selected = dlq.records(consumer, topic, dlq.Selection())
        # when: the first record is taken
        first = await anext(selected)
        # then: no more than one fetch has been read from the topic
        position = await consumer.position(TopicPartition(topic.name, first.partition))
        assert first.offset == written[0].offset
        assert position <= written[0].offset + 10 < topic.offsets.end[first.partition]
        rest = [record.offset async for record in selected]
    finally:
        await consumer.stop()
    assert [first.offset, *rest] == [w.offset for w in written]

    # and the commands get the selection as such an iterator, not as a list
    async with dlq._selected(settings, None, None, None) as (_, chosen):
        assert inspect.isasyncgen(chosen)
