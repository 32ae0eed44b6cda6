"""API keys: made here, shown once, stored only as a SHA-256 hash of their secret part.

A key reads ``tv_<key id>_<secret>``. The id finds the stored record; the secret's hash is
compared in constant time. Secrets are 256 random bits, so a fast hash is enough (nothing to
brute-force); no salt or key stretching is needed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pymongo.asynchronous.database import AsyncDatabase

from services.query import Scope

Kind = Literal["user", "service"]
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class ApiKey:
    id: str
    kind: Kind
    organization_ids: tuple[str, ...]
    user_id: str | None
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def scope(self) -> Scope:
        return Scope(self.organization_ids, self.user_id)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(plaintext: str) -> tuple[str, str] | None:
    prefix, _, rest = plaintext.partition("_")
    key_id, _, secret = rest.partition("_")
    return (key_id, secret) if prefix == "tv" and key_id and secret else None


class MongoKeyStore:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self.keys = database["api_keys"]

    async def create(
        self, kind: Kind, organization_ids: list[str], user_id: str | None = None
    ) -> tuple[ApiKey, str]:
        """Store a new key; return it with its plaintext, which is never stored or shown again.

        Args:
            kind: "user" (sees its user's threads) or "service" (every thread).
            organization_ids: the organizations the key may see; at least one.
            user_id: the key's user; required for a user key, absent for a service key.
        """
        if not organization_ids or (kind == "user") != (user_id is not None):
            raise ValueError(
                "a user key needs a user and organizations; a service key only organizations"
            )
        key = ApiKey(
            secrets.token_hex(6), kind, tuple(organization_ids), user_id, datetime.now(UTC)
        )
        secret = secrets.token_urlsafe(32)
        await self.keys.insert_one({**self._document(key), "hash": _hash(secret)})
        return key, f"tv_{key.id}_{secret}"

    async def authenticate(self, plaintext: str) -> ApiKey | None:
        """The key, when ``plaintext`` is a key that exists and is not revoked."""
        parts = _split(plaintext)
        document = await self.keys.find_one({"_id": parts[0]}) if parts else None
        stored_hash = document["hash"] if document else _DUMMY_HASH
        secret = parts[1] if parts else ""
        if not hmac.compare_digest(_hash(secret), stored_hash) or document is None:
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


class KeyCache:
    """Keys checked once are trusted for ``ttl`` seconds, so a request does not pay a store
    round trip for its key: a revocation applies within ``ttl`` (0: every request looks).

    Only keys that authenticated are kept (by a hash of the plaintext), at most ``size``.
    """

    def __init__(self, keys: MongoKeyStore, ttl: float, size: int = 10_000) -> None:
        self.keys, self.ttl, self.size = keys, ttl, size
        self._trusted: dict[str, tuple[float, ApiKey]] = {}

    async def authenticate(self, plaintext: str) -> ApiKey | None:
        if self.ttl <= 0:
            return await self.keys.authenticate(plaintext)
        digest, now = _hash(plaintext), time.monotonic()
        found = self._trusted.get(digest)
        if found is not None and found[0] > now:
            return found[1]
        key = await self.keys.authenticate(plaintext)
        self._trusted.pop(digest, None)
        if key is not None:
            if len(self._trusted) >= self.size:  # the oldest entry goes
                self._trusted.pop(next(iter(self._trusted)))
            self._trusted[digest] = (now + self.ttl, key)
        return key
