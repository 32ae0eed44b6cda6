"""Views: named copies of the read model, and which one is live.

A view is a collection of thread documents. The first, ``main``, is the ``threads`` collection
the projector writes from its first start; ``threadview-rebuild`` makes others
(``threads_<name>``) by replaying the log. The catalog (collection ``views``) records how each
was built; one document in ``view_pointer`` names the live view, the one the API serves and the
projector writes, and during a swap also the ``next`` one, which the projector then writes too.

Nothing here needs a transaction: every change of the pointer is one conditional update of one
document, so concurrent swaps cannot both succeed.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

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
        document = {k: _stored(k, v) for k, v in asdict(self).items()}
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


def _stored(name: str, value: Any) -> Any:
    return {str(p): o for p, o in value.items()} if name in OFFSETS else value


@dataclass(frozen=True)
class Pointer:
    live: str
    next: str | None = None  # a swap in progress: the projector writes both


class ViewCatalog:
    """The catalog and the pointer, in the store's database."""

    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self.database = database
        self.views = database["views"]
        self.pointers = database["view_pointer"]

    async def ensure(self) -> None:
        """Record ``main`` and point at it, unless a pointer exists. Safe to run concurrently."""
        main = View(MAIN, collection_of(MAIN), READY).to_document()
        del main["_id"]
        for collection, key, values in (
            (self.views, MAIN, main),
            (self.pointers, LIVE, {"view": MAIN, "next": None}),
        ):
            # another process may insert it between our look and our write
            with contextlib.suppress(DuplicateKeyError):
                await collection.update_one({"_id": key}, {"$setOnInsert": values}, upsert=True)

    async def pointer(self) -> Pointer:
        found = await self.pointers.find_one({"_id": LIVE})
        if found is None:
            return Pointer(MAIN)
        return Pointer(found["view"], found.get("next"))

    async def get(self, name: str) -> View | None:
        if name == LIVE:
            name = (await self.pointer()).live
        found = await self.views.find_one({"_id": name})
        return View.from_document(found) if found else None

    async def require(self, name: str) -> View:
        view = await self.get(name)
        if view is None:
            raise ViewError(f"no view named {name!r}: `threadview-rebuild status` lists them")
        return view

    async def all(self) -> list[View]:
        return [View.from_document(d) async for d in self.views.find().sort("created_at", 1)]

    async def create(self, view: View) -> None:
        try:
            await self.views.insert_one(view.to_document())
        except DuplicateKeyError:
            raise ViewError(f"a view named {view.name!r} exists already") from None

    async def update(self, name: str, **values: Any) -> None:
        stored = {k: _stored(k, v) for k, v in values.items()}
        await self.views.update_one({"_id": name}, {"$set": stored})

    async def begin_swap(self, name: str, live: str) -> None:
        """Point ``next`` at ``name`` while ``live`` is live and no other swap runs."""
        result = await self.pointers.update_one(
            {"_id": LIVE, "view": live, "next": None}, {"$set": {"next": name}}
        )
        if result.matched_count != 1:
            pointer = await self.pointer()
            raise ViewError(
                f"cannot swap: the live view is {pointer.live!r}"
                + (f" and a swap to {pointer.next!r} is in progress" if pointer.next else "")
            )

    async def finish_swap(self, name: str, previous: str) -> None:
        now = datetime.now(UTC)
        result = await self.pointers.update_one(
            {"_id": LIVE, "view": previous, "next": name},
            {"$set": {"view": name, "next": None, "previous": previous, "swapped_at": now}},
        )
        if result.matched_count != 1:
            raise ViewError(f"the swap to {name!r} was cancelled by someone else")
        await self.update(previous, retired_at=now)
        await self.update(name, live_since=now, retired_at=None)

    async def abort_swap(self, name: str) -> None:
        await self.pointers.update_one({"_id": LIVE, "next": name}, {"$set": {"next": None}})

    async def drop(self, name: str) -> None:
        """Delete a view and its collection; never the live one or one being swapped in."""
        pointer = await self.pointer()
        if name in (pointer.live, pointer.next):
            raise ViewError(f"{name!r} is {'live' if name == pointer.live else 'being swapped in'}")
        view = await self.require(name)
        await self.database.drop_collection(view.collection)
        await self.views.delete_one({"_id": name})
