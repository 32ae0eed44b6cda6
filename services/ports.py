"""The core's ports: what the use cases need of a store, as Protocols, and the plain values
that cross them. The adapters are services.mongo (MongoDB, and FerretDB through the same
protocol) and testkit.memory (in memory, for unit tests); tests/contract holds both to one
contract (tests/integration/test_contract.py).

A use case (services.projector, services.threads, the API's routes, the CLIs' commands) is
typed on these, never on an adapter; only the composition root (services.mongo.bootstrap)
names the adapter it builds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from services.keys import ApiKey, Kind
from services.projection import ThreadState
from services.query import Scope, ThreadQuery
from services.views import Handover, Pointer, View


class WriteConflict(Exception):
    """Another writer changed some threads since they were loaded: reload, refold, write again.

    ``threads``: which ones (the others were written).
    """

    def __init__(self, threads: set[str]) -> None:
        super().__init__(f"{len(threads)} of the batch's threads changed under us")
        self.threads = threads


class CursorNotFound(Exception):
    """A cursor names no thread the caller may see (whether it exists or not)."""

    def __init__(self, param: str) -> None:
        super().__init__(f"{param} names no thread you can see")
        self.param = param


@dataclass(frozen=True)
class Stored:
    """A thread as loaded: its state (the store's count as ``counted``, no message ids) and
    what a conditional write of it needs (services.mongo.writes says what each means there)."""

    state: ThreadState
    rev: int | None  # the thread document's revision (None: there is none)
    parts: tuple[int, ...] = ()  # the partitions a rebuild merged into it (clock.parts)
    activity_rev: int | None = None  # the activity document's (None: there is none)
    pending: frozenset[str] = frozenset()  # counted message ids perhaps not recorded yet


@dataclass(frozen=True)
class Page:
    data: list[dict[str, Any]]  # views (services.projection.view), in the page's order
    has_more: bool
    total: int | None = None


@dataclass
class Absorbed:
    """What :meth:`ThreadStore.absorb` did besides inserting."""

    merged: int = 0  # states merged into a stored one (met before, or on another partition)
    conflicts: int = 0  # rounds of writes another writer got in first


class ThreadWriter(Protocol):
    """What the projector needs of a view: conditional writes of folded states."""

    async def load(
        self,
        thread_ids: Sequence[str],
        threads: Sequence[str] | None = None,
        activity: Sequence[str] | None = None,
    ) -> dict[str, Stored]:
        """The stored threads among ``thread_ids``; ``threads`` / ``activity`` narrow which
        threads need what a non-message event (resp. a message) changes. What is not loaded
        of a thread is not written by ``save`` either."""
        ...

    async def save(
        self,
        writes: Sequence[tuple[ThreadState, Stored | None]],
        wid: str | None = None,
        parts: dict[str, list[int]] | None = None,
    ) -> set[str]:
        """Write each state over what was loaded of it (None: nothing), each thread conditional
        on what was loaded, every message id counted once whatever was counted before; the
        threads that had something to write.

        Raises:
            WriteConflict: naming the threads that changed since they were loaded; the others
                were written.
        """
        ...

    async def probe(self) -> None:
        """One small write of the store's own: raises when the store takes no write at all."""
        ...

    def transient(self, exc: BaseException) -> bool:
        """Whether an error of this store may pass by itself (retry) rather than being the
        write's own fault."""
        ...


class ThreadReader(Protocol):
    """What the API needs of a view."""

    async def page(self, query: ThreadQuery, scope: Scope) -> Page:
        """One page of the threads ``query`` selects within ``scope``, in its order.

        Raises:
            CursorNotFound: ``after`` or ``before`` names no thread the scope may see.
        """
        ...

    async def get(self, thread_id: str, scope: Scope) -> dict[str, Any] | None:
        """The thread's view, or None when it does not exist or ``scope`` may not see it."""
        ...

    async def shows(
        self, scope: Scope, wanted: Sequence[tuple[str, str | None]]
    ) -> set[tuple[str, str | None]]:
        """Which of ``wanted`` (a thread, and one of its message ids or None) the view shows
        within ``scope``: the thread listed, and the message counted (domain waits,
        services.applied.Sightings)."""
        ...


class ThreadStore(ThreadWriter, ThreadReader, Protocol):
    """A view: what the projector writes, the API reads and the rebuild and tools use."""

    async def absorb(self, states: Sequence[ThreadState], part: int) -> Absorbed:
        """Merge each state (folded from nothing) into its thread's stored one, noting ``part``
        among the partitions merged into it; idempotent."""
        ...

    async def spread(self) -> int:
        """How many threads a rebuild found on more than one partition."""
        ...

    def documents(self, batch_size: int = 2000) -> AsyncIterator[dict[str, Any]]:
        """Every thread's view, whatever its scope, by id."""
        ...

    async def read(self, thread_id: str) -> dict[str, Any] | None:
        """The thread's view whatever its scope, or None."""
        ...

    async def read_many(self, thread_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The views of those of ``thread_ids`` that exist, whatever their scope."""
        ...


class ViewCatalog(Protocol):
    """The catalog of views and the pointer to the live one (services.views has the records
    and the rules; services.mongo.views the store's side and the swap's conditions)."""

    async def ensure(self) -> None: ...
    async def pointer(self) -> Pointer: ...
    async def get(self, name: str) -> View | None: ...
    async def require(self, name: str) -> View: ...
    async def all(self) -> list[View]: ...
    async def create(self, view: View) -> None: ...
    async def update(self, name: str, **values: Any) -> None: ...
    async def claim_swap(self, name: str, live: str, owner: dict[str, Any]) -> Handover: ...
    async def take_over(self, dead: Handover, owner: dict[str, Any]) -> Handover: ...
    async def begin_swap(self, handover: Handover, fold_version: int) -> None: ...
    async def beat(self, handover: Handover) -> None: ...
    async def finish_swap(
        self, handover: Handover, previous: str, fold_version: int, reached: dict[int, int]
    ) -> None: ...
    async def abort_swap(self, handover: Handover) -> bool: ...
    async def settle(self) -> list[str]: ...
    async def drop(self, name: str) -> str: ...


class KeyStore(Protocol):
    """Where API keys are kept: only their secrets' hashes (services.keys)."""

    async def create(
        self, kind: Kind, organization_ids: list[str], user_id: str | None = None
    ) -> tuple[ApiKey, str]:
        """Store a new key (services.keys.new_key); return it with its plaintext."""
        ...

    async def authenticate(self, plaintext: str) -> ApiKey | None:
        """The key, when ``plaintext`` is a key that exists and is not revoked."""
        ...

    async def list(self) -> list[ApiKey]: ...

    async def revoke(self, key_id: str) -> bool:
        """Whether a key that was not revoked is now."""
        ...
