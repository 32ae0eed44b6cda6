"""The API keys' store in MongoDB (collection ``api_keys``): the adapter of
services.keys.KeyStore. A record holds the key and its secret's hash, never the secret."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.keys import ApiKey, Kind, new_key, secret_matches, split_key


class MongoKeyStore:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self.keys = database["api_keys"]

    async def create(
        self, kind: Kind, organization_ids: list[str], user_id: str | None = None
    ) -> tuple[ApiKey, str]:
        """Store a new key (services.keys.new_key); return it with its plaintext, which is
        never stored or shown again."""
        key, hashed, plaintext = new_key(kind, organization_ids, user_id)
        await self.keys.insert_one({**self._document(key), "hash": hashed})
        return key, plaintext

    async def authenticate(self, plaintext: str) -> ApiKey | None:
        parts = split_key(plaintext)
        document = await self.keys.find_one({"_id": parts[0]}) if parts else None
        secret = parts[1] if parts else ""
        if not secret_matches(secret, document["hash"] if document else None) or not document:
            return None
        key = self._key(document)
        return None if key.revoked_at else key

    async def list(self) -> list[ApiKey]:
        return [self._key(d) async for d in self.keys.find().sort("created_at", 1)]

    async def revoke(self, key_id: str) -> bool:
        result = await self.keys.update_one(
            {"_id": key_id, "revoked_at": None}, {"$set": {"revoked_at": datetime.now(UTC)}}
        )
        return result.modified_count == 1

    @staticmethod
    def _document(key: ApiKey) -> dict[str, Any]:
        return {
            "_id": key.id,
            "kind": key.kind,
            "organization_ids": list(key.organization_ids),
            "user_id": key.user_id,
            "created_at": key.created_at,
            "revoked_at": key.revoked_at,
        }

    @staticmethod
    def _key(document: dict[str, Any]) -> ApiKey:
        return ApiKey(
            document["_id"],
            document["kind"],
            tuple(document["organization_ids"]),
            document["user_id"],
            document["created_at"],
            document["revoked_at"],
        )
