"""What this release needs of the store, in one place, and how far a database is from it.

Collections (the catalog's, and three per view), indexes (each view's list indexes, named with
:data:`~services.query.INDEX_VERSION`, so a name never comes back with other keys; an index
is known by its keys, which the queries hint) and the
catalog documents (the view pointer, ``main``'s entry). ``threadview-admin migrate``
(services.mongo.migration) creates what is missing; the API, the projector and the other tools only
look, here, and are unready (or exit) with :class:`NotMigrated` until it is there.

Looking never touches a collection that does not exist: the collections are listed first and
indexes are listed only on those found (FerretDB logs an ERROR, ``ns does not exist``, for
``listIndexes`` on a missing one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.mongo.views import MongoViewCatalog
from services.query import INDEX_VERSION, list_indexes
from services.views import LIVE, READY, ViewError

# the collections outside the views: the catalog and the pointer, API keys, the projector's
# probe (services.mongo.store.probe) and the dead-letter re-drive marks
# (services.mongo.redrive_marks)
CATALOG = ("views", "view_pointer", "api_keys", "projector_probe", "dlq_redriven")
MIGRATE = "run threadview-admin migrate"
_VERSIONED = re.compile(r"list_v(\d+)_")

Keys = tuple[tuple[str, int], ...]


class NotMigrated(ViewError):
    """The store lacks what this release needs: the operator runs ``threadview-admin migrate``."""


@dataclass(frozen=True)
class Index:
    collection: str
    name: str
    keys: Keys


def view_collections(collection: str) -> tuple[str, str, str]:
    """A view's three collections (services.mongo.writes.Layout)."""
    return (collection, f"{collection}_activity", f"{collection}_messages")


def view_indexes(collection: str, descending: bool) -> list[Index]:
    """The indexes this release's queries hint on a view's thread documents (the activity
    documents and message records are read by ``_id`` only)."""
    return [Index(collection, i.name, tuple(i.keys)) for i in list_indexes(descending)]


def version_of(name: str) -> int | None:
    """The version in a list index's name: 0 for the unversioned names of the releases before
    migrations; None for an index that is not a list index (``_id_``, an operator's own)."""
    if found := _VERSIONED.match(name):
        return int(found.group(1))
    return 0 if name.startswith("list_") else None


@dataclass
class Survey:
    """What a database holds of ``wanted``: its collections, and the indexes (name to keys) of
    the wanted collections that exist."""

    collections: set[str]
    indexes: dict[str, dict[str, Keys]] = field(default_factory=dict)

    def lacks(self, collections: Iterable[str], indexes: Iterable[Index]) -> list[str]:
        """What is missing, one line each. An index is known by its keys: one of the wanted
        keys under another name (an older release's, made before the keys needed a new
        version) serves as well, since the queries hint keys, not names; a wanted name that
        is there with other keys is reported (migrate cannot create it)."""
        found = [f"missing collection {c}" for c in collections if c not in self.collections]
        for index in indexes:
            there = self.indexes.get(index.collection, {})
            if index.keys in there.values():
                continue
            keys = there.get(index.name)
            if keys is None:
                found.append(f"missing index {index.name} on {index.collection}")
            else:
                found.append(f"index {index.name} on {index.collection} has keys {keys}")
        return found

    def older(self, collection: str, wanted: Iterable[Index]) -> list[str]:
        """List indexes of ``collection`` whose keys this release does not use and that an
        older (or this) version made: what ``contract`` drops. A newer version's are never
        among them, nor one of this release's keys under an older name."""
        keys = {i.keys for i in wanted}
        return [
            name
            for name, has in self.indexes.get(collection, {}).items()
            if has not in keys and (v := version_of(name)) is not None and v <= INDEX_VERSION
        ]

    def newer(self, collection: str) -> list[str]:
        return [n for n in self.indexes.get(collection, {}) if (version_of(n) or 0) > INDEX_VERSION]


async def survey(database: AsyncDatabase[dict[str, Any]], collections: Iterable[str]) -> Survey:
    """The collections of ``database``, and the indexes of those among ``collections`` that
    exist (none is asked of a collection that does not)."""
    found = Survey(set(await database.list_collection_names()))
    for name in collections:
        if name in found.collections:
            found.indexes[name] = {
                i["name"]: tuple((k, int(v)) for k, v in i["key"].items())
                async for i in await database[name].list_indexes()
            }
    return found


def not_migrated(problems: Sequence[str]) -> NotMigrated:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return NotMigrated(f"store not migrated for this release: {problems[0]}{more} ({MIGRATE})")


async def require(
    database: AsyncDatabase[dict[str, Any]],
    descending: bool,
    views: Sequence[str] = (LIVE,),
    catalog: Sequence[str] = CATALOG,
) -> None:
    """Check, writing nothing, that the catalog and ``views`` (names; ``live``: the live view)
    are as this release needs them. A view a swap is taking live is not looked at: a rebuild
    made it, with the migration's code, and writes to it need no index.

    Raises:
        NotMigrated: something is missing; the message names the first thing and the command.
        ViewError: a view named in ``views`` has no catalog entry, or is not ready.
    """
    found = await survey(database, ())
    if problems := found.lacks(catalog, ()):
        raise not_migrated(problems)
    if not views:
        return
    views_catalog = MongoViewCatalog(database)
    if await views_catalog.pointers.find_one({"_id": LIVE}) is None:
        raise not_migrated(["missing the view pointer (view_pointer, _id live)"])
    pointer = await views_catalog.pointer()
    named = {v for v in views if v != LIVE}
    pointed = {pointer.live} if LIVE in views else set()
    collections: list[str] = []
    indexes: list[Index] = []
    for name in sorted(named | pointed):
        if name not in named and await views_catalog.get(name) is None:
            raise not_migrated([f"missing the catalog entry of view {name!r} (views)"])
        view = await views_catalog.require(name)
        if view.state != READY:  # a rebuild's view gets its indexes when it is done
            raise ViewError(f"view {view.name!r} is {view.state}, not ready")
        collections += view_collections(view.collection)
        indexes += view_indexes(view.collection, descending)
    found = await survey(database, collections)
    if problems := found.lacks(collections, indexes):
        raise not_migrated(problems)


async def walks_one_way(database: AsyncDatabase[dict[str, Any]]) -> bool:
    """Whether the store walks an index in one direction only, so that every list index needs
    a descending copy: FerretDB (it names itself in buildInfo), whose DocumentDB backend cannot
    walk one backwards; MongoDB walks one either way."""
    return "ferretdb" in await database.command("buildInfo")
