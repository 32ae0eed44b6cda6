"""The composition root: builds the store from settings. Nothing connects at import time."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from bson.codec_options import CodecOptions
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from services.keys import KeyCache, MongoKeyStore
from services.projection import FOLD_VERSION
from services.projector import Refused
from services.settings import Settings
from services.store import MongoThreadStore
from services.views import READY, View, ViewCatalog, ViewError, fold_refusal

# how long the API keeps serving the view it looked up before it looks again: a swap reaches
# every API instance within this (each request is answered from one view, old or new)
POINTER_TTL = 1.0


@dataclass
class Services:
    settings: Settings
    client: AsyncMongoClient[dict[str, Any]]
    database: AsyncDatabase[dict[str, Any]]
    catalog: ViewCatalog
    store: MongoThreadStore  # the view served (or written) when the process started
    keys: MongoKeyStore
    key_cache: KeyCache  # the API's key checks
    descending_indexes: bool
    _stores: dict[str, MongoThreadStore] = field(default_factory=dict)
    _views: dict[str, View] = field(default_factory=dict)  # by name: collection, fold version
    _served: tuple[float, MongoThreadStore] | None = None

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
        if self.settings.view is not None:
            return self.store
        now = time.monotonic()
        if self._served is None or now - self._served[0] > POINTER_TTL:
            self._served = (now, await self._store_named((await self.catalog.pointer()).live))
        return self._served[1]

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


async def bootstrap(settings: Settings) -> Services:
    """Connect to the store, record the views, and make sure the served view's indexes exist.

    Raises:
        ViewError: THREADVIEW_VIEW names no ready view.
    """
    client, database = connect(settings)
    try:
        info = await database.command("buildInfo")
        catalog = ViewCatalog(database)
        await catalog.ensure()
        view = await catalog.require(settings.view or (await catalog.pointer()).live)
        if view.state != READY:
            raise ViewError(f"view {view.name!r} is {view.state}, not ready")
        # FerretDB names itself in buildInfo; its DocumentDB backend walks indexes one way only
        descending = "ferretdb" in info
        store = MongoThreadStore(database, descending, view.collection)
        await store.ensure_indexes()
    except BaseException:
        await client.close()
        raise
    keys = MongoKeyStore(database)
    cache = KeyCache(keys, settings.key_cache_seconds)
    services = Services(settings, client, database, catalog, store, keys, cache, descending)
    services._stores[view.collection] = store
    return services
