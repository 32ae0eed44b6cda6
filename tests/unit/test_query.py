"""Query planning without a store: streams, their indexes, keyset bounds and the merge; the
neutral plan read as it stands and as services.mongo.render renders it for MongoDB."""

from __future__ import annotations

import operator
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.mongo.render import streams
from services.query import (
    SORT_FIELDS,
    ListIndex,
    Plan,
    Position,
    Scope,
    ThreadQuery,
    list_indexes,
    merge,
    plan,
)

ORGS = ("org_a", "org_b", "org_c")
T0 = datetime(2025, 11, 17, tzinfo=UTC)

documents = st.lists(
    st.fixed_dictionaries(
        {
            "_id": st.text("abcd", min_size=1, max_size=3),
            "created_at": st.integers(0, 3).map(lambda m: T0 + timedelta(minutes=m)),  # ties
            "organization_id": st.sampled_from(ORGS),
            "user_id": st.sampled_from(["usr_1", "usr_2"]),
            "assistant_id": st.sampled_from([None, "asst_1"]),
            "workflow_id": st.sampled_from([None, "wf_1"]),
            "visible_in_ui": st.sampled_from([True, True, True, False]),
            "is_deleted": st.sampled_from([False, False, False, True]),
            "is_pinned": st.booleans(),
        }
    ),
    min_size=3,
    max_size=40,
    unique_by=lambda d: d["_id"],
)
scopes = st.builds(
    Scope,
    organization_ids=st.lists(st.sampled_from(ORGS), min_size=1, max_size=3).map(tuple),
    user_id=st.sampled_from([None, None, "usr_1"]),
)
maybe = st.sampled_from([None, None, None, True, False])
queries = st.builds(
    ThreadQuery,
    limit=st.integers(1, 6),
    order=st.sampled_from(["asc", "desc"]),
    organization_id=st.sampled_from([None, None, None, *ORGS]),
    assistant_id=st.sampled_from([None, None, None, "asst_1"]),
    workflow_id=st.sampled_from([None, None, None, "wf_1"]),
    is_pinned=maybe,
    visible_in_ui=st.sampled_from([True, True, True, False]),
    include_deleted=st.booleans(),
)

COMPARE = {"$lt": operator.lt, "$lte": operator.le, "$gt": operator.gt, "$gte": operator.ge}


def matches(document: dict[str, Any], selected: dict[str, Any]) -> bool:
    """The few query operators the plans use, evaluated the way MongoDB does."""
    for field, condition in selected.items():
        if field == "$or":
            if not any(matches(document, c) for c in condition):
                return False
        elif field == "$and":
            if not all(matches(document, c) for c in condition):
                return False
        elif isinstance(condition, dict):
            if not all(COMPARE[op](document[field], v) for op, v in condition.items()):
                return False
        elif document[field] != condition:
            return False
    return True


def reference(docs: list[dict[str, Any]], query: ThreadQuery, scope: Scope) -> list[str]:
    orgs = {o for o in scope.organization_ids if query.organization_id in (None, o)}
    ids = [
        d["_id"]
        for d in sorted(docs, key=lambda d: (d["created_at"], d["_id"]))
        if d["organization_id"] in orgs
        and scope.user_id in (None, d["user_id"])
        and query.assistant_id in (None, d["assistant_id"])
        and query.workflow_id in (None, d["workflow_id"])
        and d["visible_in_ui"] == query.visible_in_ui
        and (query.include_deleted or not d["is_deleted"])
        and query.is_pinned in (None, d["is_pinned"])
    ]
    return ids[::-1] if query.order == "desc" else ids


def neutral(document: dict[str, Any], equal: dict[str, Any], chosen: Plan) -> bool:
    """A stream of the plan as it stands: its equalities, then every bound."""
    at = Position(document["created_at"], document["_id"])
    return all(document[f] == v for f, v in equal.items()) and all(
        b.admits(at) for b in chosen.bounds
    )


def read(docs: list[dict[str, Any]], chosen: Plan, limit: int, rendered: bool) -> list[str]:
    """What a store does with a plan: each stream sorted and cut, then the merge; the streams
    selected by the neutral plan, or by MongoDB's filters rendered from it."""
    filters = streams(chosen)
    walked = [
        sorted(
            (
                d
                for d in docs
                if (matches(d, filters[i]) if rendered else neutral(d, equal, chosen))
            ),
            key=lambda d: (d["created_at"], d["_id"]),
            reverse=chosen.descending,
        )[: limit + 1]
        for i, equal in enumerate(chosen.equalities)
    ]
    page = [d["_id"] for d in merge(walked, chosen.descending, limit + 1)]
    return page[::-1] if chosen.reverse else page


def position(docs: list[dict[str, Any]], thread_id: str) -> Position:
    return next(Position(d["created_at"], d["_id"]) for d in docs if d["_id"] == thread_id)


@settings(max_examples=300)
@given(docs=documents, query=queries, scope=scopes, data=st.data())
def test_a_plan_reads_exactly_the_page_of_the_filtered_list(
    docs: list[dict[str, Any]], query: ThreadQuery, scope: Scope, data: st.DataObject
) -> None:
    want = reference(docs, query, scope)
    cursors = data.draw(st.lists(st.integers(0, max(len(want) - 1, 0)), max_size=2))
    after = before = None
    start, stop = 0, len(want)
    if want and cursors:  # after the first cursor and, with a second one, before it
        start = min(cursors) + 1
        after = position(docs, want[min(cursors)])
        if len(cursors) == 2:
            stop = max(cursors)
            before = position(docs, want[stop]) if stop >= start else None
            stop = stop if before else len(want)
    backward = data.draw(st.booleans()) and after is not None and before is None
    if backward:  # the same cursor as a `before`: the page just ahead of it
        after, before, stop, start = None, after, start - 1, 0
    chosen = plan(query, scope, after, before)

    window = want[start:stop]
    expected = window[-query.limit - 1 :] if backward else window[: query.limit + 1]
    assert read(docs, chosen, query.limit, rendered=False) == expected
    assert read(docs, chosen, query.limit, rendered=True) == expected


@given(query=queries, scope=scopes, cursor=st.booleans())
def test_every_stream_matches_its_index_by_equality_up_to_the_sort(
    query: ThreadQuery, scope: Scope, cursor: bool
) -> None:
    at = Position(T0, "thrd_x") if cursor else None
    chosen = plan(query, scope, at, None)
    for descending_indexes in (False, True):
        index = chosen.index(descending_indexes)
        assert index in list_indexes(descending_indexes)
        assert index.descending == (chosen.descending and descending_indexes)
        for stream in streams(chosen):
            for field, _ in index.keys[: -len(SORT_FIELDS)]:
                assert not isinstance(stream[field], dict | list), (field, stream)
            assert set(stream) <= {f for f, _ in index.keys} | {"$or", "$and"}


def test_one_index_per_combination_of_optional_filters_and_per_direction() -> None:
    ascending = list_indexes(descending_too=False)
    both = list_indexes(descending_too=True)
    assert len(ascending) == 8 and len(both) == 16
    assert len({i.name for i in both}) == 16
    assert ListIndex(("user_id", "assistant_id")).name == "list_v1_user_assistant"
    assert ListIndex((), descending=True).keys[-2:] == [("created_at", -1), ("_id", -1)]
