"""Pages stay exact when their threads weigh more than a server batch (16 MB) together.

The documents are written straight into the view's collection, past the event contract (which
bounds titles): the store must not rely on the contract to read whole pages.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.documents import to_document
from services.mongo.bootstrap import Services
from services.projection import Creation, Register, Stamp, ThreadState, view
from services.query import Order, Scope, ThreadQuery
from testkit.families import expected

pytestmark = pytest.mark.integration

T0 = datetime(2025, 11, 17, tzinfo=UTC)
ORG = Scope(("org_heavy",))
TITLE_BYTES = 900_000  # the 25 heavy threads weigh 22 MB together: more than a 16 MB batch
THREADS = 30  # every 6th pinned: a stream of 25 unpinned heavy threads, and a light one


@pytest.fixture
async def heavy(services: Services) -> list[dict[str, Any]]:
    """The views of the threads written: heavy unpinned ones, light pinned ones."""
    states = []
    for n in range(THREADS):
        stamp = Stamp(T0 + timedelta(seconds=n // 3), f"evt_{n}")  # ties broken by id
        pinned = n % 6 == 0
        states.append(
            ThreadState(
                id=f"thrd_{n:02d}",
                creation=Creation("org_heavy", "usr_1", None, None, stamp),
                title=Register(None if pinned else f"{n:02d}" + "x" * TITLE_BYTES, stamp),
                pinned=Register(pinned, stamp),
                updated_at=stamp.time,
            )
        )
    for start in range(0, THREADS, 10):  # insert_many splits at 48 MB; stay well below
        chunk = states[start : start + 10]
        await services.store.threads.insert_many([to_document(s, 1) for s in chunk])
    return [view(s) for s in states]


def window(listed: list[str], query: ThreadQuery) -> list[str]:
    """The threads strictly between the query's cursors, in list order."""
    start = listed.index(query.after) + 1 if query.after else 0
    stop = listed.index(query.before) if query.before else len(listed)
    return listed[start:stop]


async def check(
    services: Services, listed: list[str], query: ThreadQuery
) -> tuple[list[str], bool]:
    """One page checked against the reference (its ids, so its last_id, and has_more)."""
    page = await services.store.page(query, ORG)
    between = window(listed, query)
    want = between[-query.limit :] if query.before and not query.after else between[: query.limit]
    got = [t["id"] for t in page.data]
    assert got == want, f"{query}: {len(got)} threads, {len(want)} expected"
    assert page.has_more == (len(between) > query.limit), query
    assert all(len(t["title"] or "") in (0, TITLE_BYTES + 2) for t in page.data)
    return got, page.has_more


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("limit", [25, 100])
async def test_walks_over_heavy_threads_are_exact(
    services: Services, heavy: list[dict[str, Any]], order: Order, limit: int
) -> None:
    query = ThreadQuery(limit=limit, order=order)
    listed = expected(heavy, query, ORG)
    assert len(listed) == THREADS

    # forward with after=last_id, until has_more is false
    seen, more = await check(services, listed, query)
    while more:
        page, more = await check(services, listed, replace(query, after=seen[-1]))
        seen += page
    assert seen == listed

    # backward with before=first_id, from the last thread
    back, more = [listed[-1]], True
    while more:
        page, more = await check(services, listed, replace(query, before=back[0]))
        back = page + back
    assert back == listed
