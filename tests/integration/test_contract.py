"""The thread store's contract (services.ports.ThreadStore), held by one class of tests run
against the in-memory store (testkit.memory) and against the real one (services.mongo, on
FerretDB here): what the projector, the rebuild and the API rely on, so that a use case tested
on the first behaves the same on the second."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from uuid import uuid4

import pytest

from services.mongo.bootstrap import connect
from services.mongo.migration import expand_view
from services.mongo.schema import view_collections, walks_one_way
from services.mongo.store import MongoThreadStore
from services.ports import CursorNotFound, ThreadStore, WriteConflict
from services.projection import ThreadState, as_counted, fold, view
from services.query import Scope, ThreadQuery
from testkit.memory import MemoryThreadStore
from testkit.threads import created, event, message, state_of

pytestmark = pytest.mark.integration

ORG_1 = Scope(("org_1",))
NOON = "2025-11-17T12:00:00Z"


@pytest.fixture(params=["memory", "mongo"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ThreadStore]:
    if request.param == "memory":
        yield MemoryThreadStore()
        return
    client, database = connect(request.getfixturevalue("settings"))
    collection, descending = f"contract_{uuid4().hex[:8]}", await walks_one_way(database)
    await expand_view(database, collection, descending)
    try:
        yield MongoThreadStore(database, descending, collection)
    finally:
        for name in view_collections(collection):
            await database.drop_collection(name)
        await client.close()


def ids(page: Any) -> list[str]:
    return [t["id"] for t in page.data]


class TestThreadStoreContract:
    async def test_a_saved_state_loads_back_as_counted(self, store: ThreadStore) -> None:
        state = state_of(
            created("thrd_a", metadata={"a.b": "dotted", "$x": "dollar"}, space_ids=["s1"]),
            message("thrd_a", 5, model="gpt-4o"),
            event("thread.pinned", "thrd_a", "2025-11-17T10:06:00Z", {}),
        )
        assert await store.save([(state, None)]) == {"thrd_a"}
        loaded = await store.load(["thrd_a", "thrd_missing"])
        assert list(loaded) == ["thrd_a"]
        assert loaded["thrd_a"].state == as_counted(state)
        assert (loaded["thrd_a"].rev, loaded["thrd_a"].activity_rev) == (1, 1)
        assert await store.read("thrd_a") == view(state)
        assert await store.save([]) == set()

    async def test_a_stale_revision_conflicts_alone_and_changes_nothing(
        self, store: ThreadStore
    ) -> None:
        await store.save([(state_of(created(t, title="one"), message(t, 1)), None) for t in "bc"])
        stale = await store.load(["b", "c"])

        def titled(thread: str, title: str, at: str) -> ThreadState:
            update = event("thread.updated", thread, at, {"title": title})
            return fold(stale[thread].state, [update])

        await store.save([(titled("b", "two", "2025-11-17T11:00:00Z"), stale["b"])])
        with pytest.raises(WriteConflict) as conflict:  # b: from rev 1, now 2; c goes through
            await store.save(
                [
                    (titled("b", "three", "2025-11-17T12:00:00Z"), stale["b"]),
                    (titled("c", "three", "2025-11-17T12:00:00Z"), stale["c"]),
                ]
            )
        assert conflict.value.threads == {"b"}
        await store.save([(fold(stale["b"].state, [message("b", 2)]), stale["b"])])
        with pytest.raises(WriteConflict):  # a message counted from a stale activity revision
            await store.save([(fold(stale["b"].state, [message("b", 3)]), stale["b"])])
        with pytest.raises(WriteConflict):  # "new", but it exists
            await store.save([(state_of(message("b", 4)), None)])
        now = await store.load(["b", "c"])
        assert (now["b"].rev, view(now["b"].state)["title"]) == (2, "two")
        assert (now["b"].activity_rev, now["b"].state.counted) == (2, 2)
        assert view(now["c"].state)["title"] == "three"

    async def test_a_message_is_counted_once_however_often_it_comes(
        self, store: ThreadStore
    ) -> None:
        await store.save([(state_of(created("d"), message("d", 1), message("d", 2)), None)])
        for again in ([1], [1, 2], [2, 3], [3], [1, 2, 3, 4]):  # redeliveries, overlaps
            stored = (await store.load(["d"]))["d"]
            folded = fold(stored.state, [message("d", n) for n in again])
            try:
                await store.save([(folded, stored)])
            except WriteConflict:
                pytest.fail("no other writer: nothing may conflict")
        thread = await store.read("d")
        assert thread is not None and thread["message_count"] == 4

    async def test_a_narrowed_load_reads_only_what_was_asked(self, store: ThreadStore) -> None:
        await store.save([(state_of(created("e", title="t"), message("e", 7)), None)])
        activity = (await store.load(["e"], threads=[], activity=["e"]))["e"]
        assert (activity.rev, activity.activity_rev, activity.state.counted) == (None, 1, 1)
        assert activity.state.creation is None
        body = (await store.load(["e"], threads=["e"], activity=[]))["e"]
        assert (body.rev, body.activity_rev, body.state.counted) == (1, None, 0)
        assert await store.load(["e"], threads=[], activity=[]) == {}
        # a message folded into the activity alone is written without the thread document
        stored = activity
        await store.save([(fold(stored.state, [message("e", 8)]), stored)])
        thread = await store.read("e")
        assert thread is not None and (thread["message_count"], thread["title"]) == (2, "t")

    async def test_absorbing_parts_gives_the_fold_of_all_and_again_changes_nothing(
        self, store: ThreadStore
    ) -> None:
        events = [created("f", title="f"), *(message("f", n) for n in range(12))]
        parts = [state_of(*events[i : i + 5]) for i in range(0, 13, 4)]  # overlapping chunks
        for part, states in enumerate(parts):
            await store.absorb([states], part % 2)
        stored = (await store.load(["f"]))["f"]
        assert stored.state == as_counted(state_of(*events))
        assert stored.parts == (0, 1)
        assert await store.spread() == 1
        assert (await store.absorb([parts[0]], 0)).merged == 0
        assert (await store.load(["f"]))["f"].rev == stored.rev

    async def test_a_page_lists_created_visible_undeleted_threads_in_order(
        self, store: ThreadStore
    ) -> None:
        states = [
            state_of(created("thrd_1", "2025-11-17T10:00:01Z")),
            state_of(created("thrd_2", "2025-11-17T10:00:02Z")),
            state_of(created("thrd_3", "2025-11-17T10:00:02Z")),  # a tie, broken by id
            state_of(created("thrd_hidden", visible_in_ui=False)),
            state_of(
                created("thrd_gone"),
                event("thread.deleted", "thrd_gone", "2025-11-17T12:00:00Z", {}),
            ),
            state_of(message("thrd_orphan", 1)),  # no creation: never listed
            state_of(created("thrd_other", org="org_2")),
        ]
        await store.save([(s, None) for s in states])
        newest = await store.page(ThreadQuery(limit=2), ORG_1)
        assert ids(newest) == ["thrd_3", "thrd_2"] and newest.has_more
        oldest = await store.page(ThreadQuery(limit=3, order="asc"), ORG_1)
        assert ids(oldest) == ["thrd_1", "thrd_2", "thrd_3"] and not oldest.has_more
        hidden = await store.page(ThreadQuery(visible_in_ui=False), ORG_1)
        assert ids(hidden) == ["thrd_hidden"]
        everything = await store.page(ThreadQuery(include_deleted=True), ORG_1)
        assert set(ids(everything)) == {"thrd_1", "thrd_2", "thrd_3", "thrd_gone"}
        assert ids(await store.page(ThreadQuery(), Scope(("org_2",)))) == ["thrd_other"]
        assert newest.data[0] == view(states[2])

    async def test_pages_walk_the_whole_list_both_ways_with_totals(
        self, store: ThreadStore
    ) -> None:
        states = [  # ties every three threads, pinned every fourth, two organizations
            state_of(
                created(f"t{n:02d}", f"2025-11-17T10:00:{n // 3:02d}Z", org=f"org_{n % 2 + 1}"),
                *(
                    [event("thread.pinned", f"t{n:02d}", "2025-11-17T11:00:00Z", {})]
                    if n % 4 == 0
                    else []
                ),
            )
            for n in range(23)
        ]
        await store.save([(s, None) for s in states])
        scope = Scope(("org_1", "org_2"))
        for query in (ThreadQuery(limit=4), ThreadQuery(limit=5, order="asc", is_pinned=False)):
            want = [
                view(s)["id"]
                for s in sorted(states, key=lambda s: (view(s)["created_at"], s.id))
                if query.is_pinned in (None, view(s)["is_pinned"])
            ]
            want = want[::-1] if query.order == "desc" else want
            first = await store.page(replace(query, include_total=True), scope)
            assert first.total == len(want)
            seen, page = ids(first), first
            while page.has_more and len(seen) <= len(want):
                page = await store.page(replace(query, after=seen[-1]), scope)
                seen += ids(page)
            assert seen == want
            back = await store.page(replace(query, before=want[-1]), scope)  # just ahead of it
            assert ids(back) == want[-1 - query.limit : -1]
            between = await store.page(replace(query, after=want[2], before=want[6]), scope)
            assert ids(between) == want[3:6]

    async def test_cursors_and_reads_never_cross_the_scope(self, store: ThreadStore) -> None:
        await store.save(
            [(state_of(created("mine")), None), (state_of(created("theirs", org="org_2")), None)]
        )
        assert (await store.get("mine", ORG_1) or {}).get("id") == "mine"
        assert await store.get("theirs", ORG_1) is None
        assert await store.get("mine", Scope(("org_1",), user_id="usr_2")) is None
        assert await store.read("theirs") is not None
        for param, query in (
            ("after", ThreadQuery(after="theirs")),
            ("before", ThreadQuery(before="theirs")),
        ):
            with pytest.raises(CursorNotFound) as missing:
                await store.page(query, ORG_1)
            assert missing.value.param == param
        assert [d["id"] async for d in store.documents(batch_size=1)] == ["mine", "theirs"]

    async def test_shows_names_what_a_scope_sees_listed_and_counted(
        self, store: ThreadStore
    ) -> None:
        await store.save(
            [
                (state_of(created("g"), message("g", 1)), None),
                (state_of(created("h", org="org_2"), message("h", 1)), None),
                (state_of(message("orphan", 1)), None),
            ]
        )
        wanted = [("g", None), ("g", "m1"), ("g", "m2"), ("h", None), ("h", "m1")]
        wanted += [("orphan", None), ("orphan", "m1"), ("nothing", None)]
        assert await store.shows(ORG_1, wanted) == {("g", None), ("g", "m1")}
        assert await store.shows(Scope(("org_2",)), wanted) == {("h", None), ("h", "m1")}
        assert await store.shows(ORG_1, []) == set()

    async def test_read_many_gives_the_views_of_those_that_exist(self, store: ThreadStore) -> None:
        state = state_of(created("k"), message("k", 1))
        await store.save([(state, None), (state_of(created("l", org="org_2")), None)])
        found = await store.read_many(["k", "nothing", "l", "k"])
        assert sorted(v["id"] for v in found) == ["k", "l"]
        assert next(v for v in found if v["id"] == "k") == view(state)
        assert await store.read_many([]) == []
