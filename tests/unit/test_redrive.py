"""The redrive use case on fakes of its ports: once each, the mark only after the send, a
truncated copy never sent, a dry run changing nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import pytest

from consumers import dead_letters
from services import redrive
from services.projector import Record
from services.redrive import Headers, Mark, Outcome, Target


class Marks:
    def __init__(self) -> None:
        self.kept: dict[str, Mark] = {}

    async def find(self, mark_id: str) -> Target | None:
        mark = self.kept.get(mark_id)
        return mark.target if mark else None

    async def add(self, mark: Mark) -> None:
        self.kept.setdefault(mark.id, mark)


class Sender:
    def __init__(self, marks: Marks, fail: bool = False) -> None:
        self.sent: list[tuple[bytes | None, bytes | None, Headers]] = []
        self.marks, self.fail = marks, fail
        self.marked_when_sent: list[int] = []

    async def send(self, key: bytes | None, value: bytes | None, headers: Headers) -> Target:
        self.marked_when_sent.append(len(self.marks.kept))
        if self.fail:
            raise ConnectionError("broker gone")
        self.sent.append((key, value, headers))
        return Target("events", 0, 100 + len(self.sent))


def letter(offset: int, *extra: tuple[str, bytes], reason: str = "not_json: x") -> Record:
    original = Record("events", 2, 40 + offset, b"k", b"{}", [("h", b"1"), *extra], 0)
    copy = dead_letters.dead_letter(original, reason)
    return Record("events.dlq", 0, offset, copy.key, copy.value, copy.headers, 0)


async def each(records: Iterable[Record]) -> AsyncIterator[Record]:
    for record in records:
        yield record


async def run(records: list[Record], marks: Marks, sender: Sender | None) -> list[Outcome]:
    return [o async for o in redrive.redrive(each(records), marks, sender)]


def test_the_core_names_the_dead_letter_paths_header() -> None:
    assert redrive.TRUNCATED == dead_letters.TRUNCATED


async def test_sent_once_marked_after_the_send_with_its_origin_named() -> None:
    marks = Marks()
    sender = Sender(marks)
    first = await run([letter(0), letter(1)], marks, sender)
    assert [o.status for o in first] == [redrive.REDRIVEN] * 2
    assert sender.marked_when_sent == [0, 1]  # each sent before its own mark was written
    assert marks.kept["events.dlq:0:0"].target == Target("events", 0, 101)
    assert marks.kept["events.dlq:0:0"].reason == "not_json: x"
    key, value, headers = sender.sent[0]
    assert (key, value) == (b"k", b"{}")
    assert headers == [("h", b"1"), (redrive.REDRIVEN_FROM, b"events.dlq:0:0")]
    # a rerun sends nothing, and says where each went
    again = await run([letter(0), letter(1)], marks, sender)
    assert [(o.status, str(o.target)) for o in again] == [
        (redrive.ALREADY, "events:0:101"),
        (redrive.ALREADY, "events:0:102"),
    ]
    assert len(sender.sent) == 2


async def test_a_failed_send_leaves_no_mark() -> None:
    marks = Marks()
    with pytest.raises(ConnectionError):
        await run([letter(0)], marks, Sender(marks, fail=True))
    assert marks.kept == {}


async def test_a_dry_run_sends_and_marks_nothing() -> None:
    marks = Marks()
    done = await run([letter(0)], marks, None)
    assert [(o.status, o.target) for o in done] == [(redrive.WOULD, None)]
    assert marks.kept == {}


async def test_a_truncated_copy_is_never_sent_a_producers_header_of_that_name_is_no_cut() -> None:
    marks = Marks()
    sender = Sender(marks)
    big = Record("events", 0, 7, b"k", b"x" * 4096, [], 0)
    cut = dead_letters.dead_letter(big, "too_large: x", 1024)
    truncated = Record("events.dlq", 0, 5, cut.key, cut.value, cut.headers, 0)
    whole = letter(6, ("dlq.truncated", b"value"), ("threadview.redriven_from", b"old"))
    done = await run([truncated, whole], marks, sender)
    assert [o.status for o in done] == [redrive.SKIPPED_TRUNCATED, redrive.REDRIVEN]
    # the producer's own headers kept but the dlq.* ones and an earlier redrive's mark
    assert sender.sent[0][2] == [("h", b"1"), (redrive.REDRIVEN_FROM, b"events.dlq:0:6")]


def test_what_a_copy_says_of_itself() -> None:
    record = letter(3, ("bin", b"\xff"))
    assert redrive.reason(record) == "not_json: x"
    assert redrive.origin(record) == "events:2:43"
    assert redrive.text(b"\xff") == "hex:ff"
    assert redrive.mark_id(record) == "events.dlq:0:3"
