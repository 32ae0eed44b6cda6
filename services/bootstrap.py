"""The composition root: builds the store from settings. Nothing connects at import time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

from bson.codec_options import CodecOptions
from pymongo import AsyncMongoClient

from services.keys import MongoKeyStore
from services.settings import Settings
from services.store import MongoThreadStore


@dataclass
class Services:
    settings: Settings
    client: AsyncMongoClient[dict[str, Any]]
    store: MongoThreadStore
    keys: MongoKeyStore

    async def close(self) -> None:
        await self.client.close()


async def bootstrap(settings: Settings) -> Services:
    """Connect to the store and make sure its indexes exist."""
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
    info = await database.command("buildInfo")
    # FerretDB names itself in buildInfo; its DocumentDB backend walks indexes one way only
    store = MongoThreadStore(database, descending_indexes="ferretdb" in info)
    await store.ensure_indexes()
    return Services(settings, client, store, MongoKeyStore(database))
