"""Round trips of thread states through their MongoDB documents (services.documents), no I/O."""

from __future__ import annotations

import copy
from typing import Any

import bson
from hypothesis import given
from hypothesis import strategies as st

from consumers.sample import cloud_event
from services.documents import (
    ACTIVITY_FIELDS,
    ACTIVITY_PROJECTION,
    VIEW_PROJECTION,
    decode_metadata,
    encode_metadata,
    from_document,
    from_documents,
    message_key,
    to_activity,
    to_document,
    view_from_document,
)
from services.events import ID_MAX, Event
from services.mongo import writes
from services.projection import ThreadState, as_counted, fold, view
from tests.unit.strategies import PROPERTY, QUICK, thread_logs, to_event

revs = st.integers(0, 2**31)
ids = st.text(min_size=1, max_size=12)


def stored(state: ThreadState, rev: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The thread and activity documents of ``state``, every message counted and recorded."""
    count = state.counted + len(state.message_ids)
    return to_document(state, rev), to_activity(state, count, [], rev)


def read(document: dict[str, Any], activity: dict[str, Any]) -> dict[str, Any]:
    """The view as a page reads it: the thread's view fields, the activity's projection."""
    shown = {k: v for k, v in document.items() if k not in VIEW_PROJECTION}
    wanted = {k: activity[k] for k in ACTIVITY_PROJECTION if "." not in k and k in activity}
    if "model" in activity:
        wanted["model"] = {"v": activity["model"]["v"]}
    return view_from_document(shown, wanted)


@PROPERTY
@given(thread_logs(), revs)
def test_state_survives_its_documents(events: list[Event], rev: int) -> None:
    state = fold(None, events)
    document, activity = stored(state, rev)
    loaded = from_documents(state.id, copy.deepcopy(document), copy.deepcopy(activity))
    assert loaded == as_counted(state)
    assert document["rev"] == activity["rev"] == rev
    assert document["_id"] == activity["_id"] == state.id


@PROPERTY
@given(thread_logs(), revs)
def test_view_read_from_the_documents_is_the_view(events: list[Event], rev: int) -> None:
    state = fold(None, events)
    assert read(*stored(state, rev)) == view(state)


@QUICK
@given(thread_logs())
def test_no_document_holds_a_message_id_or_what_every_message_changes(
    events: list[Event],
) -> None:
    state = fold(None, events)
    document, activity = stored(state, 1)
    assert not set(ACTIVITY_FIELDS) & set(document) and "message_ids" not in document
    assert set(activity) <= {"_id", "n", "last_message_at", "model", "pending", "rev"}
    assert to_document(state, 1) == to_document(as_counted(state), 1)  # messages change nothing


@QUICK
@given(st.data())
def test_folding_on_a_stored_state_equals_folding_at_once(data: st.DataObject) -> None:
    # the batch consumer's path: read the documents, fold the next batch, tell its message ids
    # apart from those counted (as the store does by their records), write them back
    events = data.draw(thread_logs())
    cut = data.draw(st.integers(1, len(events)))
    first = fold(None, events[:cut])
    resumed = fold(from_documents(first.id, *stored(first, 1)), events[cut:])
    resumed.message_ids -= first.message_ids
    assert as_counted(resumed) == as_counted(fold(None, events))
    assert read(*stored(resumed, 2)) == view(fold(None, events))


def test_a_view_of_the_previous_layout_reads_as_it_was_written() -> None:
    # fold version 2 kept the activity in the thread document: it serves until rebuilt
    old = {"_id": "thrd_v2", "metadata": [{"k": "a", "v": "b"}], "message_count": 3}
    old |= {"last_message_at": "t", "last_model_used": "m", "updated_at": "t"}
    expected = {k: v for k, v in old.items() if k != "_id"} | {"id": "thrd_v2"}
    assert view_from_document(old, {"n": 9}) == expected | {"metadata": {"a": "b"}}


@QUICK
@given(ids, ids, ids, ids)
def test_message_keys_never_collide(t1: str, m1: str, t2: str, m2: str) -> None:
    assert (message_key(t1, m1) == message_key(t2, m2)) == ((t1, m1) == (t2, m2))


@QUICK
@given(thread_logs())
def test_document_holds_no_field_name_from_metadata(events: list[Event]) -> None:
    # metadata keys may contain '.' or start with '$': they must be values, never field names
    document = to_document(fold(None, events), rev=0)
    assert isinstance(document["metadata"], list)
    assert all(set(pair) == {"k", "v"} for pair in document["metadata"])
    assert set(VIEW_PROJECTION) - {"wid", "message_ids"} <= set(document)  # wid: as it writes


def test_metadata_with_dots_and_dollars_survives() -> None:
    metadata = {f"k.{i}" if i % 2 else f"$k{i}": f"v.${i}" for i in range(15)}
    metadata[""] = ""
    event = to_event(
        cloud_event(
            "thread.created",
            "thrd_m",
            "2025-11-17T10:00:00Z",
            {"organization_id": "o", "user_id": "u", "metadata": metadata},
            id="e1",
        )
    )
    state = fold(None, [event])
    document = to_document(state, rev=3)
    assert {pair["k"] for pair in document["metadata"]} == set(metadata)
    assert from_document(document) == state
    assert view_from_document(document)["metadata"] == metadata
    assert decode_metadata(encode_metadata(metadata)) == metadata


def test_empty_state_survives_its_document() -> None:
    state = ThreadState(id="thrd_empty")
    document = to_document(state, rev=0)
    assert document["clock"] == {"updated_at": None}
    assert from_document(document) == state
    assert view_from_document(document) == view(state)  # no activity document: no messages


def test_a_lookup_of_message_records_always_fits_one_batch() -> None:
    # services.mongo.writes reads message records in single batches, which drop what passes 16 MB
    widest = "\U0001f600" * ID_MAX  # 4 bytes a character in UTF-8
    record = {"_id": message_key(widest, widest)}
    assert len(bson.encode(record)) + 32 <= writes.MESSAGE_KEY_BYTES
    assert writes.LOOKUP * writes.MESSAGE_KEY_BYTES < 15 * 1024 * 1024
