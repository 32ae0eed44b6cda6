"""A dead-letter copy of a refused record: the record, why and where from, within a byte budget.

A copy the producer or the dead-letter topic refuses would fail the batch's transaction, and the
batch would be replayed forever (consumers.committer), so every copy is kept under a budget;
the original stays in its source topic, where the ``dlq.*`` headers point.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from services.projector import Record

Headers = list[tuple[str, bytes]]

DEFAULT_BUDGET = 512 * 1024  # settings.dlq_max_bytes
TRUNCATED = "dlq.truncated"  # on a cut copy: the parts of the record it lacks
REASON_CHARS = 2000  # a reason is for people; one that quotes a huge field is cut
# What the copy's size counts beyond its bytes, at most: the batch header (61) and a record's
# own overhead (21) that aiokafka's size estimate adds, the header count, and each field's
# length varint (at most 5 bytes). An upper bound of what the producer checks against
# max_request_size, and additive, so that the parts of a copy can be budgeted one by one.
RECORD_OVERHEAD = 61 + 21 + 5
FIELD_OVERHEAD = 5


@dataclass(frozen=True)
class Copy:
    """A dead-letter record as it is sent: key, value and headers."""

    key: bytes | None
    value: bytes | None
    headers: Headers

    @property
    def size(self) -> int:
        """An upper bound of the record's size as the producer and the broker count it."""
        return RECORD_OVERHEAD + _field(self.key) + _field(self.value) + _headers(self.headers)


def _field(raw: bytes | None) -> int:
    return FIELD_OVERHEAD + len(raw or b"")


def _header(name: str, value: bytes) -> int:
    return _field(name.encode()) + _field(value)


def _headers(headers: Headers) -> int:
    return sum(_header(name, value) for name, value in headers)


def dead_letter_headers(record: Record, reason: str) -> Headers:
    """The original headers, then why the record was refused, where it came from and when."""
    if len(reason) > REASON_CHARS:
        reason = reason[: REASON_CHARS - 1] + "…"
    return [
        *record.headers,
        ("dlq.reason", reason.encode()),
        ("dlq.topic", record.topic.encode()),
        ("dlq.partition", str(record.partition).encode()),
        ("dlq.offset", str(record.offset).encode()),
        ("dlq.timestamp", str(record.timestamp).encode()),
        ("dlq.failed_at", datetime.now(UTC).isoformat(timespec="milliseconds").encode()),
    ]


def dead_letter(record: Record, reason: str, budget: int = DEFAULT_BUDGET) -> Copy:
    """The dead-letter copy of ``record``: whole when it fits in ``budget`` bytes, else cut.

    A copy the producer or the dead-letter topic refuses would fail the batch's transaction,
    and the batch would be replayed forever; the original stays in its source topic (the
    ``dlq.topic``/``partition``/``offset`` headers say where), so the copy may be partial.
    A cut copy shares the room left by the ``dlq.*`` headers fairly between key, original
    headers and value: a part needing less than its share is kept whole and leaves the rest to
    the others; the key and the value keep a prefix, the headers the first ones that fit, in
    order. It says so: ``dlq.truncated`` names the parts cut (``key``, ``headers``,
    ``value``), ``dlq.original_size`` and ``dlq.original_sha256`` describe the whole value.
    ``budget`` must leave room for the ``dlq.*`` headers (about 9 kB at most; the settings
    allow no budget under 16 KiB).
    """
    headers = dead_letter_headers(record, reason)
    own = headers[len(record.headers) :]
    whole = Copy(record.key, record.value, headers)
    if whole.size <= budget:
        return whole
    value = record.value or b""
    marks = [
        ("dlq.original_size", str(len(value)).encode()),
        ("dlq.original_sha256", hashlib.sha256(value).hexdigest().encode()),
    ]
    longest_mark = _header(TRUNCATED, b"key,headers,value")
    room = budget - Copy(None, None, [*own, *marks]).size - longest_mark
    room += 2 * FIELD_OVERHEAD  # counted in Copy.size above, and again in each part's share
    key_room, header_room = _shares(
        room, _field(record.key), _headers(record.headers), _field(record.value)
    )
    key = _prefix(record.key, key_room)
    kept = _first_headers(record.headers, header_room)
    value_room = room - _field(key) - _headers(kept)
    cut_value = _prefix(record.value, value_room)
    cut = [
        part
        for part, was_cut in (
            ("key", key != record.key),
            ("headers", len(kept) < len(record.headers)),
            ("value", cut_value != record.value),
        )
        if was_cut
    ]
    truncated = (TRUNCATED, ",".join(cut).encode())
    return Copy(key, cut_value, [*kept, *own, truncated, *marks])


def _shares(room: int, key: int, headers: int, value: int) -> tuple[int, int]:
    """Max-min fair shares of ``room`` for the key and the headers (the value, third, takes
    what they leave): the smallest need first gets it all or a third, the next all or half of
    what is left."""
    needs = sorted([("key", key), ("headers", headers), ("value", value)], key=lambda n: n[1])
    shares: dict[str, int] = {}
    left = max(0, room)
    for done, (part, need) in enumerate(needs):
        shares[part] = min(need, left // (len(needs) - done))
        left -= shares[part]
    return shares["key"], shares["headers"]


def _prefix(raw: bytes | None, room: int) -> bytes | None:
    """The longest prefix of ``raw`` whose field fits in ``room`` (None stays None)."""
    if raw is None or _field(raw) <= room:
        return raw
    return raw[: max(0, room - FIELD_OVERHEAD)]


def _first_headers(headers: Headers, room: int) -> Headers:
    """The first headers, in order, that fit in ``room`` together."""
    kept: Headers = []
    for name, value in headers:
        room -= _header(name, value)
        if room < 0:
            break
        kept.append((name, value))
    return kept
