"""Round trips of thread states through their MongoDB documents (services.documents), no I/O."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from consumers.sample import cloud_event
from services.documents import (
    VIEW_PROJECTION,
    decode_metadata,
    encode_metadata,
    from_document,
    to_document,
    view_from_document,
)
from services.events import Event
from services.projection import ThreadState, fold, view
from tests.unit.strategies import PROPERTY, QUICK, thread_logs, to_event

revs = st.integers(0, 2**31)


@PROPERTY
@given(thread_logs(), revs)
def test_state_survives_its_document(events: list[Event], rev: int) -> None:
    state = fold(None, events)
    document = to_document(state, rev)
    assert from_document(copy.deepcopy(document)) == state
    assert document["rev"] == rev
    assert document["_id"] == state.id


@PROPERTY
@given(thread_logs(), revs)
def test_view_read_from_the_document_is_the_view(events: list[Event], rev: int) -> None:
    state = fold(None, events)
    assert view_from_document(to_document(state, rev)) == view(state)


@QUICK
@given(st.data())
def test_folding_on_a_stored_state_equals_folding_at_once(data: st.DataObject) -> None:
    # the batch consumer's path: read the document, fold the next batch, write it back
    events = data.draw(thread_logs())
    cut = data.draw(st.integers(1, len(events)))
    stored = to_document(fold(None, events[:cut]), rev=1)
    resumed = fold(from_document(stored), events[cut:])
    assert resumed == fold(None, events)
    assert view_from_document(to_document(resumed, rev=2)) == view(fold(None, events))


@QUICK
@given(thread_logs())
def test_document_holds_no_field_name_from_metadata(events: list[Event]) -> None:
    # metadata keys may contain '.' or start with '$': they must be values, never field names
    document = to_document(fold(None, events), rev=0)
    assert isinstance(document["metadata"], list)
    assert all(set(pair) == {"k", "v"} for pair in document["metadata"])
    assert set(VIEW_PROJECTION) - {"wid"} <= set(document)  # the store adds wid as it writes


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
    assert view_from_document(document) == view(state)
