"""The MongoDB adapter of the thread store; FerretDB speaks the same protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, IndexModel, InsertOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.documents import VIEW_PROJECTION, from_document, to_document, view_from_document
from services.projection import ThreadState
from services.query import Position, Scope, ThreadQuery, match_filter, plan, visible_filter


def _list_index(name: str, *leading: str) -> IndexModel:
    """Equality fields first, then the sort: a page is an ordered walk of the index."""
    fields = (*leading, "organization_id", "visible_in_ui", "is_deleted", "is_pinned")
    keys = [(f, ASCENDING) for f in fields] + [("created_at", ASCENDING), ("_id", ASCENDING)]
    return IndexModel(keys, name=name)


# service keys, user keys, and the two selective filters; each serves both orders
LIST_INDEXES = [
    _list_index("list_by_org"),
    _list_index("list_by_user", "user_id"),
    _list_index("list_by_assistant", "assistant_id"),
    _list_index("list_by_workflow", "workflow_id"),
]


WRITE_CHUNK = 32
WRITE_PARALLELISM = 1


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
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self.threads = database["threads"]

    async def ensure_indexes(self) -> None:
        """Create the indexes the queries need; a no-op when they exist."""
        for index in LIST_INDEXES:  # one per command: FerretDB panics re-creating several at once
            await self.threads.create_indexes([index])

    async def load(self, thread_ids: Sequence[str]) -> dict[str, Stored]:
        """The stored state of each of ``thread_ids`` that exists, with its revision."""
        found: dict[str, Stored] = {}
        async for document in self.threads.find({"_id": {"$in": list(thread_ids)}}):
            found[document["_id"]] = Stored(from_document(document), document["rev"])
        return found

    async def save(self, writes: Sequence[tuple[ThreadState, int | None]]) -> None:
        """Write each state if its document is still at the given revision (None: absent).

        One round trip for the whole batch. Raises :class:`WriteConflict` when any write was
        refused; some others may have been applied, so the caller reloads and refolds.
        """
        operations: list[InsertOne[dict[str, Any]] | UpdateOne] = []
        for state, rev in writes:
            document = to_document(state, 1 if rev is None else rev + 1)
            if rev is None:
                operations.append(InsertOne(document))
            else:  # $set of every field: the same as a replacement, and 3x faster on FerretDB
                del document["_id"]
                operations.append(UpdateOne({"_id": state.id, "rev": rev}, {"$set": document}))
        # in chunks, one at a time: FerretDB 1.24 (PostgreSQL) hangs for good once more than
        # ~50 update statements are in flight, in one command or in parallel ones
        chunks = [operations[i : i + WRITE_CHUNK] for i in range(0, len(operations), WRITE_CHUNK)]
        limit = asyncio.Semaphore(WRITE_PARALLELISM)

        async def write(chunk: list[InsertOne[dict[str, Any]] | UpdateOne]) -> int:
            async with limit:
                result = await self.threads.bulk_write(chunk, ordered=False)
                return result.inserted_count + result.matched_count

        try:
            matched = sum(await asyncio.gather(*(write(chunk) for chunk in chunks)))
        except (BulkWriteError, DuplicateKeyError) as exc:
            raise WriteConflict(str(exc)) from exc
        if matched != len(operations):
            raise WriteConflict(
                f"{len(operations) - matched} of the batch's threads changed under us"
            )

    async def page(self, query: ThreadQuery, scope: Scope) -> Page:
        """One page of the threads ``query`` selects within ``scope``, in its order.

        Raises:
            CursorNotFound: ``after`` or ``before`` names no thread the scope may see.
        """
        after = await self._position(query.after, scope, "after")
        before = await self._position(query.before, scope, "before")
        chosen = plan(query, scope, after, before)
        cursor = self.threads.find(chosen.filter, VIEW_PROJECTION).sort(chosen.sort)
        documents = await cursor.limit(query.limit + 1).to_list()
        data = [view_from_document(d) for d in documents[: query.limit]]
        if chosen.reverse:
            data.reverse()
        total = None
        if query.include_total:
            total = await self.threads.count_documents(match_filter(query, scope))
        return Page(data=data, has_more=len(documents) > query.limit, total=total)

    async def get(self, thread_id: str, scope: Scope) -> dict[str, Any] | None:
        """The thread's view, or None when it does not exist or ``scope`` may not see it."""
        document = await self.threads.find_one(
            {"_id": thread_id, **visible_filter(scope)}, VIEW_PROJECTION
        )
        return view_from_document(document) if document else None

    async def _position(self, thread_id: str | None, scope: Scope, param: str) -> Position | None:
        if thread_id is None:
            return None
        document = await self.threads.find_one(
            {"_id": thread_id, **visible_filter(scope)}, {"created_at": True}
        )
        if document is None:
            raise CursorNotFound(param)
        return Position(document["created_at"], thread_id)
