"""The MongoDB adapter of the thread store; FerretDB speaks the same protocol.

Why this module is longer than ~200 lines: it is the adapter of the whole ThreadStore port: the
write side delegates to services.mongo.writes, and what remains (pages, totals, single-batch
reads and their 16 MB argument) shares the plan and the projections.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import uuid4

import bson
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WaitQueueTimeoutError,
)

from services.documents import (
    ACTIVITY_PROJECTION,
    VIEW_PROJECTION,
    message_key,
    of_old_layout,
    view_from_document,
)
from services.mongo.render import scope_filter, sort, streams
from services.mongo.writes import BATCH_BYTES, Layout, by_id, recorded_keys
from services.mongo.writes import load as load_threads
from services.mongo.writes import save as save_threads
from services.ports import Absorbed, CursorNotFound, Page, Stored, WriteConflict
from services.projection import ThreadState
from services.projection import merge as merge_states
from services.query import BUDGET, Plan, Position, Scope, ThreadQuery, merge, plan

# The most a thread's view fields (what a page reads) can weigh: the contract bounds them to
# ~100 kB (a 1,000-character title, 16 metadata pairs of 64 + 512 characters, 100 space ids of
# 128, at most 4 bytes a character); ten times that, for documents written outside the contract.
MAX_VIEW_BYTES = 1024 * 1024
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
        self.layout = Layout.of(database, collection)
        self.threads = self.layout.threads
        self.descending_indexes = descending_indexes

    async def load(
        self,
        thread_ids: Sequence[str],
        threads: Sequence[str] | None = None,
        activity: Sequence[str] | None = None,
    ) -> dict[str, Stored]:
        """The stored threads among ``thread_ids`` (services.mongo.writes.load)."""
        return await load_threads(self.layout, thread_ids, threads, activity)

    async def save(
        self,
        writes: Sequence[tuple[ThreadState, Stored | None]],
        wid: str | None = None,
        parts: dict[str, list[int]] | None = None,
    ) -> set[str]:
        """Write each state over what was loaded of it (None: nothing), each document
        conditional on its revision (services.mongo.writes, which says why the count stays exact);
        the threads that had something to write.

        Raises :class:`WriteConflict`, naming the threads whose writes were refused (the others
        went through); any other error is the server's or the documents' (see
        :func:`transient`). ``wid``: the writer's token, marking what it wrote; ``parts``: per
        thread, the partitions a rebuild has merged into it, kept in ``clock.parts``.
        """
        if not writes:
            return set()
        return await save_threads(self.layout, writes, wid or uuid4().hex, parts)

    def transient(self, exc: BaseException) -> bool:
        return transient(exc)

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
            writes: list[tuple[ThreadState, Stored | None]] = []
            parts: dict[str, list[int]] = {}
            for thread_id, state in pending.items():
                current = stored.get(thread_id)
                merged = state if current is None else merge_states(current.state, state)
                writes.append((merged, current))
                parts[thread_id] = sorted({*(current.parts if current else ()), part})
            try:
                written = await self.save(writes, uuid4().hex, parts)
                refused: set[str] = set()
            except WriteConflict as conflict:
                # the others were written: a merged state that changed nothing wrote nothing
                written, refused = set(pending) - conflict.threads, conflict.threads
                absorbed.conflicts += 1
            absorbed.merged += sum(1 for t in written if t in stored and t not in refused)
            pending = {t: pending[t] for t in refused}
        return absorbed

    async def spread(self) -> int:
        """How many threads a rebuild found on more than one partition."""
        return await self.threads.count_documents({"clock.parts.1": {"$exists": True}})

    async def documents(self, batch_size: int = 2000) -> AsyncIterator[dict[str, Any]]:
        """Every thread of the view as :func:`~services.documents.view_from_document` gives
        it, by ``_id`` (for comparing and exporting views): one batch in memory at a time."""
        found = self.threads.find({}, VIEW_PROJECTION).sort("_id", 1).batch_size(batch_size)
        batch: list[dict[str, Any]] = []
        async for document in found:
            batch.append(document)
            if len(batch) == batch_size:
                for view in await self.views(batch):
                    yield view
                batch = []
        for view in await self.views(batch):
            yield view

    async def views(self, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The views of thread documents read with ``VIEW_PROJECTION``: their activity
        documents read in one batch, by ``_id`` (a view of the previous layout needs none)."""
        wanted = [d["_id"] for d in documents if not of_old_layout(d)]
        activity = await by_id(self.layout.activity, wanted, ACTIVITY_PROJECTION) if wanted else {}
        return [view_from_document(d, activity.get(d["_id"])) for d in documents]

    async def page(self, query: ThreadQuery, scope: Scope) -> Page:
        """One page of the threads ``query`` selects within ``scope``, in its order.

        Raises:
            CursorNotFound: ``after`` or ``before`` names no thread the scope may see.
        """
        chosen = await self._plan(query, scope)
        count = query.limit + 1
        walked = await asyncio.gather(*(self._stream(chosen, s, count) for s in streams(chosen)))
        documents = merge(walked, chosen.descending, count)
        data = await self.views(documents[: query.limit])
        if chosen.reverse:
            data.reverse()
        total = await self._total(chosen) if query.include_total else None
        return Page(data=data, has_more=len(documents) > query.limit, total=total)

    async def _total(self, chosen: Plan) -> int:
        """The threads the plan's streams select, cursors ignored: each stream counted to the
        request's cap at most, and one more (services.query.Budget): when one went past it, the
        total is the cap, a lower bound, and the budget notes ``gte``; otherwise the exact count,
        ``eq``. A count stops at its limit, in the index walk itself (FerretDB too).

        The ``count`` command, not ``count_documents``'s aggregation: one reply and no cursor,
        where FerretDB's aggregate costs ~15-30 ms more a walk (docs/ferretdb.md)."""
        budget = BUDGET.get()
        command: dict[str, Any] = {"count": self.threads.name}
        command["hint"] = dict(chosen.index(self.descending_indexes).keys)  # keys: any name
        if budget is not None:
            command["limit"] = budget.total_cap + 1
        database = self.threads.database
        replies = await asyncio.gather(
            *(database.command(command | {"query": s}) for s in chosen.equalities)
        )
        counts = [int(reply["n"]) for reply in replies]
        if budget is None:
            return sum(counts)
        capped = any(count > budget.total_cap for count in counts)
        budget.total_relation = "gte" if capped else "eq"
        return budget.total_cap if capped else sum(counts)

    async def explain(self, query: ThreadQuery, scope: Scope) -> list[dict[str, Any]]:
        """The store's plan for each stream of the page, as ``page`` reads it."""
        chosen = await self._plan(query, scope)
        walks = [self._walk(chosen, s, query.limit + 1) for s in streams(chosen)]
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
                {"_id": {"$in": wanted}, **scope_filter(scope)}, {"created_at": True}
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
        # hinted by keys, not name: an older release's index of the same keys serves too
        index = chosen.index(self.descending_indexes).keys
        found = self.threads.find(stream, VIEW_PROJECTION).sort(sort(chosen)).hint(index)
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

    async def read(self, thread_id: str) -> dict[str, Any] | None:
        """The thread's view whatever its scope (operators' tools and tests), or None."""
        document = await self.threads.find_one({"_id": thread_id}, VIEW_PROJECTION)
        return (await self.views([document]))[0] if document else None

    async def read_many(self, thread_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The views of those of ``thread_ids`` that exist, whatever their scope (the watch
        checks each against its watchers' scopes)."""
        found = await by_id(self.threads, list(dict.fromkeys(thread_ids)), VIEW_PROJECTION)
        return await self.views(list(found.values())) if found else []

    async def shows(
        self, scope: Scope, wanted: Sequence[tuple[str, str | None]]
    ) -> set[tuple[str, str | None]]:
        """Which of ``wanted`` (a thread, and a message of it or None) the view shows within
        ``scope``: the thread listed, and the message counted (recorded, or pending in the
        activity document: services.mongo.writes). Three reads by ``_id`` at most."""
        threads = list(dict.fromkeys(t for t, _ in wanted))
        if not threads:
            return set()
        found = self.threads.find({"_id": {"$in": threads}, **scope_filter(scope)}, {"_id": True})
        count = len(threads)  # a single batch (services.mongo.writes.by_id): ids only
        visible = {d["_id"] async for d in found.batch_size(count).limit(-count)}
        pairs = [(t, m) for t, m in wanted if m is not None and t in visible]
        keys = {(t, m): message_key(t, m) for t, m in pairs}
        recorded = await recorded_keys(self.layout.messages, list(keys.values())) if keys else set()
        unrecorded = sorted({t for (t, m), key in keys.items() if key not in recorded})
        pending = (
            await by_id(self.layout.activity, unrecorded, {"pending": True}) if unrecorded else {}
        )
        shown: set[tuple[str, str | None]] = {
            (t, m) for t, m in wanted if m is None and t in visible
        }
        for (t, m), key in keys.items():
            if key in recorded or m in pending.get(t, {}).get("pending", ()):
                shown.add((t, m))
        return shown

    async def get(self, thread_id: str, scope: Scope) -> dict[str, Any] | None:
        """The thread's view, or None when it does not exist or ``scope`` may not see it."""
        document, activity = await asyncio.gather(
            self.threads.find_one({"_id": thread_id, **scope_filter(scope)}, VIEW_PROJECTION),
            self.layout.activity.find_one({"_id": thread_id}, ACTIVITY_PROJECTION),
        )
        return view_from_document(document, activity) if document else None
