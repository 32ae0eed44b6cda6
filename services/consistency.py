"""Consistency tokens: Kafka positions a client wants the view to hold, and the view they refer
to. Pure; no I/O.

A token names, per partition of the events topic, the offset of the *next* record after the
ones it covers (Kafka's own convention for committed offsets): the view holds a token's writes
once the projector has committed, for every partition named, an offset at least that high. The
projector commits a batch's offsets only after its store write (consumers/projector.py), so the
group's committed offsets are exactly what the live view is known to hold.

A producer makes a token from its produce acknowledgement (:func:`from_acks`: partition and
offset of each record it sent; no view, since a producer does not know which one is served);
every API response carries the token of what it was served from (the view's name and the
committed offsets it saw). A client merges the tokens it holds (:func:`merge`: the per-partition
maximum) and sends the merge back: an answer never shows the list older than a token it already
holds, on any API instance, because each waits until the offsets it serves from pass it.

The text form is ``tv1.<view or ->.<partition>:<offset>,...`` (printable ASCII, safe in a header
and a query string); bounded (:data:`MAX_PARTITIONS`, offsets below 2**63, view names as
services.views allows them), anything else is malformed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from services.views import NAME

PREFIX = "tv1"
MAX_PARTITIONS = 4096  # more than any topic we would run (docs/scaling.md: 12-48)
MAX_OFFSET = 2**63 - 1
MAX_TEXT = 64 * 1024
_POSITION = re.compile(r"(\d{1,5}):(\d{1,19})")


class BadToken(ValueError):
    """A token that is not one of ours, or out of its bounds."""


@dataclass(frozen=True)
class Token:
    positions: Mapping[int, int] = field(default_factory=dict)  # partition -> next offset
    view: str | None = None  # None: a producer's token, for whichever view is live

    def __str__(self) -> str:
        parts = ",".join(f"{p}:{o}" for p, o in sorted(self.positions.items()))
        return f"{PREFIX}.{self.view or '-'}.{parts}"

    def behind(self, applied: Mapping[int, int]) -> dict[int, int]:
        """The partitions where ``applied`` (next offsets) has not reached the token yet, with
        what the token wants there."""
        return {p: o for p, o in self.positions.items() if applied.get(p, 0) < o}


def parse(text: str) -> Token:
    """The token ``text`` names.

    Raises:
        BadToken: malformed or out of bounds (the message says which).
    """
    if len(text) > MAX_TEXT:
        raise BadToken(f"a token is at most {MAX_TEXT} characters")
    prefix, dot, rest = text.partition(".")
    view, dot2, body = rest.partition(".")
    if prefix != PREFIX or not dot or not dot2:
        raise BadToken(f"not a consistency token (they start with {PREFIX}.)")
    if view != "-" and not NAME.fullmatch(view):
        raise BadToken("the token names no valid view")
    positions: dict[int, int] = {}
    for item in body.split(",") if body else []:
        found = _POSITION.fullmatch(item)
        if found is None:
            raise BadToken(f"bad position {item[:40]!r}: partition:offset expected")
        partition, offset = int(found[1]), int(found[2])
        if partition >= MAX_PARTITIONS or offset > MAX_OFFSET or partition in positions:
            raise BadToken(f"position {item[:40]!r} out of bounds or repeated")
        positions[partition] = offset
    return Token(positions, None if view == "-" else view)


def merge(tokens: Iterable[Token]) -> Token:
    """The token that covers each of ``tokens``: per partition, the highest offset.

    Raises:
        BadToken: the tokens name two different views (one of them is stale: drop it).
    """
    positions: dict[int, int] = {}
    views = set()
    for token in tokens:
        if token.view is not None:
            views.add(token.view)
        for partition, offset in token.positions.items():
            positions[partition] = max(positions.get(partition, 0), offset)
    if len(views) > 1:
        raise BadToken(f"tokens of different views ({', '.join(sorted(views))}) cannot merge")
    return Token(positions, next(iter(views), None))


def from_acks(acks: Iterable[tuple[int, int]]) -> Token:
    """A producer's token from the (partition, offset) of each record it had acknowledged."""
    return merge(Token({partition: offset + 1}) for partition, offset in acks)
