"""Properties and examples of the pure fold (services.projection) against the reference model.

Why this module is longer than ~200 lines: the fold's properties against its reference model
(order, duplicates, merge as a join) and each register's rule: one algebra, one module.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.sample import cloud_event
from services.events import Event, LogPosition, ThreadCreated
from services.projection import (
    ThreadState,
    create_conflict,
    creation_of,
    first_creation,
    fold,
    log_order,
    merge,
    view,
)
from tests.unit.reference import expected_view
from tests.unit.strategies import (
    PROPERTY,
    QUICK,
    TIMES,
    created_data,
    message_data,
    mixed_logs,
    positioned,
    thread_logs,
    to_event,
    updated_data,
)

# ---------------------------------------------------------------------------------------------
# properties


@PROPERTY
@given(thread_logs())
def test_fold_matches_reference(events: list[Event]) -> None:
    assert view(fold(None, events)) == expected_view(events)


@QUICK
@given(thread_logs(created=True))
def test_fold_of_created_thread_matches_reference(events: list[Event]) -> None:
    folded = view(fold(None, events))
    assert folded["listed"] is True
    assert folded == expected_view(events)


@QUICK
@given(mixed_logs())
def test_each_thread_of_a_mixed_log_matches_reference(events: list[Event]) -> None:
    by_thread: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_thread[event.subject].append(event)
    for thread_events in by_thread.values():
        assert view(fold(None, thread_events)) == expected_view(thread_events)


@PROPERTY
@given(st.data())
def test_any_arrival_order_gives_the_same_view_and_state(data: st.DataObject) -> None:
    events = data.draw(thread_logs())
    shuffled = data.draw(st.permutations(events))
    in_order, reordered = fold(None, events), fold(None, shuffled)
    assert reordered == in_order
    assert view(reordered) == view(in_order)


def conflicting_creates(data: st.DataObject, events: list[Event]) -> list[Event]:
    """``events`` plus second creates of the thread: other owners, other values, other times
    (1970 included: before the floor is the decoder's business; the fold must hold anyway)."""
    thread = events[0].subject
    extra = []
    for n in range(data.draw(st.integers(1, 3))):
        raw = cloud_event(
            "thread.created",
            thread,
            data.draw(st.sampled_from([*TIMES, "1970-01-01T00:00:00Z", "2001-01-01T00:00:00Z"])),
            data.draw(created_data()),
            id=f"evt_second_{n}",
        )
        extra.append(to_event(raw))
    return events + data.draw(positioned(extra)) if events[0].position else events + extra


@PROPERTY
@given(st.data())
def test_the_owner_is_the_first_create_in_log_order_whatever_the_arrival_order(
    data: st.DataObject,
) -> None:
    events = conflicting_creates(data, data.draw(thread_logs(created=True)))
    for event in events:  # every record read from Kafka has a position
        if event.position is None:
            event.at(LogPosition(1, 0, data.draw(st.integers(0, 10**6))))
    first = min((e for e in events if isinstance(e, ThreadCreated)), key=log_order)
    arrivals = data.draw(st.permutations(events))
    folded = view(fold(None, arrivals))
    assert folded == expected_view(events)
    assert folded["organization_id"] == first.data.organization_id
    assert folded["user_id"] == first.data.user_id
    assert folded["created_at"] == first.time
    # what the projector dead-letters (a later create that differs, met in arrival order by
    # batches) changes nothing: the view of what it kept is the view of everything
    kept, creation = [], None
    for event in arrivals:
        if isinstance(event, ThreadCreated):
            if create_conflict(creation, event):
                continue
            creation = first_creation(creation, creation_of(event))
        kept.append(event)
    assert view(fold(None, kept)) == folded


def test_a_later_create_never_updates_nor_moves_the_thread() -> None:
    first = created("e9", "2025-11-17T10:00:00Z", organization_id="org_1", title="mine")
    first.at(LogPosition(1000, 0, 5))
    hidden = to_event(
        cloud_event(
            "thread.updated",
            THREAD,
            "2025-11-17T10:01:00Z",
            {"visible_in_ui": False},
            id="u1",
        )
    )
    hidden.at(LogPosition(1001, 0, 6))
    for late in (
        created("e1", "1970-01-01T00:00:00Z", organization_id="org_evil", title="moved"),
        created("e2", "2025-11-17T11:00:00Z", organization_id="org_1", title="reset"),
    ):
        late.at(LogPosition(2000, 1, 0))  # later in the log, on another partition
        state = fold(None, [late, hidden, first])
        assert create_conflict(fold(None, [first]).creation, late)
        shown = view(state)
        assert shown["organization_id"] == "org_1" and shown["title"] == "mine"
        assert shown["visible_in_ui"] is False  # the second create does not show it again
        assert shown["updated_at"] == at("2025-11-17T10:01:00Z")  # nor move its updated_at
    redelivered = created("e9", "2025-11-17T10:00:00Z", organization_id="org_1", title="mine")
    redelivered.at(LogPosition(3000, 0, 9))
    assert create_conflict(fold(None, [first]).creation, redelivered) is None


@PROPERTY
@given(st.data())
def test_redelivered_events_change_nothing(data: st.DataObject) -> None:
    events = data.draw(thread_logs())
    again = data.draw(st.lists(st.sampled_from(events), min_size=1, max_size=len(events) * 2))
    redelivered = data.draw(st.permutations(events + again))
    assert fold(None, redelivered) == fold(None, events)
    assert view(fold(None, redelivered)) == view(fold(None, events))


@PROPERTY
@given(st.data())
def test_folding_in_two_batches_equals_folding_at_once(data: st.DataObject) -> None:
    # what the batch consumer does: the stored state of a thread, then the next batch
    events = data.draw(thread_logs())
    cut = data.draw(st.integers(1, len(events)))
    first, rest = events[:cut], events[cut:]
    # batches may overlap: a redelivery straddling a commit
    overlap = data.draw(st.lists(st.sampled_from(first), max_size=3))
    assert fold(fold(None, first), overlap + rest) == fold(None, events)


@PROPERTY
@given(st.data())
def test_folding_in_many_batches_equals_folding_at_once(data: st.DataObject) -> None:
    events = data.draw(thread_logs(min_size=2))
    cuts = sorted(data.draw(st.lists(st.integers(1, len(events) - 1), max_size=4)))
    state = None
    for start, end in zip([0, *cuts], [*cuts, len(events)], strict=True):
        if start < end or state is not None:
            state = fold(state, events[start:end])
    assert state == fold(None, events)


@st.composite
def folded_parts(draw: st.DrawFn, parts: int) -> tuple[list[Event], list[list[Event]]]:
    """A thread's events and ``parts`` overlapping subsets of them (some may be empty), as a
    rebuild meets them: on several partitions, in memory-bounded chunks, some twice."""
    events = draw(thread_logs(min_size=1, max_size=20))
    chosen = [draw(st.lists(st.sampled_from(events), max_size=len(events))) for _ in range(parts)]
    missed = [e for e in events if not any(e in part for part in chosen)]
    chosen[draw(st.integers(0, parts - 1))] += missed  # together they hold every event
    return events, chosen


def folded(events: list[Event]) -> ThreadState | None:
    return fold(None, events) if events else None


@PROPERTY
@given(folded_parts(2))
def test_merge_of_two_folds_is_the_fold_of_the_union(found: Any) -> None:
    events, (a, b) = found
    assert merge(folded(a), folded(b)) == fold(None, events)


@PROPERTY
@given(folded_parts(4))
def test_merging_many_parts_in_any_grouping_is_the_fold_of_the_union(found: Any) -> None:
    events, parts = found
    states = [folded(part) for part in parts]
    left = None
    for state in states:
        left = merge(left, state) if left is not None or state is not None else None
    assert left == fold(None, events)
    present = [s for s in states if s is not None]
    a, b, c = (present + present[:1] * 3)[:3]
    assert merge(a, b) == merge(b, a)  # commutative
    assert merge(merge(a, b), c) == merge(a, merge(b, c))  # associative
    assert merge(a, a) == a  # idempotent
    assert view(merge(a, b)) == view(merge(b, a))


@QUICK
@given(folded_parts(2))
def test_merge_shares_nothing_with_its_arguments(found: Any) -> None:
    _, (events_a, events_b) = found
    a, b = folded(events_a) or folded(events_b), folded(events_b) or folded(events_a)
    before = copy.deepcopy((a, b))
    merged = merge(a, b)
    merged.message_ids.add("msg_new")
    assert (a, b) == before


def test_merge_refuses_two_threads_and_nothing() -> None:
    a = fold(None, [to_event(cloud_event("thread.pinned", "thrd_a", TIMES[0], {}, id="e1"))])
    b = fold(None, [to_event(cloud_event("thread.pinned", "thrd_b", TIMES[0], {}, id="e2"))])
    with pytest.raises(ValueError, match="thrd_a with thread thrd_b"):
        merge(a, b)
    with pytest.raises(ValueError, match="nothing to merge"):
        merge(None, None)


@PROPERTY
@given(st.data())
def test_an_event_id_reused_with_other_content_gives_one_state_in_any_order(
    data: st.DataObject,
) -> None:
    # a producer reusing an event id and a time: the tie is decided by value, not arrival
    kind = data.draw(st.sampled_from(("thread.updated", "thread.created", "thread.message_added")))
    make = {"thread.updated": updated_data, "thread.created": created_data}.get(kind, message_data)
    contents = data.draw(st.lists(make(), min_size=2, max_size=4))
    events = [to_event(cloud_event(kind, "thrd_a", TIMES[0], c, id="evt_same")) for c in contents]
    order = data.draw(st.permutations(events))
    assert fold(None, order) == fold(None, events)
    assert merge(fold(None, order[:1]), fold(None, order[1:])) == fold(None, events)


@QUICK
@given(st.data())
def test_fold_does_not_mutate_its_input_state(data: st.DataObject) -> None:
    events = data.draw(thread_logs())
    more = data.draw(thread_logs(thread_id=events[0].subject))
    state = fold(None, events)
    before = copy.deepcopy(state)
    message_ids = state.message_ids
    after = fold(state, more)
    assert state == before
    assert state.message_ids is message_ids
    assert after is not state
    assert after.message_ids is not state.message_ids


@QUICK
@given(mixed_logs())
def test_events_of_another_thread_raise(events: list[Event]) -> None:
    thread = events[0].subject
    own = [e for e in events if e.subject == thread]
    other = next(e for e in events if e.subject != thread)
    state = fold(None, own)
    before = copy.deepcopy(state)
    with pytest.raises(ValueError, match=other.id):
        fold(state, [other])
    assert state == before
    with pytest.raises(ValueError):
        fold(None, events)


def test_nothing_to_fold_raises() -> None:
    with pytest.raises(ValueError):
        fold(None, [])


def test_folding_no_events_returns_an_equal_copy() -> None:
    state = fold(None, [created("e1", "2025-11-17T10:00:00Z")])
    again = fold(state, [])
    assert again == state
    assert again is not state


# ---------------------------------------------------------------------------------------------
# examples, one rule at a time

THREAD = "thrd_x"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def event(kind: str, event_id: str, time: str, data: dict[str, Any] | None = None) -> Event:
    return to_event(cloud_event(kind, THREAD, time, data or {}, id=event_id))


def created(event_id: str, time: str, **data: Any) -> ThreadCreated:
    made = event(
        "thread.created", event_id, time, {"organization_id": "org_1", "user_id": "usr_1", **data}
    )
    assert isinstance(made, ThreadCreated)
    return made


def message(event_id: str, time: str, message_id: str, model: str | None = None) -> Event:
    return event(
        "thread.message_added",
        event_id,
        time,
        {"message_id": message_id, "role": "assistant", "model": model},
    )


def show(*events: Event) -> dict[str, Any]:
    return view(fold(None, events))


def test_created_sets_the_thread_and_the_contract_defaults() -> None:
    shown = show(created("e1", "2025-11-17T10:00:00Z"))
    assert shown == {
        "id": THREAD,
        "listed": True,
        "created_at": at("2025-11-17T10:00:00Z"),
        "updated_at": at("2025-11-17T10:00:00Z"),
        "last_message_at": at("2025-11-17T10:00:00Z"),
        "metadata": {},
        "assistant_id": None,
        "organization_id": "org_1",
        "user_id": "usr_1",
        "workflow_id": None,
        "title": None,
        "status": "inactive",
        "message_count": 0,
        "visible_in_ui": True,
        "last_model_used": None,
        "is_pinned": False,
        "pinned_at": None,
        "space_ids": [],
        "is_deleted": False,
        "deleted_at": None,
    }


def test_without_log_positions_the_earliest_created_wins_whole() -> None:
    shown = show(
        created("e2", "2025-11-17T10:05:00Z", organization_id="org_late", title="late"),
        created("e1", "2025-11-17T10:00:00Z", organization_id="org_early", title="early"),
    )
    assert shown["organization_id"] == "org_early"
    assert shown["created_at"] == at("2025-11-17T10:00:00Z")
    # a second create never acts as an update: the title is the first create's
    assert shown["title"] == "early"
    assert shown["updated_at"] == at("2025-11-17T10:00:00Z")


def test_message_added_before_created_is_kept_and_applies() -> None:
    early = message("e1", "2025-11-17T10:01:00Z", "msg_1", "gpt-4o")
    state = fold(None, [early])
    assert view(state)["listed"] is False
    assert view(state)["message_count"] == 1
    shown = view(fold(state, [created("e0", "2025-11-17T10:00:00Z", title="t")]))
    assert shown["listed"] is True
    assert shown["message_count"] == 1
    assert shown["last_message_at"] == at("2025-11-17T10:01:00Z")
    assert shown["last_model_used"] == "gpt-4o"
    assert shown["updated_at"] == at("2025-11-17T10:01:00Z")


def test_a_message_id_in_two_events_counts_once() -> None:
    shown = show(
        created("e0", "2025-11-17T10:00:00Z"),
        message("e1", "2025-11-17T10:01:00Z", "msg_1"),
        message("e2", "2025-11-17T10:03:00Z", "msg_1"),
        message("e3", "2025-11-17T10:02:00Z", "msg_2"),
    )
    assert shown["message_count"] == 2
    assert shown["last_message_at"] == at("2025-11-17T10:03:00Z")


def test_last_model_used_is_from_the_latest_message_with_a_model() -> None:
    shown = show(
        message("e1", "2025-11-17T10:01:00Z", "msg_1", "gpt-4o"),
        message("e2", "2025-11-17T10:02:00Z", "msg_2", "claude"),
        message("e3", "2025-11-17T10:03:00Z", "msg_3", None),
    )
    assert shown["last_model_used"] == "claude"
    assert shown["last_message_at"] == at("2025-11-17T10:03:00Z")


def test_updated_with_only_title_leaves_other_fields() -> None:
    shown = show(
        created(
            "e0",
            "2025-11-17T10:00:00Z",
            title="old",
            metadata={"a": "1"},
            status="active",
            space_ids=["space_1"],
            visible_in_ui=False,
        ),
        event("thread.updated", "e1", "2025-11-17T10:01:00Z", {"title": "new"}),
    )
    assert shown["title"] == "new"
    assert shown["metadata"] == {"a": "1"}
    assert shown["status"] == "active"
    assert shown["space_ids"] == ["space_1"]
    assert shown["visible_in_ui"] is False
    assert shown["updated_at"] == at("2025-11-17T10:01:00Z")


def test_updated_metadata_replaces_the_whole_map_and_null_title_clears() -> None:
    shown = show(
        created("e0", "2025-11-17T10:00:00Z", title="old", metadata={"a": "1", "b": "2"}),
        event("thread.updated", "e1", "2025-11-17T10:01:00Z", {"metadata": {"c": "3"}}),
        event("thread.updated", "e2", "2025-11-17T10:02:00Z", {"title": None}),
    )
    assert shown["metadata"] == {"c": "3"}
    assert shown["title"] is None


def test_an_update_older_than_created_loses_to_it() -> None:
    shown = show(
        event("thread.updated", "e1", "2025-11-17T09:00:00Z", {"title": "stale"}),
        created("e0", "2025-11-17T10:00:00Z", title="fresh"),
    )
    assert shown["title"] == "fresh"


def test_a_tie_on_time_is_broken_by_event_id() -> None:
    same = "2025-11-17T10:01:00Z"
    for order in ((0, 1), (1, 0)):
        updates = [
            event("thread.updated", "evt_b", same, {"status": "b"}),
            event("thread.updated", "evt_a", same, {"status": "a"}),
        ]
        shown = show(created("e0", "2025-11-17T10:00:00Z"), *(updates[i] for i in order))
        assert shown["status"] == "b"


def test_pinned_sets_pinned_at() -> None:
    shown = show(
        created("e0", "2025-11-17T10:00:00Z"), event("thread.pinned", "e1", "2025-11-17T10:01:00Z")
    )
    assert shown["is_pinned"] is True
    assert shown["pinned_at"] == at("2025-11-17T10:01:00Z")


def test_unpinned_clears_pinned_at() -> None:
    shown = show(
        created("e0", "2025-11-17T10:00:00Z"),
        event("thread.unpinned", "e2", "2025-11-17T10:02:00Z"),
        event("thread.pinned", "e1", "2025-11-17T10:01:00Z"),
    )
    assert shown["is_pinned"] is False
    assert shown["pinned_at"] is None


def test_a_late_arriving_older_unpin_does_not_unpin() -> None:
    shown = show(
        event("thread.pinned", "e2", "2025-11-17T10:02:00Z"),
        event("thread.unpinned", "e1", "2025-11-17T10:01:00Z"),
    )
    assert shown["is_pinned"] is True
    assert shown["pinned_at"] == at("2025-11-17T10:02:00Z")


def test_deleted_sets_deleted_at_and_events_after_it_still_apply() -> None:
    shown = show(
        created("e0", "2025-11-17T10:00:00Z"),
        event("thread.deleted", "e1", "2025-11-17T10:01:00Z"),
        event("thread.updated", "e2", "2025-11-17T10:02:00Z", {"title": "after"}),
        message("e3", "2025-11-17T10:03:00Z", "msg_1"),
    )
    assert shown["is_deleted"] is True
    assert shown["deleted_at"] == at("2025-11-17T10:01:00Z")
    assert shown["title"] == "after"
    assert shown["message_count"] == 1
    assert shown["updated_at"] == at("2025-11-17T10:03:00Z")


def test_restored_undoes_deleted() -> None:
    shown = show(
        event("thread.restored", "e2", "2025-11-17T10:02:00Z"),
        created("e0", "2025-11-17T10:00:00Z"),
        event("thread.deleted", "e1", "2025-11-17T10:01:00Z"),
    )
    assert shown["is_deleted"] is False
    assert shown["deleted_at"] is None


def test_a_thread_without_created_is_not_listed() -> None:
    shown = show(
        event("thread.updated", "e1", "2025-11-17T10:01:00Z", {"title": "t"}),
        event("thread.pinned", "e2", "2025-11-17T10:02:00Z"),
    )
    assert shown["listed"] is False
    assert shown["created_at"] is None
    assert shown["organization_id"] is None
    assert shown["user_id"] is None
    assert shown["title"] == "t"
    assert shown["is_pinned"] is True


def test_a_state_without_events_is_the_empty_view() -> None:
    shown = view(ThreadState(id=THREAD))
    assert shown["listed"] is False
    assert shown["updated_at"] is None
    assert shown["status"] == "inactive"
    assert shown["visible_in_ui"] is True
    assert shown["metadata"] == {} and shown["space_ids"] == []
