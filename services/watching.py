"""A live list (issue 20, the watch): what changed in the view, told to every watcher of one API
process from one read. The HTTP side (Server-Sent Events) is the API's; this is the feed.

No change stream is needed (MongoDB's would not run on FerretDB, and the code must be right on
both): the log is the change feed. When the projector group's committed offsets move from A to
B (services.applied), the records between name the threads that changed (a record's key is its
thread's id, events.md), and the view holds them as of B at least. So the feed reads the keys of
the records in [A, B) once, the views of those threads once, and hands each watcher the ones in
its scope: ``thread`` (the thread as the list shows it) when it matches the watcher's filters,
``removed`` when it does not any more (deleted, hidden, unpinned under ``is_pinned=true``...; a
client drops it if it holds it). Every event's id is the token of B: a watcher that reconnects
with it (``Last-Event-ID``, or ``since``) is told what changed after B, read from the log the
same way. A resume further back than ``max_replay`` records, a token of another view (a swap),
or a watcher too slow to take ``queue`` events gets ``reset``: list again. Never a silent
restart, never a thread outside the watcher's scope (the views are checked against the scope
here, whatever the filters).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.consistency import Token
from services.query import Scope, ThreadQuery, match_filters

Offsets = Mapping[int, int]
# the thread ids of the records between two positions (None: more than the limit)
Keys = Callable[[Offsets, Offsets, int], Awaitable[list[str] | None]]
Views = Callable[[Sequence[str]], Awaitable[list[dict[str, Any]]]]  # by thread id, any scope


@dataclass(frozen=True)
class Event:
    kind: str  # position, thread, removed, bookmark, reset
    id: str  # the token of the position it brings the watcher to
    data: dict[str, Any] = field(default_factory=dict)


def selects(query: ThreadQuery, scope: Scope, view: dict[str, Any]) -> bool | None:
    """Whether the watcher's list holds ``view`` (True), not (False), or the view is outside
    the scope altogether (None: never told)."""
    if not view.get("listed") or view.get("organization_id") not in scope.organization_ids:
        return None
    if scope.user_id is not None and view.get("user_id") != scope.user_id:
        return None
    return any(
        all(view.get(f) == v for f, v in equal.items()) for equal in match_filters(query, scope)
    )


class Watcher:
    def __init__(self, scope: Scope, query: ThreadQuery, queue: int) -> None:
        self.scope, self.query = scope, query
        self.events: asyncio.Queue[Event] = asyncio.Queue(queue)
        self.behind = False  # its queue overflowed: it gets a reset and is dropped

    def offer(self, event: Event) -> None:
        if self.behind:
            return
        try:
            self.events.put_nowait(event)
        except asyncio.QueueFull:
            self.behind = True


class Feed:
    def __init__(
        self,
        keys: Keys,
        views: Views,
        view_name: Callable[[], Awaitable[str]],
        max_replay: int = 10_000,
        queue: int = 1_000,
    ) -> None:
        self.keys, self.views, self.view_name = keys, views, view_name
        self.max_replay, self.queue = max_replay, queue
        self.watchers: set[Watcher] = set()
        self.position: dict[int, int] | None = None  # what the watchers were last told of
        self.view: str | None = None

    async def advance(self, applied: Offsets) -> None:
        """Tell every watcher what changed between the last position and ``applied``."""
        view = await self.view_name()
        if self.position is None or view != self.view:
            reset = self.view is not None and view != self.view
            self.position, self.view = dict(applied), view
            if reset:  # a swap: every watcher lists the new view again
                for watcher in self.watchers:
                    watcher.offer(Event("reset", str(Token(self.position, view))))
            return
        if dict(applied) == self.position:
            return
        target = {p: max(o, self.position.get(p, 0)) for p, o in applied.items()}
        changed = await self.keys(self.position, target, self.max_replay)
        token = str(Token(target, view))
        if changed is None:  # too much at once to tell thread by thread
            for watcher in self.watchers:
                watcher.offer(Event("reset", token))
        else:
            found = await self.views(sorted(set(changed))) if changed else []
            for watcher in self.watchers:
                for event in _told(watcher, found, token):
                    watcher.offer(event)
        self.position = target

    async def start(self, applied: Offsets) -> None:
        """Nobody watches: the feed starts again from ``applied``, without reading what changed
        while nobody watched (a first watcher after a quiet day would otherwise be told a reset,
        or wait for a day of keys)."""
        if not self.watchers:
            self.position = None
            await self.advance(applied)

    async def follow(
        self, scope: Scope, query: ThreadQuery, since: Token | None, bookmark: float = 15.0
    ) -> AsyncGenerator[Event, None]:
        """One watcher's events: where it starts, what it missed since ``since``, then live,
        with a ``bookmark`` (the position now) after ``bookmark`` seconds without an event."""
        watcher = Watcher(scope, query, self.queue)
        self.watchers.add(watcher)
        try:
            start = dict(self.position or {})
            view = self.view or await self.view_name()
            token = str(Token(start, view))
            if since is None:
                yield Event("position", token)
            elif since.view is not None and since.view != view:
                yield Event("reset", token, {"why": "the token is of another view"})
                return
            else:
                missed = await self.keys(since.positions, start, self.max_replay)
                if missed is None:
                    yield Event("reset", token, {"why": "too far behind: list again"})
                    return
                found = await self.views(sorted(set(missed))) if missed else []
                for event in _told(watcher, found, token):
                    yield event
                yield Event("position", token)
            while True:
                try:
                    event = await asyncio.wait_for(watcher.events.get(), bookmark)
                except TimeoutError:
                    yield Event("bookmark", str(Token(self.position or {}, self.view or view)))
                    continue
                if watcher.behind and watcher.events.empty():
                    yield Event("reset", event.id, {"why": "too slow: list again"})
                    return
                yield event
                if event.kind == "reset":
                    return
        finally:
            self.watchers.discard(watcher)


def _told(watcher: Watcher, views: list[dict[str, Any]], token: str) -> list[Event]:
    events = []
    for view in views:
        held = selects(watcher.query, watcher.scope, view)
        if held is True:
            events.append(Event("thread", token, view))
        elif held is False:
            events.append(Event("removed", token, {"id": view["id"]}))
    return events
