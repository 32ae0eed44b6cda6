"""How thread states are written to a view: thread documents, activity documents and message
records (services.documents), each message counted once without multi-document transactions.

The activity document is the single source of truth for a thread's count: ``n``, the number
of its *counted* messages, and ``pending``, ids among them that may not be recorded yet (a
message record is the document whose ``_id`` is :func:`~services.documents.message_key`).
Two rules keep the count exact:

1. **A record is inserted only for a counted message**: for an id of ``pending`` of an
   activity write that went through (read back by the writer's token when the bulk was short),
   never before. So the records of a thread are always a subset of its counted messages, and a
   thread without an activity document has no records.
2. **An activity write keeps what is unrecorded**: a write from revision ``r`` (conditional on
   it) sets ``pending`` to the ids of ``pending(r)`` it did not find recorded, plus the ids it
   counts. So at every revision the counted messages are the recorded ones plus ``pending``.

A write reads the activity document (revision ``r``), *then* the records of the batch's ids and
of ``pending(r)``. Records are never removed, so what was recorded when ``r`` was read is still
there: an id is counted at ``r`` exactly when it is in ``pending(r)`` or found recorded. The
write counts the batch's other ids, with ``n += `` their number, and only if the document is
still at ``r``. Then it records ``pending`` (a duplicate key is a record already there).

- A **crash** between the activity write and the records leaves the ids in ``pending``: still
  counted, never counted again (the next write of the thread finds them there and records
  them; redelivery of the batch finds them there too).
- A **zombie** holding a stale revision has its write refused; one that wrote and stalls before
  recording only inserts records of counted ids, whenever it wakes.
- **Redelivery** finds each id recorded or pending.

A thread's count therefore costs what its batch holds, whatever its length: the batch's ids
are looked up by key, and ``pending`` holds at most one write's ids (``PENDING_MAX``: a
rebuild counting a long thread at once takes several rounds). A write that left more than
``PENDING_KEEP`` ids there clears them once they are recorded (conditional on its own
revision and token), so that the next write does not look them up again.

The thread document changes only with the events that are not messages, by ``$set`` of the
fields that changed, conditional on its own revision; the two documents are written in
parallel, and a conflict on either sends the thread back to be reloaded and refolded (the
part that went through folds to no change).

Why this module is longer than ~200 lines: the counting protocol (the two rules above, the
rounds of activity writes, the records written after them, the clearing) is one argument, and
splitting its steps over modules would hide which write may follow which.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import bson
from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.documents import (
    from_documents,
    message_key,
    model_field,
    only_messages,
    thread_part,
    to_activity,
    to_document,
)
from services.ports import Stored, WriteConflict
from services.projection import ThreadState, copy

DUPLICATE_KEY = 11000
DEADLOCK = 16908292  # PostgreSQL's "deadlock detected", through FerretDB: that write alone failed
REFUSED = frozenset({DUPLICATE_KEY, DEADLOCK})  # retried as conflicts: reload, refold, write
PENDING_MAX = 1000  # ids one activity write counts at most
PENDING_KEEP = 32  # recorded ids a write may leave in ``pending`` (more are cleared)
BATCH_BYTES = 16 * 1024 * 1024  # the most a server puts in one batch of a find
THREAD_BYTES = 4 * 1024 * 1024  # a thread document by the contract: ~100 kB of values, twice
ACTIVITY_BYTES = 1024 * 1024  # an activity document: PENDING_MAX ids of up to 512 bytes
LOOKUP = 5000  # keys per read of the message records
ATTEMPTS = 5  # inserts of message records that met a deadlock
MESSAGE_KEY_BYTES = 1100  # a record: two ids of up to 128 characters of up to 4 bytes, and more

Collection = AsyncCollection[dict[str, Any]]
Operation = InsertOne[dict[str, Any]] | UpdateOne


@dataclass(frozen=True)
class Layout:
    """A view's three collections."""

    threads: Collection
    activity: Collection
    messages: Collection

    @classmethod
    def of(cls, database: AsyncDatabase[dict[str, Any]], collection: str) -> Layout:
        return cls(
            database[collection],
            database[f"{collection}_activity"],
            database[f"{collection}_messages"],
        )

    @property
    def names(self) -> tuple[str, str, str]:
        return (self.threads.name, self.activity.name, self.messages.name)


async def load(
    layout: Layout,
    thread_ids: Sequence[str],
    threads: Sequence[str] | None = None,
    activity: Sequence[str] | None = None,
) -> dict[str, Stored]:
    """The stored threads among ``thread_ids``: both documents of each, read in parallel.

    ``threads`` and ``activity``, when given, narrow which of them each document is read for
    (a batch's threads with messages only need no thread document, since messages change
    nothing in it, and those without messages need no activity document); what is not read
    is not written either (``save``).
    """
    ids = list(dict.fromkeys(thread_ids))
    if not ids:
        return {}
    documents, activities = await asyncio.gather(
        by_id(layout.threads, _only(ids, threads), largest=THREAD_BYTES),
        by_id(layout.activity, _only(ids, activity), largest=ACTIVITY_BYTES),
    )
    found: dict[str, Stored] = {}
    for thread_id in ids:
        document, counted = documents.get(thread_id), activities.get(thread_id)
        if document is None and counted is None:
            continue
        found[thread_id] = Stored(
            from_documents(thread_id, document, counted),
            document["rev"] if document else None,
            tuple(document["clock"].get("parts", ())) if document else (),
            counted["rev"] if counted else None,
            frozenset(counted["pending"]) if counted else frozenset(),
        )
    return found


def _only(ids: list[str], some: Sequence[str] | None) -> list[str]:
    return ids if some is None else list(dict.fromkeys(some))


async def by_id(
    collection: Collection,
    ids: list[str],
    projection: dict[str, Any] | None = None,
    largest: int = 0,
) -> dict[str, dict[str, Any]]:
    """The documents of ``ids`` (distinct), read in single batches.

    A single batch leaves no cursor open: on FerretDB any other read takes its PostgreSQL
    connection out of the pool, and the *next* request pays ~6-16 ms for a new one
    (docs/ferretdb.md). But a single batch drops what passes its 16 MB without a word. A
    server cuts a batch only when the next document would take it past 16 MB, so when some
    ids were not found and the found ones plus ``largest`` (what a document of the collection
    weighs at most, by the contract) pass 16 MB, the missing ones are read again. A document
    heavier than that, written outside the contract, may still read as absent: its write is
    then an insert, refused as a duplicate key — a conflict — and it is read again alone. A
    message record cannot be dropped: a read asks for at most ``LOOKUP`` keys of at most
    ``MESSAGE_KEY_BYTES`` each, far below 16 MB (a dropped record would be counted again).
    """
    found: dict[str, dict[str, Any]] = {}
    wanted = ids
    while wanted:
        cursor = collection.find({"_id": {"$in": wanted}}, projection).batch_size(len(wanted))
        got = await cursor.limit(-len(wanted)).to_list()
        found.update((document["_id"], document) for document in got)
        if not got or len(got) == len(wanted) or not largest:
            break
        if sum(len(bson.encode(d)) for d in got) + largest <= BATCH_BYTES:
            break
        wanted = [i for i in wanted if i not in found]
    return found


@dataclass
class _Write:
    """One thread's write: the activity's next round and what is left for later ones."""

    state: ThreadState  # counted: what the activity document holds before this round
    stored: Stored | None
    fresh: list[str]  # ids to count, not counted before (sorted)
    leftover: set[str] = field(default_factory=set)  # counted, perhaps not recorded
    activity_rev: int | None = None
    pending: frozenset[str] = frozenset()  # the activity document's, as this round starts


async def save(
    layout: Layout,
    writes: Sequence[tuple[ThreadState, Stored | None]],
    wid: str,
    parts: dict[str, list[int]] | None = None,
) -> set[str]:
    """Write each state over what was loaded (None: nothing), as the module says; the threads
    that had something to write.

    ``wid`` marks every document written (to tell, after a short bulk, which writes were this
    writer's); ``parts``: per thread, the partitions a rebuild has merged into it.

    Raises:
        WriteConflict: some threads changed since they were loaded; the others were written.
    """
    threads = _thread_operations(writes, wid, parts)
    attempted = set(threads)
    outcomes = await asyncio.gather(
        _bulk(layout.threads, threads, wid),
        _count(layout, writes, wid, attempted),
        return_exceptions=True,
    )
    conflicted: set[str] = set()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
        conflicted |= outcome
    if conflicted:
        raise WriteConflict(conflicted)
    return attempted


async def _count(
    layout: Layout,
    writes: Sequence[tuple[ThreadState, Stored | None]],
    wid: str,
    attempted: set[str],
) -> set[str]:
    """The records looked up, then the activity writes, round after round, each followed by
    its records; the threads whose activity write was refused. Adds the threads it writes to
    ``attempted``."""
    rounds = await _resolve(layout, writes)
    refused: set[str] = set()
    while rounds:
        unrecorded = {w.state.id: w.leftover for w in rounds}
        operations, counted = _activity_operations(rounds, wid)
        attempted.update(operations)
        conflicted = await _bulk(layout.activity, operations, wid)
        refused |= conflicted
        went = [w for w in rounds if w.state.id not in conflicted]
        await record(
            layout.messages,
            [
                k
                for w in went
                for k in _keys(w.state.id, counted.get(w.state.id, unrecorded[w.state.id]))
            ],
        )
        await _clear(layout.activity, [w for w in went if len(w.pending) > PENDING_KEEP], wid)
        rounds = [w for w in went if w.fresh]
    return refused


async def _resolve(
    layout: Layout, writes: Sequence[tuple[ThreadState, Stored | None]]
) -> list[_Write]:
    """Tell each state's message ids apart: counted before (recorded, or pending) or fresh."""
    wanted: list[str] = []
    for state, stored in writes:
        if stored is not None and stored.activity_rev is not None:  # else nothing is recorded
            wanted += _keys(state.id, state.message_ids | stored.pending)
    recorded = await recorded_keys(layout.messages, wanted)
    rounds = []
    for state, stored in writes:
        pending = stored.pending if stored else frozenset()
        known = {m for m in state.message_ids | pending if message_key(state.id, m) in recorded}
        fresh = sorted(state.message_ids - known - pending)
        rounds.append(
            _Write(
                copy(state, message_ids=set()),
                stored,
                fresh,
                set(pending - known),
                stored.activity_rev if stored else None,
                pending,
            )
        )
    return rounds


def _keys(thread_id: str, message_ids: Any) -> list[str]:
    return [message_key(thread_id, m) for m in message_ids]


async def recorded_keys(messages: Collection, keys: list[str]) -> set[str]:
    """Which of ``keys`` have a message record, read ``LOOKUP`` keys a query, in parallel."""
    chunks = [list(dict.fromkeys(keys[i : i + LOOKUP])) for i in range(0, len(keys), LOOKUP)]
    found = await asyncio.gather(*(by_id(messages, c, {"_id": True}) for c in chunks))
    return {key for chunk in found for key in chunk}


def _thread_operations(
    writes: Sequence[tuple[ThreadState, Stored | None]],
    wid: str,
    parts: dict[str, list[int]] | None,
) -> dict[str, Operation]:
    """The thread documents to insert, and the fields of the others that changed."""
    operations: dict[str, Operation] = {}
    for state, stored in writes:
        wanted = sorted(parts[state.id]) if parts is not None else None
        if stored is None or stored.rev is None:
            if only_messages(state) and wanted is None:
                continue  # only messages so far (or nothing read): no thread document
            # (a rebuild keeps one anyway, for the partitions it has merged: clock.parts)
            document = to_document(state, 1)
            document["wid"] = wid
            if wanted is not None:
                document["clock"]["parts"] = wanted
            operations[state.id] = InsertOne(document)
            continue
        if thread_part(state) == thread_part(stored.state):
            changed = {}
        else:
            changed = _changed(
                to_document(stored.state, stored.rev), to_document(state, stored.rev)
            )
        if wanted is not None and wanted != sorted(stored.parts):
            changed["clock.parts"] = wanted
        if changed:
            changed.update(rev=stored.rev + 1, wid=wid)
            operations[state.id] = UpdateOne(
                {"_id": state.id, "rev": stored.rev}, {"$set": changed}
            )
    return operations


def _changed(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The ``$set`` that turns ``old`` into ``new`` (no field is ever removed): top-level
    fields, and the fold's clock field by field."""
    changed = {k: v for k, v in new.items() if k != "clock" and old.get(k) != v}
    old_clock = old.get("clock", {})
    changed.update(
        {f"clock.{k}": v for k, v in new.get("clock", {}).items() if old_clock.get(k) != v}
    )
    return changed


def _activity_operations(
    rounds: list[_Write], wid: str
) -> tuple[dict[str, Operation], dict[str, list[str]]]:
    """This round's activity writes, and per thread written the ids its ``pending`` holds;
    each round advances its threads (state, revision, pending) as if its write goes through."""
    operations: dict[str, Operation] = {}
    counting: dict[str, list[str]] = {}
    for w in rounds:
        now, w.fresh = w.fresh[:PENDING_MAX], w.fresh[PENDING_MAX:]
        before = w.stored.state if w.stored and w.activity_rev == w.stored.activity_rev else None
        state = copy(w.state, counted=w.state.counted + len(now))
        pending = sorted(w.leftover | set(now))
        if w.activity_rev is None:
            if not (now or state.last_message_at or state.last_model):
                continue  # a thread without messages needs no activity document
            document = to_activity(state, state.counted, pending, 1)
            document["wid"] = wid
            operations[w.state.id] = InsertOne(document)
        else:
            changed: dict[str, Any] = {"n": state.counted} if now else {}
            if before is None or state.last_message_at != before.last_message_at:
                changed["last_message_at"] = state.last_message_at
            if before is None or state.last_model != before.last_model:
                changed["model"] = model_field(state)
            if not changed:
                continue  # what is pending but recorded stays there until the next write
            if pending != sorted(w.pending):
                changed["pending"] = pending
            changed.update(rev=w.activity_rev + 1, wid=wid)
            operations[w.state.id] = UpdateOne(
                {"_id": w.state.id, "rev": w.activity_rev}, {"$set": changed}
            )
        counting[w.state.id] = pending
        w.state, w.leftover = state, set()
        w.activity_rev, w.pending = (w.activity_rev or 0) + 1, frozenset(pending)
    return operations, counting


async def _bulk(collection: Collection, operations: dict[str, Operation], wid: str) -> set[str]:
    """Apply ``operations`` (one per thread) in one unordered bulk; the threads whose write
    was refused: an insert of a document that exists, an update of a revision that moved, or
    a write PostgreSQL chose to abort in a deadlock with another writer's.

    Any other error is raised: the server's or the documents' (see services.mongo.store.transient).
    """
    if not operations:
        return set()
    ids = sorted(operations)  # in one order for every writer: fewer deadlocks in PostgreSQL
    try:
        result = await collection.bulk_write([operations[t] for t in ids], ordered=False)
        done, refused = result.inserted_count + result.matched_count, set[str]()
    except DuplicateKeyError:
        done, refused = -1, set()
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if not errors or any(e.get("code") not in REFUSED for e in errors):
            raise
        refused = {ids[e["index"]] for e in errors}
        done = exc.details.get("nInserted", 0) + exc.details.get("nMatched", 0)
    if done == len(ids) - len(refused):
        return refused
    unsure = [t for t in ids if t not in refused]  # read back by the writer's token
    return refused | (set(unsure) - await written_by(collection, wid, unsure))


async def written_by(collection: Collection, wid: str, thread_ids: list[str]) -> set[str]:
    """Which of ``thread_ids`` hold the write of the writer token ``wid``."""
    found = collection.find({"_id": {"$in": thread_ids}, "wid": wid}, {"_id": True})
    count = max(len(thread_ids), 1)  # a single batch (see by_id): ids only, far below 16 MB
    return {document["_id"] async for document in found.batch_size(count).limit(-count)}


async def record(messages: Collection, keys: list[str]) -> None:
    """Insert a message record for each of ``keys`` (counted ids); those there already stay."""
    for attempt in range(ATTEMPTS):
        if not keys:
            return
        try:
            await messages.insert_many([{"_id": key} for key in keys], ordered=False)
            return
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") not in REFUSED for e in errors) or attempt == ATTEMPTS - 1:
                raise
            keys = [e["op"]["_id"] for e in errors if e.get("code") == DEADLOCK]


async def _clear(activity: Collection, rounds: list[_Write], wid: str) -> None:
    """Empty the ``pending`` these writes left (recorded now), if still at their revision;
    a clearing that fails leaves them there, which only costs the next write a longer look."""
    if rounds:
        with contextlib.suppress(BulkWriteError):
            await activity.bulk_write(
                [
                    UpdateOne(
                        {"_id": w.state.id, "rev": w.activity_rev, "wid": wid},
                        {"$set": {"pending": []}},
                    )
                    for w in rounds
                ],
                ordered=False,
            )
    for w in rounds:
        w.pending = frozenset()
