"""Keyset paging against the real store, checked against a plain-Python reference model."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.mongo.bootstrap import Services
from services.ports import Page
from services.projection import Creation, Register, Stamp, ThreadState, view
from services.query import Scope, ThreadQuery
from testkit.families import expected as listed

pytestmark = pytest.mark.integration

ORGS = ("org_a", "org_b", "org_c")
USERS = ("usr_1", "usr_2", "usr_3")
T0 = datetime(2025, 11, 17, tzinfo=UTC)


@st.composite
def threads(draw: st.DrawFn, max_size: int = 24) -> list[ThreadState]:
    count = draw(st.integers(0, max_size))
    made = []
    for n in range(count):
        stamp = Stamp(T0 + timedelta(minutes=draw(st.integers(0, 6))), f"evt_{n}")  # ties
        made.append(
            ThreadState(
                id=f"thrd_{draw(st.integers(0, 99)):02d}_{n}",
                creation=Creation(
                    draw(st.sampled_from(ORGS)),
                    draw(st.sampled_from(USERS)),
                    draw(st.sampled_from([None, "asst_1", "asst_2"])),
                    draw(st.sampled_from([None, "wf_1"])),
                    stamp,
                ),
                visible_in_ui=Register(draw(st.booleans()), stamp),
                pinned=Register(draw(st.booleans()), stamp),
                deleted=Register(draw(st.booleans()), stamp),
                updated_at=stamp.time,
            )
        )
    return made


scopes = st.builds(
    Scope,
    organization_ids=st.lists(st.sampled_from(ORGS), min_size=1, max_size=3, unique=True).map(
        tuple
    ),
    user_id=st.one_of(st.none(), st.sampled_from(USERS)),
)

queries = st.builds(
    ThreadQuery,
    limit=st.integers(1, 7),
    order=st.sampled_from(["asc", "desc"]),
    organization_id=st.one_of(st.none(), st.sampled_from(ORGS)),
    assistant_id=st.one_of(st.none(), st.sampled_from(["asst_1", "asst_2"])),
    workflow_id=st.one_of(st.none(), st.just("wf_1")),
    is_pinned=st.one_of(st.none(), st.booleans()),
    visible_in_ui=st.booleans(),
    include_deleted=st.booleans(),
    include_total=st.booleans(),
)


def expected(states: list[ThreadState], query: ThreadQuery, scope: Scope) -> list[str]:
    return listed([view(s) for s in states], query, scope)


async def fresh(services: Services, states: list[ThreadState]) -> None:
    await services.store.threads.delete_many({})
    if states:
        await services.store.save([(s, None) for s in states])


def check_page(page: Page, query: ThreadQuery) -> list[str]:
    ids = [t["id"] for t in page.data]
    assert len(ids) <= query.limit
    assert ids or not page.has_more, "an empty page must not say has_more"
    return ids


async def walk_forward(services: Services, query: ThreadQuery, scope: Scope) -> list[str]:
    seen: list[str] = []
    page = await services.store.page(query, scope)
    seen += check_page(page, query)
    while page.has_more:
        page = await services.store.page(replace(query, after=seen[-1]), scope)
        seen += check_page(page, query)
    return seen


FAST = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FAST
@given(states=threads(), query=queries, scope=scopes)
async def test_walking_forward_returns_exactly_the_filtered_list(
    services: Services, states: list[ThreadState], query: ThreadQuery, scope: Scope
) -> None:
    await fresh(services, states)
    want = expected(states, query, scope)

    assert await walk_forward(services, query, scope) == want
    first = await services.store.page(query, scope)
    assert first.total == (len(want) if query.include_total else None)


@FAST
@given(states=threads(), query=queries, scope=scopes)
async def test_walking_backward_returns_exactly_the_filtered_list(
    services: Services, states: list[ThreadState], query: ThreadQuery, scope: Scope
) -> None:
    await fresh(services, states)
    want = expected(states, query, scope)
    if not want:
        return
    # given: the last page, reached through its last thread
    tail = want[-query.limit :]
    page = await services.store.page(replace(query, before=tail[-1]), scope)
    collected = [t["id"] for t in page.data] + [tail[-1]]
    # when: walking backward with before=first_id
    while page.has_more:
        page = await services.store.page(replace(query, before=collected[0]), scope)
        collected = check_page(page, query) + collected
    # then: the whole list, in order, each page in list order
    assert collected == want


@FAST
@given(
    states=threads(),
    query=queries,
    scope=scopes,
    lower=st.integers(0, 23),
    upper=st.integers(0, 23),
)
async def test_after_and_before_give_the_threads_strictly_between(
    services: Services,
    states: list[ThreadState],
    query: ThreadQuery,
    scope: Scope,
    lower: int,
    upper: int,
) -> None:
    await fresh(services, states)
    want = expected(states, query, scope)
    if not want:
        return
    lower, upper = sorted((lower % len(want), upper % len(want)))
    between = replace(query, after=want[lower], before=want[upper])
    seen = await walk_forward(services, between, scope)
    assert seen == want[lower + 1 : upper]


@FAST
@given(states=threads(max_size=12), query=queries, scope=scopes, newcomers=st.integers(1, 4))
async def test_paging_stays_exact_while_threads_are_created(
    services: Services, states: list[ThreadState], query: ThreadQuery, scope: Scope, newcomers: int
) -> None:
    await fresh(services, states)
    seen: list[str] = []
    page = await services.store.page(query, scope)
    seen += check_page(page, query)
    created: list[ThreadState] = []
    while page.has_more:
        # threads created between two requests (on the first few pages) are newer than every
        # listed thread
        for n in range(newcomers if len(created) < 8 else 0):
            template = states[(len(created) + n) % len(states)]
            stamp = Stamp(T0 + timedelta(days=1, seconds=len(created)), f"new_{len(created)}")
            assert template.creation
            created.append(
                replace(
                    template,
                    id=f"thrd_new_{len(created)}",
                    creation=replace(template.creation, stamp=stamp),
                )
            )
            await services.store.save([(created[-1], None)])
        page = await services.store.page(replace(query, after=seen[-1]), scope)
        seen += check_page(page, query)

    if query.order == "desc":  # newcomers sort before the cursor: never seen, nothing shifts
        assert seen == expected(states, query, scope)
    else:  # newcomers sort after everything: they are reached at the end, each once
        assert seen == expected(states + created, query, scope)
