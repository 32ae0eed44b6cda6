"""The dead-letter copy's budget: whatever a rejected record weighs, its copy fits, says what
it lacks, and is whole whenever it can be."""

from __future__ import annotations

import hashlib

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumers.dead_letters import REASON_CHARS, Copy, dead_letter, dead_letter_headers
from services.projector import Record

KiB = 1024
OWN = ["dlq.reason", "dlq.topic", "dlq.partition", "dlq.offset", "dlq.timestamp", "dlq.failed_at"]
MARKS = ["dlq.truncated", "dlq.original_size", "dlq.original_sha256"]


def blob(size: int, seed: bytes) -> bytes:
    return (seed * (size // len(seed) + 1))[:size]


def blobs(most: int) -> st.SearchStrategy[bytes]:
    """Bytes of any size up to ``most``, cheap to make (a short random pattern repeated)."""
    return st.builds(blob, st.integers(0, most), st.binary(min_size=1, max_size=8))


headers = st.one_of(  # the usual few small headers, or any up to the broker's limit
    st.lists(st.tuples(st.text(min_size=1, max_size=40), blobs(200)), max_size=6),
    st.lists(st.tuples(st.text(min_size=1, max_size=40), blobs(400 * KiB)), max_size=12).filter(
        lambda hs: sum(len(v) for _, v in hs) <= 1100 * KiB
    ),
)
records = st.builds(
    Record,
    topic=st.text("abcdefghijklmnopqrstuvwxyz._-", min_size=1, max_size=249),
    partition=st.integers(0, 10_000),
    offset=st.integers(0, 2**62),
    key=st.none() | blobs(300 * KiB),
    value=st.none() | blobs(1100 * KiB),
    headers=headers,
    timestamp=st.integers(-1, 2**45),
)
reasons = st.builds(
    lambda code, detail: f"{code}: {detail}",
    st.sampled_from(["too_large", "not_json", "invalid_event"]),
    st.text(max_size=3000),
)
budgets = st.integers(16 * KiB, 2048 * KiB)


def ours(copy: Copy) -> int:
    """How many of the copy's last headers are the dead-letter path's own (a producer may send
    headers named ``dlq.*`` too: they come before, with the original headers)."""
    cut = [n for n, _ in copy.headers[-len(MARKS) :]] == MARKS
    return len(OWN) + len(MARKS) * cut


def named(copy: Copy) -> dict[str, bytes]:
    return dict(copy.headers[len(copy.headers) - ours(copy) :])


def big(value: int, header_sizes: tuple[int, ...] = (), key: int = 12) -> Record:
    kept = [(f"h{n}", blob(size, b"h")) for n, size in enumerate(header_sizes)]
    return Record("threads.events", 2, 41, blob(key, b"k"), blob(value, b"{"), kept, 1_700_000)


@settings(max_examples=300, deadline=None)
@given(records, reasons, budgets)
@example(big(1024 * KiB - 200, (30,)), "too_large: 1048376 bytes", 512 * KiB)  # the issue's
@example(big(10, (300 * KiB, 300 * KiB, 300 * KiB)), "invalid_event: x", 512 * KiB)
@example(big(900 * KiB, key=200 * KiB), "too_large: key", 16 * KiB)
@example(big(0, tuple(range(2000))), "not_json: many headers", 16 * KiB)
@example(  # a producer's own headers named like ours: kept as original headers, not read as ours
    Record("t", 0, 1, b"k", b"v", [("dlq.truncated", b"value"), ("dlq.reason", b"x")], 0),
    "not_json: x",
    512 * KiB,
)
def test_a_copy_fits_its_budget_and_says_what_it_lacks(
    record: Record, reason: str, budget: int
) -> None:
    copy = dead_letter(record, reason, budget)

    # it fits: as this module counts it, and as the producer does (max_request_size)
    estimate = DefaultRecordBatchBuilder.estimate_size_in_bytes(copy.key, copy.value, copy.headers)
    assert estimate <= copy.size <= budget

    # the dead-letter headers are always there, the reason cut to its limit
    own = named(copy)
    assert [n for n, _ in copy.headers[len(copy.headers) - ours(copy) :]][: len(OWN)] == OWN
    assert own["dlq.topic"] == record.topic.encode()
    assert own["dlq.partition"] == str(record.partition).encode()
    assert own["dlq.offset"] == str(record.offset).encode()
    shown = own["dlq.reason"].decode()
    assert len(shown) <= REASON_CHARS
    assert shown == reason or (shown.endswith("…") and reason.startswith(shown[:-1]))

    whole = Copy(record.key, record.value, dead_letter_headers(record, reason))
    original = copy.headers[: len(copy.headers) - ours(copy)]
    if whole.size <= budget:  # whole whenever it fits
        assert (copy.key, copy.value, original) == (record.key, record.value, record.headers)
        assert ours(copy) == len(OWN)  # no marks of a cut
        return

    # else a prefix of each part, and headers that name exactly what was cut
    value = record.value or b""
    assert [n for n, _ in copy.headers[-3:]] == MARKS
    assert own["dlq.original_size"] == str(len(value)).encode()
    assert own["dlq.original_sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert (copy.key is None) == (record.key is None) and (copy.value is None) == (
        record.value is None
    )
    assert (record.key or b"").startswith(copy.key or b"")
    assert value.startswith(copy.value or b"")
    assert original == record.headers[: len(original)]
    cut = {
        "key": copy.key != record.key,
        "headers": len(original) < len(record.headers),
        "value": copy.value != record.value,
    }
    assert own["dlq.truncated"].decode().split(",") == [part for part, c in cut.items() if c]
    if cut["value"]:  # a cut value takes all the room the others leave
        assert budget - copy.size <= len(b"key,headers,")


@given(st.none() | blobs(2000), st.none() | blobs(2000), headers)
def test_the_size_bounds_what_the_producer_counts(
    key: bytes | None, value: bytes | None, hs: list[tuple[str, bytes]]
) -> None:
    copy = Copy(key, value, hs)
    assert DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, hs) <= copy.size


def test_small_parts_are_kept_whole_beside_a_huge_value() -> None:
    # the record: a malformed value just under the broker's 1 MiB, a few headers
    record = big(1024 * KiB - 300, (40, 2000))
    copy = dead_letter(record, "not_json: Expecting value", 512 * KiB)
    assert copy.key == record.key
    assert [h for h in copy.headers if not h[0].startswith("dlq.")] == record.headers
    assert named(copy)["dlq.truncated"] == b"value"
    assert 500 * KiB < len(copy.value or b"") < 512 * KiB


def test_huge_headers_leave_the_value_whole_and_keep_the_first_that_fit() -> None:
    record = big(5000, (100, 300 * KiB, 50, 300 * KiB))
    copy = dead_letter(record, "invalid_event: x", 512 * KiB)
    assert copy.value == record.value
    assert [n for n, _ in copy.headers if n.startswith("h")] == ["h0", "h1", "h2"]
    assert named(copy)["dlq.truncated"] == b"headers"


def test_a_record_that_fits_is_copied_whole() -> None:
    record = big(100 * KiB, (10,))
    copy = dead_letter(record, "not_json: x", 512 * KiB)
    assert (copy.key, copy.value) == (record.key, record.value)
    assert [n for n, _ in copy.headers] == ["h0", *OWN]


def test_the_tool_reads_its_own_headers_not_a_producers_of_the_same_name() -> None:
    from services.redrive import header as _header

    record = Record("t", 0, 1, b"k", b"v", [("dlq.truncated", b"value"), ("dlq.reason", b"x")], 0)
    copy = dead_letter(record, "not_json: x")
    stored = Record("t.dlq", 0, 0, copy.key, copy.value, copy.headers, 0)
    assert _header(stored, "dlq.truncated") is None  # a whole copy: redriven
    assert _header(stored, "dlq.reason") == "not_json: x"
