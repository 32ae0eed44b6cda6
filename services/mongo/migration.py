"""The store's only DDL: expand (``threadview-admin migrate``, and a rebuild for its new view)
and contract (``threadview-admin contract``). What is needed is services.mongo.schema's.

A release is rolled out in three steps: **expand** (this release's collections, indexes and
catalog documents are added beside what the previous release uses, which keeps serving),
**deploy** (processes of both releases run side by side for a while; each hints only indexes
of its own version), **contract** (once no process of the previous release runs, the indexes
only older versions use are dropped). Index names carry their version
(services.query.INDEX_VERSION), so an expand never meets an index of its name with other keys
(MongoDB would refuse it, IndexKeySpecsConflict) and never drops what an older process hints.
An index is known by its keys, which the queries hint rather than its name: keys that an older
release already has an index of, under its older name, are not created again (MongoDB refuses a
second index of the same keys, IndexOptionsConflict) and serve both releases.

Why a migrate may be killed (kill -9) at any point, run twice at once, or run again:

- **Nothing records progress.** Each step creates one thing unless the store already has it,
  and what counts as migrated is what :func:`services.mongo.schema.require` finds. A migrate killed
  anywhere leaves a subset of what a whole one leaves: processes stay unready, naming what is
  missing, and the next migrate creates the rest.
- **Each thing appears whole or not at all.** A collection is created by one command; an index
  by one ``createIndexes`` (MongoDB finishes or cleans up a build the client stopped waiting
  for; DocumentDB builds it in one PostgreSQL transaction, rolled back with the connection).
  The catalog documents keep their own order (:meth:`~services.mongo.views.MongoViewCatalog.ensure`:
  the pointer first, then ``main``'s entry while the pointer names it).
- **Two at once** do the same things: a collection the other created first is a
  ``NamespaceExists`` we ignore, an index the other created first is a no-op of
  ``createIndexes`` (same name, same keys), and the catalog documents are upserts of the same
  values. On FerretDB, DDL of two sessions can deadlock in PostgreSQL: the loser's command
  fails and is tried again (:data:`ATTEMPTS`).
- **Order.** The catalog's collections and documents come first, then per view its collections,
  then its indexes, so a process never finds a view's indexes on a collection that is not
  there. Views being dropped are skipped (a drop removes the collections, then the entry); a
  migrate that read the pointer just before a drop set its mark could still create empty
  collections the drop then leaves behind: ``threadview-admin status`` lists them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from pymongo import IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import CollectionInvalid, OperationFailure

from services.failpoints import reach
from services.mongo.schema import (
    CATALOG,
    Index,
    Survey,
    survey,
    view_collections,
    view_indexes,
)
from services.mongo.views import MongoViewCatalog
from services.views import READY

T = TypeVar("T")
STEP = "migrate.step"  # the failpoint (services.failpoints) before each command
ATTEMPTS = 5
NAMESPACE_EXISTS, INDEX_NOT_FOUND = 48, 27
NAMES_CONFLICT = frozenset({85, 86})  # IndexOptionsConflict, IndexKeySpecsConflict: never passes

Database = AsyncDatabase[dict[str, Any]]


@dataclass
class Report:
    """What a migrate or a contract did (or, with ``dry_run``, would do), one line each;
    ``missing`` and ``newer`` for ``status``."""

    done: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    older: list[str] = field(default_factory=list)
    newer: list[str] = field(default_factory=list)


async def _ddl(command: Callable[[], Awaitable[T]]) -> T:
    """One DDL command, tried again when it fails (a PostgreSQL deadlock under FerretDB); a
    failpoint before it (the tests kill a migrate before each of its steps)."""
    reach(STEP)
    for attempt in range(ATTEMPTS):
        try:
            return await command()
        except OperationFailure as exc:
            if exc.code in NAMES_CONFLICT or attempt == ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


async def _create_collection(database: Database, name: str) -> None:
    try:
        await database.create_collection(name)  # listed first: no server error to log
    except CollectionInvalid:
        pass
    except OperationFailure as exc:
        if exc.code != NAMESPACE_EXISTS:  # else another migrate was first
            raise


async def create_collections(database: Database, names: Sequence[str], found: Survey) -> list[str]:
    """Create those of ``names`` that ``found`` lacks; return them."""
    created = [name for name in names if name not in found.collections]
    for name in created:
        await _ddl(partial(_create_collection, database, name))
        found.collections.add(name)
    return created


async def create_indexes(database: Database, indexes: Sequence[Index], found: Survey) -> list[str]:
    """Create those of ``indexes`` that ``found`` lacks, one collection at a time."""
    created: list[str] = []
    for collection in dict.fromkeys(i.collection for i in indexes):
        there = found.indexes.get(collection, {})
        keys = set(there.values())  # an index is known by its keys (services.mongo.schema)
        todo = [
            i
            for i in indexes
            if i.collection == collection and i.keys not in keys and i.name not in there
        ]
        if todo:
            models = [IndexModel(list(i.keys), name=i.name) for i in todo]
            await _ddl(partial(database[collection].create_indexes, models))
            created += [f"index {i.name} on {collection}" for i in todo]
    return created


async def expand_view(
    database: Database, collection: str, descending: bool, indexes: bool = True
) -> list[str]:
    """Create a view's collections and (with ``indexes``) its list indexes, those missing; the
    rebuild calls it for its new view, as migrate does for every ready one."""
    names = view_collections(collection)
    found = await survey(database, names)
    done = [f"collection {c}" for c in await create_collections(database, names, found)]
    if indexes:
        done += await create_indexes(database, view_indexes(collection, descending), found)
    return done


async def served_views(database: Database) -> list[str]:
    """The collections of the views a migrate keeps up to date: the live one, the one a swap
    is taking live, and every other ready view not being dropped (a rebuild in progress gets
    its indexes from the rebuild)."""
    catalog = MongoViewCatalog(database)
    pointer = await catalog.pointer()
    wanted = [v for v in (pointer.live, pointer.next) if v]
    entries = {v.name: v for v in await catalog.all()}
    wanted += [n for n, v in entries.items() if v.state == READY and n not in pointer.dropping]
    return [entries[n].collection for n in dict.fromkeys(wanted) if n in entries]


async def migrate(database: Database, descending: bool) -> Report:
    """Expand: create what this release needs and the store lacks (see the module's argument);
    idempotent. ``descending``: the store walks an index one way only (FerretDB)."""
    report = Report()
    found = await survey(database, ())
    report.done += [f"collection {c}" for c in await create_collections(database, CATALOG, found)]
    catalog = MongoViewCatalog(database)
    if await catalog.pointers.find_one({"_id": "live"}) is None:
        report.done.append("the view pointer and main's catalog entry")
    await _ddl(catalog.ensure)
    for collection in await served_views(database):
        report.done += await expand_view(database, collection, descending)
    return report


async def status(database: Database, descending: bool) -> Report:
    """What a migrate would create (``missing``), what a contract would drop (``older``), and
    the indexes of a newer release (``newer``, which no contract of this one drops)."""
    report = Report()
    found = await survey(database, ())
    report.missing += found.lacks(CATALOG, ())
    if "view_pointer" in found.collections and not await MongoViewCatalog(
        database
    ).pointers.find_one({"_id": "live"}):
        report.missing.append("missing the view pointer (view_pointer, _id live)")
    if report.missing:
        return report
    for collection in await served_views(database):
        names = view_collections(collection)
        wanted = view_indexes(collection, descending)
        found = await survey(database, names)
        report.missing += found.lacks(names, wanted)
        report.older += [f"index {n} on {collection}" for n in found.older(collection, wanted)]
        report.newer += [f"index {n} on {collection}" for n in found.newer(collection)]
    return report


async def contract(database: Database, descending: bool, dry_run: bool = False) -> Report:
    """Drop the list indexes that only older versions (or none) use, on every served view;
    never one this release hints, never a newer version's. Run it once no process of the
    previous release is left: those still hint what it drops."""
    report = Report()
    for collection in await served_views(database):
        wanted = view_indexes(collection, descending)
        found = await survey(database, (collection,))
        report.newer += [f"index {n} on {collection}" for n in found.newer(collection)]
        for name in found.older(collection, wanted):
            report.done.append(f"index {name} on {collection}")
            if not dry_run:
                await _ddl(partial(_drop_index, database, collection, name))
    return report


async def _drop_index(database: Database, collection: str, name: str) -> None:
    try:
        await database[collection].drop_index(name)
    except OperationFailure as exc:
        if exc.code != INDEX_NOT_FOUND:  # else another contract dropped it first
            raise
