"""The thread store in memory: services.ports.ThreadStore with none of a server's machinery, for
unit tests of the use cases (the projector's retries, the read side) and as the second party of
the contract test (tests/integration/test_contract.py), which holds it and the MongoDB store to
the same behaviour.

It keeps, per thread, what the MongoDB layout keeps in its three collections: the state of the
thread document (creation, registers, ``updated_at``) with its revision and the partitions a
rebuild merged; the activity (count, last message time, last model) with its revision; and the
set of message ids recorded. Writes are conditional on the revisions loaded, as there, and a
message id is counted once whatever was counted before. Fault injection: ``fail`` (a queue of
exceptions the next calls to ``load``/``save``/``probe`` raise), ``conflict_next`` (threads
whose next write another writer gets in first) and ``refuse`` (threads whose every write is
refused for good: any save holding one raises :class:`Refusal`).

Why this module is longer than ~200 lines: the in-memory adapter of the whole ThreadStore port
(write side with revisions and counted ids, read side with the neutral plan), kept in one file
like the adapter it stands in for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.documents import only_messages, thread_part
from services.ports import Absorbed, CursorNotFound, Page, Stored, WriteConflict
from services.projection import ThreadState, copy, view
from services.projection import merge as merge_states
from services.query import Plan, Position, Scope, ThreadQuery, plan


class Unavailable(Exception):
    """A store error that passes by itself (what a lost connection is to the MongoDB store)."""


class Refusal(Exception):
    """A write the store refuses for good (what a document over 16 MB is to MongoDB)."""


@dataclass
class _Thread:
    id: str
    body: ThreadState | None = None  # what the thread document holds (no activity)
    rev: int | None = None
    parts: tuple[int, ...] = ()
    count: int = 0
    last_message_at: Any = None
    last_model: Any = None
    activity_rev: int | None = None
    recorded: set[str] = field(default_factory=set)

    def state(self, body: bool, activity: bool) -> ThreadState:
        state = copy(self.body) if body and self.body else ThreadState(id=self.id)
        if activity and self.activity_rev is not None:
            state = copy(
                state,
                counted=self.count,
                last_message_at=self.last_message_at,
                last_model=self.last_model,
            )
        return state

    def full(self) -> ThreadState:
        return self.state(body=True, activity=True)


class MemoryThreadStore:
    def __init__(self) -> None:
        self.threads: dict[str, _Thread] = {}
        # raised by the next calls, first first (None: that call goes through)
        self.fail: list[BaseException | None] = []
        self.conflict_next: set[str] = set()
        # threads whose writes the store refuses for good (as a document over 16 MB is), and why
        self.refuse: dict[str, str] = {}
        self.calls: list[str] = []  # "load", "save", "probe", in order

    def _enter(self, call: str) -> None:
        self.calls.append(call)
        if self.fail and (failure := self.fail.pop(0)) is not None:
            raise failure

    def transient(self, exc: BaseException) -> bool:
        return isinstance(exc, Unavailable)

    async def probe(self) -> None:
        self._enter("probe")

    async def load(
        self,
        thread_ids: Sequence[str],
        threads: Sequence[str] | None = None,
        activity: Sequence[str] | None = None,
    ) -> dict[str, Stored]:
        self._enter("load")
        found: dict[str, Stored] = {}
        for thread_id in dict.fromkeys(thread_ids):
            row = self.threads.get(thread_id)
            if row is None:
                continue
            body = (threads is None or thread_id in threads) and row.rev is not None
            counted = (activity is None or thread_id in activity) and row.activity_rev is not None
            if not (body or counted):
                continue
            found[thread_id] = Stored(
                row.state(body, counted),
                row.rev if body else None,
                row.parts if body else (),
                row.activity_rev if counted else None,
            )
        return found

    async def save(
        self,
        writes: Sequence[tuple[ThreadState, Stored | None]],
        wid: str | None = None,
        parts: dict[str, list[int]] | None = None,
    ) -> set[str]:
        self._enter("save")
        if refused := [w[0].id for w in writes if w[0].id in self.refuse]:
            raise Refusal(self.refuse[refused[0]])
        attempted: set[str] = set()
        conflicted: set[str] = set()
        for state, stored in writes:
            row = self.threads.setdefault(state.id, _Thread(state.id))
            wanted = tuple(sorted(parts[state.id])) if parts is not None else None
            if self._write_body(row, state, stored, wanted, attempted):
                conflicted.add(state.id)
            if self._write_activity(row, state, stored, attempted):
                conflicted.add(state.id)
        if conflicted:
            raise WriteConflict(conflicted)
        return attempted

    def _write_body(
        self,
        row: _Thread,
        state: ThreadState,
        stored: Stored | None,
        wanted: tuple[int, ...] | None,
        attempted: set[str],
    ) -> bool:
        """Write the thread document's part; whether it conflicted."""
        rev = stored.rev if stored else None
        if rev is None:
            if only_messages(state) and wanted is None:
                return False
        elif (
            stored is not None
            and thread_part(state) == thread_part(stored.state)
            and (wanted is None or wanted == stored.parts)
        ):
            return False
        attempted.add(state.id)
        if state.id in self.conflict_next or row.rev != rev:
            self.conflict_next.discard(state.id)
            return True
        row.body = copy(state, message_ids=set(), counted=0, last_message_at=None, last_model=None)
        row.rev = (rev or 0) + 1
        row.parts = wanted if wanted is not None else row.parts
        return False

    def _write_activity(
        self, row: _Thread, state: ThreadState, stored: Stored | None, attempted: set[str]
    ) -> bool:
        """Count the state's fresh message ids and set the activity's times; whether it
        conflicted."""
        rev = stored.activity_rev if stored else None
        fresh = state.message_ids - row.recorded
        before = stored.state if stored and rev is not None else None
        if not fresh and (
            (before is None and not (state.last_message_at or state.last_model))
            or (
                before is not None
                and state.last_message_at == before.last_message_at
                and state.last_model == before.last_model
            )
        ):
            return False
        attempted.add(state.id)
        if state.id in self.conflict_next or row.activity_rev != rev:
            self.conflict_next.discard(state.id)
            return True
        row.count = state.counted + len(fresh)
        row.recorded |= fresh
        row.last_message_at, row.last_model = state.last_message_at, state.last_model
        row.activity_rev = (rev or 0) + 1
        return False

    async def absorb(self, states: Sequence[ThreadState], part: int) -> Absorbed:
        pending = {state.id: state for state in states}
        stored = await self.load(list(pending))
        writes: list[tuple[ThreadState, Stored | None]] = []
        parts: dict[str, list[int]] = {}
        for thread_id, state in pending.items():
            current = stored.get(thread_id)
            writes.append(
                (state if current is None else merge_states(current.state, state), current)
            )
            parts[thread_id] = sorted({*(current.parts if current else ()), part})
        written = await self.save(writes, parts=parts)
        return Absorbed(merged=len(written & set(stored)))

    async def spread(self) -> int:
        return sum(1 for row in self.threads.values() if len(row.parts) > 1)

    async def documents(self, batch_size: int = 2000) -> AsyncIterator[dict[str, Any]]:
        for thread_id in sorted(self.threads):
            if self.threads[thread_id].rev is not None:
                yield view(self.threads[thread_id].full())

    async def read(self, thread_id: str) -> dict[str, Any] | None:
        row = self.threads.get(thread_id)
        return view(row.full()) if row and row.rev is not None else None

    def _visible(self, scope: Scope) -> list[dict[str, Any]]:
        views = [view(r.full()) for r in self.threads.values() if r.rev is not None]
        return [
            v
            for v in views
            if v["listed"]
            and v["organization_id"] in scope.organization_ids
            and scope.user_id in (None, v["user_id"])
        ]

    async def read_many(self, thread_ids: Sequence[str]) -> list[dict[str, Any]]:
        rows = [self.threads.get(t) for t in dict.fromkeys(thread_ids)]
        return [view(r.full()) for r in rows if r is not None and r.rev is not None]

    async def shows(
        self, scope: Scope, wanted: Sequence[tuple[str, str | None]]
    ) -> set[tuple[str, str | None]]:
        visible = {v["id"] for v in self._visible(scope)}
        return {
            (t, m)
            for t, m in wanted
            if t in visible and (m is None or m in self.threads[t].recorded)
        }

    async def get(self, thread_id: str, scope: Scope) -> dict[str, Any] | None:
        return next((v for v in self._visible(scope) if v["id"] == thread_id), None)

    async def page(self, query: ThreadQuery, scope: Scope) -> Page:
        visible = {v["id"]: v for v in self._visible(scope)}
        found: dict[str, Position] = {}
        for param, thread_id in (("after", query.after), ("before", query.before)):
            if thread_id is None:
                continue
            if thread_id not in visible:
                raise CursorNotFound(param)
            found[param] = Position(visible[thread_id]["created_at"], thread_id)
        chosen = plan(query, scope, found.get("after"), found.get("before"))
        selected = sorted(
            (v for v in visible.values() if _selects(chosen, v)),
            key=lambda v: (v["created_at"], v["id"]),
            reverse=chosen.descending,
        )
        data = selected[: query.limit]
        if chosen.reverse:
            data.reverse()
        total = None
        if query.include_total:
            total = sum(1 for v in visible.values() if _selects(chosen, v, bounded=False))
        return Page(data=data, has_more=len(selected) > query.limit, total=total)


def _selects(chosen: Plan, thread: dict[str, Any], bounded: bool = True) -> bool:
    """Whether one of the plan's streams holds the thread (its view)."""
    at = Position(thread["created_at"], thread["id"])
    if bounded and not all(b.admits(at) for b in chosen.bounds):
        return False
    return any(all(thread[f] == v for f, v in equal.items()) for equal in chosen.equalities)
