"""Views: named copies of the read model, and which one is live. Pure: the catalog's records
and the rules over them; services.mongo.views keeps them in the store (services.ports.ViewCatalog
is what the use cases see).

A view is a collection of thread documents. The first, ``main``, is the ``threads`` collection
the projector writes from its first start; ``threadview-rebuild`` makes others
(``threads_<name>``) by replaying the log. The catalog records how each was built (:class:`View`);
the pointer (:class:`Pointer`) names the live view, the one the API serves and the projector
writes, and during a swap also the ``next`` one, which the projector then writes too.

Why this module is longer than ~200 lines: the catalog's records (View, Handover, Pointer) and
the pure rules over them (building, fold refusal, settlement) are one vocabulary that the swap,
the rebuild and the drop share.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, TypeGuard
from uuid import uuid4

from services import owners
from services.projection import FOLD_VERSION

MAIN = "main"
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")
LIVE = "live"  # the pointer document's _id, and what `live` means wherever a view is named

# a rebuild's states; only a ready view can be served or swapped in
BUILDING, INTERRUPTED, FAILED, READY = "building", "interrupted", "failed", "ready"


class ViewError(Exception):
    """A view operation that cannot be done, with a message for the operator."""


def check_name(name: str) -> str:
    if name == LIVE or not NAME.fullmatch(name):
        raise ViewError(
            f"bad view name {name!r}: 1-48 characters of a-z, 0-9, '-' and '_', starting with "
            f"a letter or digit, and not {LIVE!r}"
        )
    return name


def collection_of(name: str) -> str:
    return "threads" if name == MAIN else f"threads_{name}"


@dataclass
class View:
    """A view's catalog entry. Offsets are per partition of ``topic``: ``begin`` and ``end``
    bound the records a rebuild read, ``reached`` is how far the view has caught up since (a
    swap advances it). Stored with the partitions as text, as BSON keys must be."""

    name: str
    collection: str
    state: str
    fold_version: int = FOLD_VERSION
    topic: str | None = None
    as_of: datetime | None = None  # only events whose time is at most this
    as_was: datetime | None = None  # only records appended to the log by then
    begin: dict[int, int] = field(default_factory=dict)
    end: dict[int, int] = field(default_factory=dict)
    reached: dict[int, int] = field(default_factory=dict)
    done: list[int] = field(default_factory=list)  # partitions loaded in full
    # per partition, how far a rebuild's flushes have merged it into the view and what it
    # counted up to there: {"offset": next offset to read, "counts": Tally}; a resumed rebuild
    # reads each partition on from its checkpoint
    checkpoint: dict[int, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    heartbeat_at: datetime | None = None
    finished_at: datetime | None = None
    live_since: datetime | None = None
    retired_at: datetime | None = None
    error: str | None = None
    owner: dict[str, Any] = field(default_factory=dict)  # the building process: host, pid

    @property
    def point_in_time(self) -> bool:
        return self.as_of is not None or self.as_was is not None

    def to_document(self) -> dict[str, Any]:
        document = {k: stored_value(k, v) for k, v in asdict(self).items()}
        document["_id"] = document.pop("name")
        return document

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> View:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in document.items() if k in known}
        for name in OFFSETS:
            values[name] = {int(p): o for p, o in values.get(name, {}).items()}
        return cls(name=document["_id"], **values)


OFFSETS = ("begin", "end", "reached", "checkpoint")  # keyed by partition


def stored_value(name: str, value: Any) -> Any:
    return {str(p): o for p, o in value.items()} if name in OFFSETS else value


@dataclass(frozen=True)
class Handover:
    """A swap in progress, as the pointer records it: which view, which attempt (``id``), who
    runs it and when it was last heard of. A pointer written before swaps recorded themselves
    may have ``next`` set and no record: that is a handover with no id and no owner, dead."""

    view: str
    id: str = ""
    owner: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None

    def dead(self, now: datetime | None = None) -> bool:
        return owners.dead(self.owner, self.heartbeat_at, now)

    def describe(self, now: datetime | None = None) -> str:
        return owners.describe(self.owner, self.heartbeat_at, now)

    def match(self) -> dict[str, Any]:
        """The pointer filter that holds while this very handover is the one in progress."""
        return {"swap.id": self.id} if self.id else {"swap": None, "next": self.view}

    def to_document(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_document(cls, pointer: Mapping[str, Any]) -> Handover | None:
        """The handover a pointer document records, if any."""
        if swap := pointer.get("swap"):
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in swap.items() if k in known})
        return cls(pointer["next"]) if pointer.get("next") else None

    @classmethod
    def new(cls, view: str, owner: dict[str, Any]) -> Handover:
        now = datetime.now(UTC)
        return cls(view, uuid4().hex, owner, now, now)


def building(view: View, now: datetime | None = None) -> bool:
    """A rebuild of ``view`` is running: its entry says building and its owner is alive."""
    beat = view.heartbeat_at or view.created_at
    return view.state == BUILDING and not owners.dead(view.owner, beat, now)


@dataclass(frozen=True)
class Pointer:
    live: str
    next: str | None = None  # a handover in progress: the projector writes both
    fold_version: int | None = None  # the live view's; None on pointers older than the field
    next_fold_version: int | None = None
    swap: Handover | None = None
    previous: str | None = None  # the last flip retired it ...
    swapped_at: datetime | None = None  # ... then
    previous_reached: dict[int, int] = field(default_factory=dict)
    settled: bool = True  # the catalog entries say what the last flip did
    dropping: tuple[str, ...] = ()

    @classmethod
    def from_document(cls, found: Mapping[str, Any]) -> Pointer:
        return cls(
            found["view"],
            found.get("next"),
            found.get("fold_version"),
            found.get("next_fold_version"),
            Handover.from_document(found),
            found.get("previous"),
            found.get("swapped_at"),
            {int(p): o for p, o in (found.get("previous_reached") or {}).items()},
            found.get("settled") is not False,
            tuple(found.get("dropping") or ()),
        )


def fold_refusal(pointer: Pointer, entries: Mapping[str, int], ours: int) -> str | None:
    """Why a projector folding with version ``ours`` must not write the views ``pointer``
    names (None: it may). ``entries``: the views' catalog fold versions, for pointers that do
    not carry them."""
    live = pointer.fold_version if pointer.fold_version is not None else entries.get(pointer.live)
    if live is not None and live != ours:
        return (
            f"the live view {pointer.live!r} was built by fold version {live}; this projector "
            f"folds with {ours}: rebuild it (threadview-rebuild run, then swap)"
        )
    if pointer.next is None:
        return None
    version = pointer.next_fold_version
    version = entries.get(pointer.next) if version is None else version
    if version is not None and version != ours:
        return (
            f"the view {pointer.next!r} being swapped in was built by fold version {version}; "
            f"this projector folds with {ours}: run projectors of version {version}, or abort "
            "the swap (threadview-rebuild swap --abort)"
        )
    return None


def settlement(
    pointer: Pointer, live: View | None, previous: View | None
) -> dict[str, dict[str, Any]]:
    """What the catalog entries still lack of the pointer's last flip: per view, the values to
    set. The new live view is live since the flip; the one it replaced is retired since then
    and has read at least what the group had committed before it. Every value comes from the
    pointer, so settling twice, or from two processes at once, writes the same. An entry a
    later swap has moved on (its ``live_since`` or ``retired_at`` after this flip) is left
    alone."""
    at = pointer.swapped_at
    if pointer.settled or at is None or pointer.previous is None:
        return {}
    todo: dict[str, dict[str, Any]] = {}
    if _open(live, at) and (live.live_since != at or live.retired_at is not None):
        todo[live.name] = {"live_since": at, "retired_at": None}
    if _open(previous, at) and previous.name != pointer.live and previous.retired_at != at:
        reached = dict(previous.reached)
        for p, offset in pointer.previous_reached.items():
            reached[p] = max(reached.get(p, 0), offset)
        todo[previous.name] = {"retired_at": at, "reached": reached}
    return todo


def _open(view: View | None, at: datetime) -> TypeGuard[View]:
    """An entry no swap after ``at`` has moved on (the settle of the flip at ``at`` may write
    it): neither its ``live_since`` nor its ``retired_at`` is later."""
    return view is not None and not any(t and t > at for t in (view.live_since, view.retired_at))
