"""The MongoDB adapter of the thread store; FerretDB speaks the same protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import IndexModel, InsertOne, UpdateOne
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from services.documents import VIEW_PROJECTION, from_document, to_document, view_from_document
from services.projection import ThreadState
from services.query import (
    Plan,
    Position,
    Scope,
    ThreadQuery,
    list_indexes,
    merge,
    plan,
    visible_filter,
)

INDEX_NOT_FOUND = 27
DUPLICATE_KEY = 11000


class CursorNotFound(Exception):
    """A cursor names no thread the caller may see (whether it exists or not)."""

    def __init__(self, param: str) -> None:
        super().__init__(f"{param} names no thread you can see")
        self.param = param


class WriteConflict(Exception):
    """Another writer changed a thread since it was loaded: reload, refold and write again."""


@dataclass(frozen=True)
class Stored:
    state: ThreadState
    rev: int


@dataclass(frozen=True)
class Page:
    data: list[dict[str, Any]]
    has_more: bool
    total: int | None = None


class MongoThreadStore:
    """A collection of thread documents: a view (services.views).

    Args:
        database: where it lives.
        descending_indexes: keep a descending copy of each list index, for a store that cannot
            walk an index backwards (DocumentDB, under FerretDB); MongoDB walks one either way.
        collection: the view's collection.
    """

    def __init__(
        self,
        database: AsyncDatabase[dict[str, Any]],
        descending_indexes: bool = False,
        collection: str = "threads",
    ) -> None:
        self.threads = database[collection]
        self.descending_indexes = descending_indexes

    async def ensure_indexes(self, attempts: int = 5) -> None:
        """Create the indexes the queries need and drop list indexes no query uses any more.

        Idempotent, so processes starting together may all run it; on FerretDB their DDL can
        deadlock in PostgreSQL, and the loser tries again.
        """
        for attempt in range(attempts):
            try:
                await self._ensure_indexes()
                return
            except OperationFailure:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))

    async def _ensure_indexes(self) -> None:
        wanted = list_indexes(self.descending_indexes)
        names = {index.name for index in wanted}
        async for existing in await self.threads.list_indexes():
            if existing["name"].startswith("list_") and existing["name"] not in names:
                try:
                    await self.threads.drop_index(existing["name"])
                except OperationFailure as exc:
                    if exc.code != INDEX_NOT_FOUND:  # else another process dropped it first
                        raise
        await self.threads.create_indexes([IndexModel(i.keys, name=i.name) for i in wanted])

    async def load(self, thread_ids: Sequence[str]) -> dict[str, Stored]:
        """The stored state of each of ``thread_ids`` that exists, with its revision."""
        found: dict[str, Stored] = {}
        async for document in self.threads.find({"_id": {"$in": list(thread_ids)}}):
            found[document["_id"]] = Stored(from_document(document), document["rev"])
        return found

    async def save(self, writes: Sequence[tuple[ThreadState, int | None]]) -> None:
        """Write each state if its document is still at the given revision (None: absent).

        One round trip for the whole batch, each write found by ``_id``. Raises
        :class:`WriteConflict` when any write was refused; some others may have been applied,
        so the caller reloads and refolds.
        """
        if not writes:
            return
        operations: list[InsertOne[dict[str, Any]] | UpdateOne] = []
        for state, rev in writes:
            document = to_document(state, 1 if rev is None else rev + 1)
            if rev is None:
                operations.append(InsertOne(document))
            else:  # $set of every field: the same as a replacement
                del document["_id"]
                operations.append(UpdateOne({"_id": state.id, "rev": rev}, {"$set": document}))
        try:
            result = await self.threads.bulk_write(operations, ordered=False)
        except (BulkWriteError, DuplicateKeyError) as exc:
            raise WriteConflict(str(exc)) from exc
        matched = result.inserted_count + result.matched_count
        if matched != len(operations):
            raise WriteConflict(
                f"{len(operations) - matched} of the batch's threads changed under us"
            )

    async def insert_new(self, states: Sequence[ThreadState]) -> int:
        """Insert the states as revision 1 of threads not stored yet; skip those that are.

        For a bulk load into a view no one else writes (a rebuild, and its resumption, which
        inserts the same documents again). Returns how many were inserted.
        """
        if not states:
            return 0
        documents = [to_document(state, 1) for state in states]
        try:
            result = await self.threads.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return int(exc.details.get("nInserted", 0))
        return len(result.inserted_ids)

    def documents(self, batch_size: int = 2000) -> AsyncCursor[dict[str, Any]]:
        """Every document of the view, by ``_id`` (for comparing and exporting views)."""
        return (
            self.threads.find({}, {"clock": False, "rev": False})
            .sort("_id", 1)
            .batch_size(batch_size)
        )

    async def page(self, query: ThreadQuery, scope: Scope) -> Page:
        """One page of the threads ``query`` selects within ``scope``, in its order.

        Raises:
            CursorNotFound: ``after`` or ``before`` names no thread the scope may see.
        """
        chosen = await self._plan(query, scope)
        count = query.limit + 1
        streams = await asyncio.gather(
            *(self._walk(chosen, s, count).to_list() for s in chosen.streams)
        )
        documents = merge(streams, chosen.descending, count)
        data = [view_from_document(d) for d in documents[: query.limit]]
        if chosen.reverse:
            data.reverse()
        total = None
        if query.include_total:
            hint = chosen.index(self.descending_indexes).name
            counts = [self.threads.count_documents(s, hint=hint) for s in chosen.totals]
            total = sum(await asyncio.gather(*counts))
        return Page(data=data, has_more=len(documents) > query.limit, total=total)

    async def explain(self, query: ThreadQuery, scope: Scope) -> list[dict[str, Any]]:
        """The store's plan for each stream of the page, as ``page`` reads it."""
        chosen = await self._plan(query, scope)
        walks = [self._walk(chosen, s, query.limit + 1) for s in chosen.streams]
        return [await walk.explain() for walk in walks]

    async def _plan(self, query: ThreadQuery, scope: Scope) -> Plan:
        """The page's plan, with its cursors placed: both looked up in one read by ``_id``.

        Raises:
            CursorNotFound: ``after`` or ``before`` names no thread the scope may see.
        """
        cursors = {p: i for p, i in (("after", query.after), ("before", query.before)) if i}
        found: dict[str, Position] = {}
        if cursors:
            wanted = list(dict.fromkeys(cursors.values()))
            documents = self.threads.find(
                {"_id": {"$in": wanted}, **visible_filter(scope)}, {"created_at": True}
            )  # one batch: see _walk
            async for document in documents.batch_size(len(wanted)).limit(-len(wanted)):
                found[document["_id"]] = Position(document["created_at"], document["_id"])
        for param, thread_id in cursors.items():  # a bad `after` is reported first
            if thread_id not in found:
                raise CursorNotFound(param)
        after = found[query.after] if query.after else None
        before = found[query.before] if query.before else None
        return plan(query, scope, after, before)

    def _walk(
        self, chosen: Plan, stream: dict[str, Any], count: int
    ) -> AsyncCursor[dict[str, Any]]:
        """One stream: an ordered walk of the index its filters match by equality.

        Its ``count`` threads come in a single batch (a negative limit): no server cursor is
        left open, and FerretDB keeps its PostgreSQL connection in its pool instead of handing
        it to a cursor and opening a new one (~20 ms) for the next request. ``count`` is at
        most 101 thread views (no message ids), far below a batch's 16 MB.
        """
        index = chosen.index(self.descending_indexes).name
        found = self.threads.find(stream, VIEW_PROJECTION).sort(chosen.sort).hint(index)
        return found.batch_size(count).limit(-count)

    async def get(self, thread_id: str, scope: Scope) -> dict[str, Any] | None:
        """The thread's view, or None when it does not exist or ``scope`` may not see it."""
        document = await self.threads.find_one(
            {"_id": thread_id, **visible_filter(scope)}, VIEW_PROJECTION
        )
        return view_from_document(document) if document else None
