"""The composition root: builds the store from settings. Nothing connects at import time.

It creates nothing in the store (``threadview-admin migrate`` does: services.mongo.migration); it
checks that what this release needs is there (services.mongo.schema).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from bson.codec_options import CodecOptions
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from services.keys import KeyCache
from services.mongo import schema
from services.mongo.keys import MongoKeyStore
from services.mongo.migration import Report
from services.mongo.migration import migrate as expand
from services.mongo.store import MongoThreadStore
from services.mongo.views import MongoViewCatalog
from services.projection import FOLD_VERSION
from services.projector import Refused
from services.settings import Settings
from services.views import LIVE, MAIN, View, ViewError, collection_of, fold_refusal

# how long the API keeps serving the view it looked up before it looks again: a swap reaches
# every API instance within this (each request is answered from one view, old or new)
POINTER_TTL = 1.0
# how often a process started on a store not migrated for this release looks again
RECHECK_SECONDS = 2.0


@dataclass
class Services:
    settings: Settings
    client: AsyncMongoClient[dict[str, Any]]
    database: AsyncDatabase[dict[str, Any]]
    catalog: MongoViewCatalog
    store: MongoThreadStore  # the view served (or written) when the process started
    keys: MongoKeyStore
    key_cache: KeyCache  # the API's key checks
    descending_indexes: bool
    _stores: dict[str, MongoThreadStore] = field(default_factory=dict)
    _views: dict[str, View] = field(default_factory=dict)  # by name: collection, fold version
    _served: tuple[float, str, MongoThreadStore] | None = None
    # why the store is not ready for this release (services.mongo.schema.NotMigrated), or None
    problem: str | None = None
    _checked_at: float = 0.0

    async def unmigrated(self) -> str | None:
        """Why the store lacks what this release needs (None: it has it), looked at again at
        most every RECHECK_SECONDS while it does: the process turns ready once migrate ran."""
        if self.problem is None:
            return None
        if time.monotonic() - self._checked_at >= RECHECK_SECONDS:
            self._checked_at = time.monotonic()
            with contextlib.suppress(PyMongoError):  # the store not answering: said by ping
                try:
                    await schema.require(self.database, self.descending_indexes, [self._wanted])
                    view = await self.catalog.require(self._wanted)
                except ViewError as exc:  # NotMigrated, or a pinned view not (yet) ready
                    self.problem = str(exc)
                else:
                    self.store = self.store_of(view)
                    self.problem = None
        return self.problem

    @property
    def _wanted(self) -> str:
        return self.settings.view or LIVE

    def store_of(self, view: View) -> MongoThreadStore:
        return self._store_in(view.collection)

    def _store_in(self, collection: str) -> MongoThreadStore:
        if collection not in self._stores:
            self._stores[collection] = MongoThreadStore(
                self.database, self.descending_indexes, collection
            )
        return self._stores[collection]

    async def _view_named(self, name: str) -> View:
        if name not in self._views:  # a view's collection and fold version never change
            self._views[name] = await self.catalog.require(name)
        return self._views[name]

    async def _store_named(self, name: str) -> MongoThreadStore:
        return self.store_of(await self._view_named(name))

    async def written_stores(self) -> list[MongoThreadStore]:
        """The views the projector writes now: the live one, and the next during a swap (one
        read of the pointer, from the primary).

        Raises:
            Refused: one of them was built by another fold version than this process folds
                with (the pointer says which; a pointer older than that field, the catalog).
        """
        if problem := await self.unmigrated():
            raise Refused(problem)
        pointer = await self.catalog.pointer()
        views = [await self._view_named(pointer.live)]
        if pointer.next:
            views.append(await self._view_named(pointer.next))
        folds = {view.name: view.fold_version for view in views}
        if refusal := fold_refusal(pointer, folds, FOLD_VERSION):
            raise Refused(refusal)
        return [self.store_of(view) for view in views]

    async def served_store(self) -> MongoThreadStore:
        """The view the API answers from: the one named by THREADVIEW_VIEW, or the live one
        as looked up at most POINTER_TTL seconds ago."""
        return (await self.served())[1]

    async def served(self) -> tuple[str, MongoThreadStore]:
        """The name of the view the API answers from, and its store (see served_store)."""
        if self.settings.view is not None:
            return self.settings.view, self.store
        now = time.monotonic()
        if self._served is None or now - self._served[0] > POINTER_TTL:
            live = (await self.catalog.pointer()).live
            self._served = (now, live, await self._store_named(live))
        return self._served[1], self._served[2]

    async def ping(self, timeout_ms: int) -> bool:
        """Whether the store answers within ``timeout_ms`` (readiness probes)."""
        try:
            await asyncio.wait_for(self.database.command("ping"), timeout_ms / 1000)
        except (TimeoutError, PyMongoError):
            return False
        return True

    async def close(self) -> None:
        await self.client.close()


def connect(
    settings: Settings,
) -> tuple[AsyncMongoClient[dict[str, Any]], AsyncDatabase[dict[str, Any]]]:
    """A client (it connects on first use) and the database, with times in UTC."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongo_url,
        tz_aware=True,
        tzinfo=UTC,
        serverSelectionTimeoutMS=settings.mongo_timeout_ms,
        connectTimeoutMS=settings.mongo_timeout_ms,
    )
    database = client.get_database(
        settings.mongo_database, codec_options=CodecOptions(tz_aware=True, tzinfo=UTC)
    )
    return client, database


async def bootstrap(settings: Settings, unmigrated: bool = False) -> Services:
    """Connect to the store and find the served view, creating nothing.

    Args:
        settings: the process's.
        unmigrated: on a store that lacks what this release needs, return services whose
            :attr:`~Services.problem` says what (the API and the projector start unready and
            look again) instead of raising.

    Raises:
        NotMigrated: the store lacks what this release needs (``threadview-admin migrate``).
        ViewError: THREADVIEW_VIEW names no ready view.
    """
    client, database = connect(settings)
    try:
        descending = await schema.walks_one_way(database)
        catalog = MongoViewCatalog(database)
        problem = None
        try:
            await schema.require(database, descending, [settings.view or LIVE])
            view = await catalog.require(settings.view or (await catalog.pointer()).live)
        except schema.NotMigrated as exc:
            if not unmigrated:
                raise
            problem = str(exc)
            view = View(MAIN, collection_of(settings.view or MAIN), "unknown")
        store = MongoThreadStore(database, descending, view.collection)
    except BaseException:
        await client.close()
        raise
    keys = MongoKeyStore(database)
    cache = KeyCache(keys, settings.key_cache_seconds)
    services = Services(settings, client, database, catalog, store, keys, cache, descending)
    services.problem, services._checked_at = problem, time.monotonic()
    if problem is None:
        services._stores[view.collection] = store
    return services


async def migrate(settings: Settings) -> Report:
    """``threadview-admin migrate`` without the topics: expand the settings' database to what
    this release needs (services.mongo.migration); what it created."""
    client, database = connect(settings)
    try:
        return await expand(database, await schema.walks_one_way(database))
    finally:
        await client.close()
