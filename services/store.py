"""The MongoDB adapter of the thread store; FerretDB speaks the same protocol."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING, InsertOne, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.documents import VIEW_PROJECTION, from_document, to_document, view_from_document
from services.projection import ThreadState
from services.query import ThreadQuery, list_filter, sort_keys


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
        await self.threads.create_index(
            [("listed", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
            name="listed_created",
        )

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
        operations: list[InsertOne[dict[str, Any]] | ReplaceOne[dict[str, Any]]] = [
            InsertOne(to_document(state, 1))
            if rev is None
            else ReplaceOne({"_id": state.id, "rev": rev}, to_document(state, rev + 1))
            for state, rev in writes
        ]
        if not operations:
            return
        try:
            result = await self.threads.bulk_write(operations, ordered=False)
        except (BulkWriteError, DuplicateKeyError) as exc:
            raise WriteConflict(str(exc)) from exc
        if result.inserted_count + result.matched_count != len(operations):
            raise WriteConflict(
                f"{len(operations) - result.inserted_count - result.matched_count} "
                "of the batch's threads changed under us"
            )

    async def page(self, query: ThreadQuery) -> Page:
        """One page of the threads ``query`` selects, in its order."""
        cursor = (
            self.threads.find(list_filter(query), VIEW_PROJECTION)
            .sort(sort_keys(query.order))
            .limit(query.limit + 1)
        )
        documents = await cursor.to_list()
        return Page(
            data=[view_from_document(d) for d in documents[: query.limit]],
            has_more=len(documents) > query.limit,
        )
