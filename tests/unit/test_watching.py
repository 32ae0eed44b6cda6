"""The watch's feed (services.watching) on a fake log and view: what each watcher is told, its
resume, its resets, and never a thread outside its scope."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.consistency import Token
from services.query import Scope, ThreadQuery
from services.watching import Event, Feed

ORGS = ("org_a", "org_b", "org_c")


class World:
    """A log of (partition, key) records and the view they built."""

    def __init__(self) -> None:
        self.log: list[tuple[int, str]] = []
        self.threads: dict[str, dict[str, Any]] = {}
        self.name = "main"

    def write(self, thread: str, org: str, deleted: bool = False, user: str = "u1") -> None:
        self.log.append((hash(thread) % 3, thread))
        self.threads[thread] = {
            "id": thread,
            "listed": True,
            "organization_id": org,
            "user_id": user,
            "visible_in_ui": True,
            "is_deleted": deleted,
            "is_pinned": False,
            "assistant_id": None,
            "workflow_id": None,
        }

    @property
    def applied(self) -> dict[int, int]:
        ends: dict[int, int] = {}
        for p, _ in self.log:
            ends[p] = ends.get(p, 0) + 1
        return ends

    async def keys(
        self, start: Mapping[int, int], end: Mapping[int, int], limit: int
    ) -> list[str] | None:
        seen: dict[int, int] = {}
        found = []
        for p, key in self.log:
            offset = seen.get(p, 0)
            seen[p] = offset + 1
            if start.get(p, 0) <= offset < end.get(p, 0):
                found.append(key)
        return None if len(found) > limit else found

    async def views(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        return [dict(self.threads[i]) for i in ids if i in self.threads]

    async def view_name(self) -> str:
        return self.name


def feed(world: World, **options: int) -> Feed:
    return Feed(world.keys, world.views, world.view_name, **options)


async def take(events: Any, n: int) -> list[Event]:
    return [await asyncio.wait_for(events.__anext__(), 1) for _ in range(n)]


async def test_a_watcher_is_told_its_threads_and_their_removal_never_another_tenants() -> None:
    world = World()
    live = feed(world)
    await live.advance(world.applied)
    events = live.follow(Scope(("org_a",)), ThreadQuery(), None)
    (start,) = await take(events, 1)
    assert start.kind == "position"
    world.write("t1", "org_a")
    world.write("t2", "org_b")
    world.write("t1", "org_a", deleted=True)
    await live.advance(world.applied)
    told = await take(events, 1)
    assert [(e.kind, e.data["id"]) for e in told] == [("removed", "t1")]  # as it is now
    world.write("t3", "org_a")
    await live.advance(world.applied)
    (thread,) = await take(events, 1)
    assert (thread.kind, thread.data["id"]) == ("thread", "t3")
    assert Token(world.applied, "main") == Token(
        {int(p): int(o) for p, o in (x.split(":") for x in thread.id.split(".")[2].split(","))},
        "main",
    )


async def test_a_resume_tells_what_changed_since_and_one_from_too_far_back_resets() -> None:
    world = World()
    live = feed(world, max_replay=3)
    await live.advance(world.applied)
    since = Token(world.applied, "main")
    for n in range(2):
        world.write(f"t{n}", "org_a")
    await live.advance(world.applied)
    events = live.follow(Scope(("org_a",)), ThreadQuery(), since)
    told = await take(events, 3)
    assert [e.kind for e in told] == ["thread", "thread", "position"]
    for n in range(5):
        world.write(f"u{n}", "org_a")
    await live.advance(world.applied)
    old = live.follow(Scope(("org_a",)), ThreadQuery(), since)
    (reset,) = await take(old, 1)
    assert reset.kind == "reset"


async def test_a_swap_or_a_slow_watcher_gets_a_reset_never_a_silent_restart() -> None:
    world = World()
    live = feed(world, queue=2)
    await live.advance(world.applied)
    slow = live.follow(Scope(("org_a",)), ThreadQuery(), None)
    await take(slow, 1)
    for n in range(4):
        world.write(f"t{n}", "org_a")
        await live.advance(world.applied)
    assert [e.kind for e in await take(slow, 2)] == ["thread", "reset"]  # then it ends
    fresh = live.follow(Scope(("org_a",)), ThreadQuery(), None)
    await take(fresh, 1)
    world.name = "next"
    await live.advance(world.applied)
    (reset,) = await take(fresh, 1)
    assert reset.kind == "reset"
    stale = live.follow(Scope(("org_a",)), ThreadQuery(), Token({}, "main"))
    assert (await take(stale, 1))[0].kind == "reset"


async def test_a_first_watcher_after_a_quiet_spell_starts_now_not_with_a_reset() -> None:
    world = World()
    live = feed(world, max_replay=3)
    await live.start(world.applied)
    for n in range(10):  # more than max_replay while nobody watches
        world.write(f"t{n}", "org_a")
    await live.start(world.applied)
    events = live.follow(Scope(("org_a",)), ThreadQuery(), None)
    (start,) = await take(events, 1)
    assert (start.kind, start.id) == ("position", str(Token(world.applied, "main")))
    world.write("t10", "org_a")
    await live.start(world.applied)  # someone watches: start leaves the position alone
    await live.advance(world.applied)
    (thread,) = await take(events, 1)
    assert (thread.kind, thread.data["id"]) == ("thread", "t10")


@settings(max_examples=50, deadline=None)
@given(
    writes=st.lists(
        st.tuples(st.integers(0, 9), st.sampled_from(ORGS), st.booleans()),
        max_size=30,
    ),
    orgs=st.lists(st.sampled_from(ORGS), min_size=1, max_size=2, unique=True),
    user=st.sampled_from([None, "u1"]),
)
def test_no_event_ever_names_a_thread_outside_the_scope(
    writes: list[tuple[int, str, bool]], orgs: list[str], user: str | None
) -> None:
    async def run() -> None:
        world = World()
        live = feed(world)
        await live.advance(world.applied)
        scope = Scope(tuple(orgs), user)
        events = live.follow(scope, ThreadQuery(include_deleted=False), None)
        await take(events, 1)
        for n, org, deleted in writes:
            # a thread's organization and user never change (events.md): in its id here
            world.write(f"t{n}_{org}", org, deleted, f"u{n % 2 + 1}")
            await live.advance(world.applied)
        told = []
        while not live.watchers or next(iter(live.watchers)).events.qsize():
            told += await take(events, 1)
        for event in told:
            thread = world.threads[event.data["id"]]
            assert thread["organization_id"] in orgs
            assert user in (None, thread["user_id"])
        await events.aclose()

    asyncio.run(run())
