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
from typing import TYPE_CHECKING, Literal

from services.query import Scope

if TYPE_CHECKING:
    from services.ports import KeyStore

Kind = Literal["user", "service"]
DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


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


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(plaintext: str) -> tuple[str, str] | None:
    prefix, _, rest = plaintext.partition("_")
    key_id, _, secret = rest.partition("_")
    return (key_id, secret) if prefix == "tv" and key_id and secret else None


def new_key(
    kind: Kind, organization_ids: list[str], user_id: str | None = None
) -> tuple[ApiKey, str, str]:
    """A new key, its secret's hash (what is stored) and its plaintext (shown once, never stored).

    Args:
        kind: "user" (sees its user's threads) or "service" (every thread).
        organization_ids: the organizations the key may see; at least one.
        user_id: the key's user; required for a user key, absent for a service key.
    """
    if not organization_ids or (kind == "user") != (user_id is not None):
        raise ValueError(
            "a user key needs a user and organizations; a service key only organizations"
        )
    key = ApiKey(secrets.token_hex(6), kind, tuple(organization_ids), user_id, datetime.now(UTC))
    secret = secrets.token_urlsafe(32)
    return key, hash_secret(secret), f"tv_{key.id}_{secret}"


def secret_matches(secret: str, stored_hash: str | None) -> bool:
    """Whether ``secret`` hashes to ``stored_hash``, in constant time; compared against a dummy
    hash when no key was found (None), so that a missing key costs what a wrong secret does."""
    matches = hmac.compare_digest(hash_secret(secret), stored_hash or DUMMY_HASH)
    return matches and stored_hash is not None


class KeyCache:
    """Keys checked once are trusted for ``ttl`` seconds, so a request does not pay a store
    round trip for its key: a revocation applies within ``ttl`` (0: every request looks).

    Only keys that authenticated are kept (by a hash of the plaintext), at most ``size``.
    """

    def __init__(self, keys: KeyStore, ttl: float, size: int = 10_000) -> None:
        self.keys, self.ttl, self.size = keys, ttl, size
        self._trusted: dict[str, tuple[float, ApiKey]] = {}

    async def authenticate(self, plaintext: str) -> ApiKey | None:
        if self.ttl <= 0:
            return await self.keys.authenticate(plaintext)
        digest, now = hash_secret(plaintext), time.monotonic()
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
