"""The view catalog in the store: the MongoDB adapter of services.ports.ViewCatalog (the records
and the rules over them are services.views').

A view is a collection of thread documents. The first, ``main``, is the ``threads`` collection
the projector writes from its first start; ``threadview-rebuild`` makes others
(``threads_<name>``) by replaying the log. The catalog (collection ``views``) records how each
was built; one document in ``view_pointer`` names the live view, the one the API serves and the
projector writes, and during a swap also the ``next`` one, which the projector then writes too.
The pointer document (``_id: "live"``) holds:

- ``view``, ``fold_version``: the live view and the fold version that built it;
- ``next``, ``next_fold_version``: during a handover, the view the projector writes too;
- ``swap``: a swap in progress, ``{id, view, owner, started_at, heartbeat_at}``, from the
  swap's first step (its catch-up) to its flip or its abort (consumers.swap);
- ``previous``, ``swapped_at``, ``previous_reached``, ``settled``: the last flip, the view it
  retired and how far that view is known to have read; ``settled`` is false until the catalog
  entries say the same (:meth:`ViewCatalog.settle`);
- ``dropping``: views a ``drop`` is deleting, which no swap may claim.

Nothing here needs a transaction: every change of the pointer is one conditional update of one
document, so concurrent swaps cannot both succeed, and a swap and a drop of one view cannot
both go ahead. The pointer and the catalog are read from the primary with majority read
concern and written with majority write concern: no reader is handed a pointer from a lagging
secondary, nor one a failover then rolls back, and a pointer change is acknowledged only once
a new primary would keep it. (A deposed primary that does not know it yet can still answer a
majority read from its last majority snapshot, for up to an election timeout; only
``linearizable`` reads close that window. FerretDB has one node and ignores every read and
write concern: docs/ferretdb.md.)

Why this module is longer than ~200 lines: every conditional change of the pointer (claim, take
over, begin, beat, flip, abort, settle, drop) is here, so that the conditions that make two
swaps, or a swap and a drop, exclude each other can be read side by side.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from pymongo import ReadPreference
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from services import owners
from services.failpoints import reach
from services.mongo.writes import Layout
from services.projection import FOLD_VERSION
from services.views import (
    LIVE,
    MAIN,
    READY,
    Handover,
    Pointer,
    View,
    ViewError,
    building,
    collection_of,
    settlement,
    stored_value,
)


def _majority(collection: AsyncCollection[dict[str, Any]]) -> AsyncCollection[dict[str, Any]]:
    return collection.with_options(
        read_preference=ReadPreference.PRIMARY,
        read_concern=ReadConcern("majority"),
        write_concern=WriteConcern("majority"),
    )


class MongoViewCatalog:
    """The catalog and the pointer, in the store's database."""

    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self.database = database
        self.views = _majority(database["views"])
        self.pointers = _majority(database["view_pointer"])

    async def ensure(self) -> None:
        """Point at ``main`` and record it on the first migrate (services.mongo.migration); never
        bring ``main`` back later.

        The pointer is inserted first, then ``main``'s entry, and the entry only while the
        pointer names ``main`` live. So:

        - two migrates running at once on an empty database: each inserts the pointer unless
          it exists (one does; the other's upsert matches it, or meets the unique ``_id`` and
          ignores it) and then, reading it back, sees ``main`` live and inserts the entry unless
          it exists. Each returns with both in place, so neither fails to find ``main``;
        - a migrate killed between the two inserts leaves a pointer naming ``main`` without an
          entry; the next one sees ``main`` live and inserts it;
        - once a swap made another view live and ``gc`` removed the retired ``main``, the
          pointer names that view, and no migrate inserts ``main`` again.

        What is left: a migrate that stalls between reading the pointer and inserting the entry
        for as long as a whole swap and a ``gc`` of ``main`` take would insert an empty
        ``main`` back. It would be harmless: a ready view that has read nothing, which a swap
        could only take live by catching it up from offset 0 (status lists it; drop removes it).
        """
        with contextlib.suppress(DuplicateKeyError):  # another process inserted it meanwhile
            await self.pointers.update_one(
                {"_id": LIVE},
                {"$setOnInsert": {"view": MAIN, "fold_version": FOLD_VERSION, "next": None}},
                upsert=True,
            )
        if (await self.pointer()).live != MAIN:
            return
        main = View(MAIN, collection_of(MAIN), READY).to_document()
        del main["_id"]
        with contextlib.suppress(DuplicateKeyError):
            await self.views.update_one({"_id": MAIN}, {"$setOnInsert": main}, upsert=True)

    async def pointer(self) -> Pointer:
        found = await self.pointers.find_one({"_id": LIVE})
        return Pointer(MAIN) if found is None else Pointer.from_document(found)

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
        stored = {k: stored_value(k, v) for k, v in values.items()}
        await self.views.update_one({"_id": name}, {"$set": stored})

    # The swap's steps (consumers.swap argues the order). Each is conditional on the handover
    # being the one in progress, so a swapper whose handover was aborted or taken over by
    # another command can neither set `next`, nor beat, nor flip.

    async def claim_swap(self, name: str, live: str, owner: dict[str, Any]) -> Handover:
        """Record a swap to ``name`` while ``live`` is live, no swap is in progress, the last
        flip is settled and no drop of ``name`` runs."""
        handover = Handover.new(name, owner)
        result = await self.pointers.update_one(
            {
                "_id": LIVE,
                "view": live,
                "next": None,
                "swap": None,
                "settled": {"$ne": False},
                "dropping": {"$ne": name},
            },
            {"$set": {"swap": handover.to_document()}},
        )
        if result.matched_count != 1:
            raise ViewError(f"cannot swap to {name!r}: {await self._why_not(name, live)}")
        return handover

    async def _why_not(self, name: str, live: str) -> str:
        pointer = await self.pointer()
        if pointer.live != live:
            return f"the live view is {pointer.live!r} now"
        if pointer.swap is not None:
            return f"a swap to {pointer.swap.view!r} is in progress ({pointer.swap.describe()})"
        if name in pointer.dropping:
            return f"{name!r} is being dropped (an interrupted drop? run `drop {name}` again)"
        if not pointer.settled:
            return "the last swap is not settled yet; try again"
        return "the pointer changed meanwhile; try again"

    async def take_over(self, dead: Handover, owner: dict[str, Any]) -> Handover:
        """Make a dead swap to ``dead.view`` ours, unless another command did first."""
        handover = Handover.new(dead.view, owner)
        await self._change(dead, {"$set": {"swap": handover.to_document()}}, "taken over")
        return handover

    async def begin_swap(self, handover: Handover, fold_version: int) -> None:
        """Point ``next`` at the handover's view: from the following batch on, the projector
        writes it too."""
        await self._change(
            handover,
            {"$set": {"next": handover.view, "next_fold_version": fold_version}},
            "aborted",
        )

    async def beat(self, handover: Handover) -> None:
        await self._change(
            handover, {"$set": {"swap.heartbeat_at": datetime.now(UTC)}}, "aborted or taken over"
        )

    async def finish_swap(
        self, handover: Handover, previous: str, fold_version: int, reached: dict[int, int]
    ) -> None:
        """Flip: the handover's view is live, ``previous`` retired. ``reached``: what the group
        had committed before the flip, which ``previous`` holds (the catalog learns it when
        the flip is settled)."""
        flip = {
            "view": handover.view,
            "fold_version": fold_version,
            "next": None,
            "next_fold_version": None,
            "swap": None,
            "previous": previous,
            "swapped_at": datetime.now(UTC),
            "previous_reached": stored_value("reached", reached),
            "settled": False,
        }
        result = await self.pointers.update_one(
            {"_id": LIVE, "view": previous, "next": handover.view, **handover.match()},
            {"$set": flip},
        )
        if result.matched_count != 1:
            raise ViewError(f"the swap to {handover.view!r} was aborted or taken over: not flipped")

    async def abort_swap(self, handover: Handover) -> bool:
        """Clear the handover (``next`` too); False if it is not the one in progress."""
        result = await self.pointers.update_one(
            {"_id": LIVE, **handover.match()},
            {"$set": {"next": None, "next_fold_version": None, "swap": None}},
        )
        return result.matched_count == 1

    async def _change(self, handover: Handover, change: dict[str, Any], lost: str) -> None:
        result = await self.pointers.update_one({"_id": LIVE, **handover.match()}, change)
        if result.matched_count != 1:
            raise ViewError(f"the swap to {handover.view!r} was {lost} by another command")

    async def settle(self) -> list[str]:
        """Write into the catalog what the pointer's last flip did, if a swap killed after its
        flip did not (:func:`settlement`); return the views updated. Also forgets the drop
        marks of views whose entry is gone (a drop killed before its last step)."""
        pointer = await self.pointer()
        settled = [] if pointer.settled else await self._settle(pointer)
        gone = [n for n in pointer.dropping if await self.views.find_one({"_id": n}) is None]
        if gone:
            await self.pointers.update_one({"_id": LIVE}, {"$pull": {"dropping": {"$in": gone}}})
        return settled

    async def _settle(self, pointer: Pointer) -> list[str]:
        previous = None if pointer.previous is None else await self.get(pointer.previous)
        todo = settlement(pointer, await self.get(pointer.live), previous)
        # written only while no later swap moved the entry on (a settle that stalled that long)
        unmoved = {k: {"$not": {"$gt": pointer.swapped_at}} for k in ("live_since", "retired_at")}
        for n, (name, values) in enumerate(todo.items()):
            if n:
                reach("swap.settle")  # the live view's entry updated, the previous one's not
            await self.views.update_one(
                {"_id": name, **unmoved},
                {"$set": {k: stored_value(k, v) for k, v in values.items()}},
            )
        await self.pointers.update_one(
            {"_id": LIVE, "swapped_at": pointer.swapped_at, "settled": False},
            {"$set": {"settled": True}},
        )
        return list(todo)

    async def drop(self, name: str) -> str:
        """Delete a view and its collection; never the live one, nor one a swap is taking live,
        nor one a rebuild is building; return the view's name (``live`` resolved).

        ``live`` names the live view here too, so ``drop live`` is refused like its name. A drop
        and a swap of one view exclude each other by marks on the pointer, each set by one
        conditional update that checks the other's: the drop adds the name to ``dropping``
        only while no swap names it (``swap.view`` or ``next``), and a swap claims a view only
        while ``dropping`` does not hold it (:meth:`claim_swap`), then reads its entry again.
        So one of the two refuses. Then the collection is dropped, then the entry, then the
        mark removed; a drop killed in between leaves the entry (drop it again) or only the
        mark, which :meth:`settle` forgets.
        """
        view = await self.require(name)
        result = await self.pointers.update_one(
            {
                "_id": LIVE,
                "view": {"$ne": view.name},
                "next": {"$ne": view.name},
                "swap.view": {"$ne": view.name},
            },
            {"$addToSet": {"dropping": view.name}},
        )
        if result.matched_count != 1:
            pointer = await self.pointer()
            if view.name == pointer.live:
                alias = f" ({LIVE!r} names it)" if name == LIVE else ""
                raise ViewError(f"{view.name!r} is the live view{alias}: it cannot be dropped")
            raise ViewError(f"{view.name!r} is being swapped in: `swap --abort` first")
        # a rebuild resuming this view marks its entry building, then looks for this mark
        # (services.rebuild.start): read the entry after the mark, and one of the two refuses
        again = await self.get(view.name)
        if again is not None and building(again):
            await self.pointers.update_one({"_id": LIVE}, {"$pull": {"dropping": view.name}})
            raise ViewError(
                f"a rebuild of {view.name!r} is running "
                f"({owners.describe(again.owner, again.heartbeat_at)}): stop it first"
            )
        for collection in Layout.of(self.database, view.collection).names:
            await self.database.drop_collection(collection)
        await self.views.delete_one({"_id": view.name})
        await self.pointers.update_one({"_id": LIVE}, {"$pull": {"dropping": view.name}})
        return view.name
