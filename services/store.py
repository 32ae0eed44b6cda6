"""The MongoDB adapter of the thread store; FerretDB speaks the same protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import bson
from pymongo import IndexModel, InsertOne, UpdateOne
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WaitQueueTimeoutError,
)

from services.documents import VIEW_PROJECTION, from_document, to_document, view_from_document
from services.projection import ThreadState
from services.projection import merge as merge_states
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
BATCH_BYTES = 16 * 1024 * 1024  # the most a server puts in one batch of a find
# The most a thread's view fields (what a page reads) can weigh: the contract bounds them to
# ~100 kB (a 1,000-character title, 16 metadata pairs of 64 + 512 characters, 100 space ids of
# 128, at most 4 bytes a character); ten times that, for documents written outside the contract.
MAX_VIEW_BYTES = 1024 * 1024
DUPLICATE_KEY = 11000
# server errors that say "not now" rather than "never": elections, shutdowns, network trouble
# behind a mongos or a FerretDB, time limits (MongoDB's error_codes.yml)
TRANSIENT_CODES = frozenset(
    {6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 50, 112, 251}
)


def transient(exc: BaseException) -> bool:
    """Whether a store error may pass by itself (retry with backoff) rather than being the
    write's own fault (retrying it can never succeed)."""
    if isinstance(exc, ConnectionFailure | ExecutionTimeout | WaitQueueTimeoutError):
        return True  # network, server selection, a primary stepping down, pool time-outs
    if isinstance(exc, PyMongoError) and (
        exc.has_error_label("RetryableWriteError")
        or exc.has_error_label("TransientTransactionError")
    ):
        return True
    return isinstance(exc, OperationFailure) and exc.code in TRANSIENT_CODES


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
    parts: tuple[int, ...] = ()  # the partitions a rebuild merged into it (clock.parts)


@dataclass
class Absorbed:
    """What :meth:`MongoThreadStore.absorb` did besides inserting."""

    merged: int = 0  # states merged into a stored one (met before, or on another partition)
    conflicts: int = 0  # rounds of writes another writer got in first


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
            parts = tuple(document["clock"].get("parts", ()))
            found[document["_id"]] = Stored(from_document(document), document["rev"], parts)
        return found

    async def save(
        self,
        writes: Sequence[tuple[ThreadState, int | None]],
        wid: str | None = None,
        parts: dict[str, list[int]] | None = None,
    ) -> None:
        """Write each state if its document is still at the given revision (None: absent).

        One round trip for the whole batch, each write found by ``_id`` and marked with the
        writer's token ``wid``. Raises :class:`WriteConflict` when any write was refused; some
        others may have been applied, which :meth:`written_by` tells (a revision number alone
        cannot: a stale writer at the same revision computes the same next one). Any other
        error is the server's or the documents' (see :func:`transient`). ``parts``: per thread,
        the partitions a rebuild has merged into it, kept in ``clock.parts``.
        """
        if not writes:
            return
        operations: list[InsertOne[dict[str, Any]] | UpdateOne] = []
        for state, rev in writes:
            document = to_document(state, 1 if rev is None else rev + 1)
            document["wid"] = wid or uuid4().hex
            if parts is not None:
                document["clock"]["parts"] = parts[state.id]
            if rev is None:
                operations.append(InsertOne(document))
            else:  # $set of every field: the same as a replacement
                del document["_id"]
                operations.append(UpdateOne({"_id": state.id, "rev": rev}, {"$set": document}))
        try:
            result = await self.threads.bulk_write(operations, ordered=False)
        except DuplicateKeyError as exc:  # another writer inserted the thread first
            raise WriteConflict(str(exc)) from exc
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if errors and all(e.get("code") == DUPLICATE_KEY for e in errors):
                raise WriteConflict(str(exc)) from exc
            raise
        matched = result.inserted_count + result.matched_count
        if matched != len(operations):
            raise WriteConflict(
                f"{len(operations) - matched} of the batch's threads changed under us"
            )

    async def written_by(self, wid: str, thread_ids: Sequence[str]) -> set[str]:
        """Which of ``thread_ids`` hold the write of the writer token ``wid``."""
        found = self.threads.find({"_id": {"$in": list(thread_ids)}, "wid": wid}, {"_id": True})
        return {document["_id"] async for document in found}

    async def probe(self) -> None:
        """One small write to a collection of its own: raises when the store takes no writes
        at all, which tells an outage from documents the store refuses."""
        await self.threads.database["projector_probe"].update_one(
            {"_id": "probe"}, {"$inc": {"n": 1}}, upsert=True
        )

    async def absorb(self, states: Sequence[ThreadState], part: int) -> Absorbed:
        """Merge each state into its thread's stored one (:func:`~services.projection.merge`), or
        insert it, and note ``part`` (a partition) among the thread's ``clock.parts``.

        For a rebuild, whose workers fold partitions, and memory-bounded chunks of them, apart:
        each write is conditional on the revision read, so two workers merging one thread at
        once cannot lose either's events; the threads that conflicted are reloaded and merged
        again until none does. Merging is idempotent, so absorbing a chunk twice (a resumed
        rebuild redoing what it did after its last checkpoint) changes nothing.
        """
        pending = {state.id: state for state in states}
        absorbed = Absorbed()
        while pending:
            stored = await self.load(list(pending))
            writes: list[tuple[ThreadState, int | None]] = []
            parts: dict[str, list[int]] = {}
            for thread_id, state in pending.items():
                current = stored.get(thread_id)
                if current is None:
                    writes.append((state, None))
                    parts[thread_id] = [part]
                    continue
                merged = merge_states(current.state, state)
                if merged == current.state and part in current.parts:
                    continue  # absorbed already (a resumed rebuild)
                writes.append((merged, current.rev))
                parts[thread_id] = sorted({*current.parts, part})
            wid, ids = uuid4().hex, [state.id for state, _ in writes]
            try:
                await self.save(writes, wid, parts)
                done = set(ids)
            except WriteConflict:
                done = await self.written_by(wid, ids)
                absorbed.conflicts += 1
            absorbed.merged += sum(
                1 for state, rev in writes if rev is not None and state.id in done
            )
            pending = {t: pending[t] for t in ids if t not in done}
        return absorbed

    async def spread(self) -> int:
        """How many threads a rebuild found on more than one partition."""
        return await self.threads.count_documents({"clock.parts.1": {"$exists": True}})

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
        streams = await asyncio.gather(*(self._stream(chosen, s, count) for s in chosen.streams))
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
            )  # one batch (a negative limit) cannot lose any: two ids at most, created_at only
            async for document in documents.batch_size(len(wanted)).limit(-len(wanted)):
                found[document["_id"]] = Position(document["created_at"], document["_id"])
        for param, thread_id in cursors.items():  # a bad `after` is reported first
            if thread_id not in found:
                raise CursorNotFound(param)
        after = found[query.after] if query.after else None
        before = found[query.before] if query.before else None
        return plan(query, scope, after, before)

    def _walk(
        self, chosen: Plan, stream: dict[str, Any], count: int, single_batch: bool = True
    ) -> AsyncCursor[dict[str, Any]]:
        """One stream: an ordered walk of the index its filters match by equality, at most
        ``count`` threads: in a single batch (a negative limit), or read to its end."""
        index = chosen.index(self.descending_indexes).name
        found = self.threads.find(stream, VIEW_PROJECTION).sort(chosen.sort).hint(index)
        return found.batch_size(count).limit(-count if single_batch else count)

    async def _stream(self, chosen: Plan, stream: dict[str, Any], count: int) -> list[Any]:
        """The stream's first ``count`` threads, exactly, whatever they weigh.

        Read in a single batch: no server cursor is left open, and FerretDB keeps its
        PostgreSQL connection in its pool. Any other read of an index walk is a "persistent"
        cursor there, which takes the connection out of the pool even when the whole answer
        fits its first batch, and the next request opens a new one: 16 ms a stream instead of
        1 (docs/ferretdb.md). But a single batch drops without a word what does not fit in a
        batch's 16 MB (26 threads of 900 kB came back as 18, ``has_more`` false). A server
        cuts a batch only when the next document would take it past 16 MB, so a short answer
        whose documents, plus the heaviest one a thread can have, stay within 16 MB was not
        cut; only a short and heavy one is read again with a cursor, to its end.
        """
        found = await self._walk(chosen, stream, count).to_list()
        if len(found) < count and found:
            weight = sum(len(bson.encode(document)) for document in found)
            if weight + MAX_VIEW_BYTES > BATCH_BYTES:
                found = await self._walk(chosen, stream, count, single_batch=False).to_list()
        return found

    async def get(self, thread_id: str, scope: Scope) -> dict[str, Any] | None:
        """The thread's view, or None when it does not exist or ``scope`` may not see it."""
        document = await self.threads.find_one(
            {"_id": thread_id, **visible_filter(scope)}, VIEW_PROJECTION
        )
        return view_from_document(document) if document else None
