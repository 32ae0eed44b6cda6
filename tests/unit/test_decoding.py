"""Decoding of Kafka records into events, unknown types and rejections (services.decoding).

Why this module is longer than ~200 lines: every rule of the event contract's decoding and
bounds (events.md), one test each, with the strategies that generate records.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.sample import cloud_event
from services.decoding import EVENT_MODELS, REJECTION_CODES, Bounds, Rejected, Unknown, decode
from services.events import (
    EVENT_TYPES,
    MessageAdded,
    ThreadCreated,
    ThreadUpdated,
)
from tests.unit.strategies import QUICK, THREAD_IDS, raw_events, to_event

THREAD = "thrd_abc123"
KEY = THREAD.encode()
STRUCTURED = [("content-type", b"application/cloudevents+json")]

DATA: dict[str, dict[str, Any]] = {
    "thread.created": {
        "organization_id": "org_1",
        "user_id": "usr_1",
        "assistant_id": "asst_1",
        "workflow_id": None,
        "title": "Hello",
        "metadata": {"a.b": "1", "$c": "2"},
        "visible_in_ui": False,
        "space_ids": ["space_1"],
        "status": "active",
    },
    "thread.message_added": {"message_id": "msg_1", "role": "assistant", "model": "gpt-4o"},
    "thread.updated": {"title": "New", "visible_in_ui": True},
    "thread.pinned": {},
    "thread.unpinned": {},
    "thread.deleted": {},
    "thread.restored": {},
}


def raw(kind: str = "thread.created", **changes: Any) -> dict[str, Any]:
    event = cloud_event(kind, THREAD, "2025-11-17T10:00:00Z", dict(DATA[kind]), id="evt_1")
    event.update(changes)
    return event


def encoded(event: Any) -> bytes:
    return json.dumps(event).encode()


def binary(event: dict[str, Any]) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The same event in CloudEvents Kafka binary mode: attributes in headers, value = data."""
    headers = [
        (f"ce_{name}", str(value).encode())
        for name, value in event.items()
        if name not in ("data", "datacontenttype")
    ]
    headers.append(("content-type", b"application/json"))
    return encoded(event["data"]), headers


def rejected(decoded: object, code: str | None = None) -> str:
    """The rejection's detail (its reason without the code), checking the code if given."""
    assert isinstance(decoded, Rejected), decoded
    assert decoded.code in REJECTION_CODES and decoded.reason.startswith(decoded.code + ": ")
    assert code is None or decoded.code == code, decoded
    return decoded.detail


def with_data(kind: str = "thread.created", **data: Any) -> dict[str, Any]:
    event = raw(kind)
    event["data"] = {**event["data"], **data}
    return event


# ---------------------------------------------------------------------------------------------
# valid records


@pytest.mark.parametrize("kind", list(EVENT_TYPES))
def test_structured_mode_decodes_every_type(kind: str) -> None:
    decoded = decode(KEY, encoded(raw(kind)), STRUCTURED)
    assert isinstance(decoded, EVENT_TYPES[kind])
    assert decoded.id == "evt_1"
    assert decoded.subject == THREAD
    assert decoded.time == datetime(2025, 11, 17, 10, 0, tzinfo=UTC)
    assert decoded == to_event(raw(kind))
    assert decoded.data.model_dump(exclude_unset=True) == DATA[kind]


@pytest.mark.parametrize("kind", list(EVENT_TYPES))
def test_binary_mode_decodes_every_type(kind: str) -> None:
    value, headers = binary(raw(kind))
    decoded = decode(KEY, value, headers)
    assert isinstance(decoded, EVENT_TYPES[kind])
    structured = decode(KEY, encoded(raw(kind)), STRUCTURED)
    assert isinstance(structured, EVENT_TYPES[kind])
    assert decoded.model_dump(exclude={"datacontenttype"}) == structured.model_dump(
        exclude={"datacontenttype"}
    )


def test_structured_mode_without_headers() -> None:
    assert isinstance(decode(KEY, encoded(raw()), []), ThreadCreated)


def test_a_record_without_key_is_rejected() -> None:
    rejected(decode(None, encoded(raw()), []), "missing_key")
    value, headers = binary(raw("thread.pinned"))
    rejected(decode(None, value, headers), "missing_key")


def test_created_data_fields() -> None:
    decoded = decode(KEY, encoded(raw()), [])
    assert isinstance(decoded, ThreadCreated)
    assert decoded.data.organization_id == "org_1"
    assert decoded.data.metadata == {"a.b": "1", "$c": "2"}
    assert decoded.data.visible_in_ui is False
    assert decoded.data.space_ids == ["space_1"]


def test_created_defaults_of_the_contract() -> None:
    event = raw()
    event["data"] = {"organization_id": "org_1", "user_id": "usr_1"}
    decoded = decode(KEY, encoded(event), [])
    assert isinstance(decoded, ThreadCreated)
    data = decoded.data
    assert (data.assistant_id, data.workflow_id, data.title) == (None, None, None)
    assert (data.metadata, data.visible_in_ui, data.space_ids) == ({}, True, [])
    assert data.status == "inactive"


def test_updated_knows_which_fields_were_sent() -> None:
    decoded = decode(KEY, encoded(raw("thread.updated")), [])
    assert isinstance(decoded, ThreadUpdated)
    assert decoded.data.model_fields_set == {"title", "visible_in_ui"}


def test_message_with_null_model_and_no_role() -> None:
    decoded = decode(KEY, encoded(with_data("thread.message_added", model=None)), [])
    assert isinstance(decoded, MessageAdded)
    assert decoded.data.model is None
    event = raw("thread.message_added")
    event["data"] = {"message_id": "msg_1"}
    assert isinstance(decode(KEY, encoded(event), []), MessageAdded)


def test_unknown_type_is_unknown() -> None:
    decoded = decode(KEY, encoded(raw("thread.pinned", type="thread.archived")), STRUCTURED)
    assert decoded == Unknown("thread.archived")


def test_unknown_type_in_binary_mode_is_unknown() -> None:
    value, headers = binary(raw("thread.pinned", type="thread.exported"))
    assert decode(KEY, value, headers) == Unknown("thread.exported")


def test_extra_unknown_fields_are_tolerated() -> None:
    event = with_data(future_field={"nested": [1, 2]}, another=3)
    event["traceparent"] = "00-abc-def-01"
    event["extension"] = 42
    decoded = decode(KEY, encoded(event), STRUCTURED)
    assert isinstance(decoded, ThreadCreated)
    assert decoded.data.title == "Hello"


def test_extra_unknown_headers_are_tolerated_in_binary_mode() -> None:
    value, headers = binary(raw("thread.pinned"))
    headers += [("ce_traceparent", b"00-abc-def-01"), ("x-retry", b"2")]
    decoded = decode(KEY, value, headers)
    assert not isinstance(decoded, Rejected) and decoded.type == "thread.pinned"


def test_time_with_offset_is_utc_truncated_to_milliseconds() -> None:
    decoded = decode(KEY, encoded(raw(time="2025-11-17T12:00:00.123456+02:00")), [])
    assert isinstance(decoded, ThreadCreated)
    assert decoded.time == datetime(2025, 11, 17, 10, 0, 0, 123000, tzinfo=UTC)
    offset = decoded.time.utcoffset()
    assert offset is not None
    assert offset.total_seconds() == 0
    assert decoded.time.microsecond == 123000


def test_time_with_negative_offset_crossing_midnight() -> None:
    decoded = decode(KEY, encoded(raw(time="2025-11-17T20:30:00.9999-05:00")), [])
    assert isinstance(decoded, ThreadCreated)
    assert decoded.time == datetime(2025, 11, 18, 1, 30, 0, 999000, tzinfo=UTC)


@QUICK
@given(st.data())
def test_structured_and_binary_modes_agree(data: st.DataObject) -> None:
    thread = data.draw(st.sampled_from(THREAD_IDS))
    event = data.draw(raw_events(thread, "evt_p"))
    expected = to_event(event)
    structured = decode(thread.encode(), encoded(event), STRUCTURED)
    value, headers = binary(event)
    in_binary = decode(thread.encode(), value, headers)
    assert structured == expected
    assert isinstance(in_binary, EVENT_MODELS)
    assert in_binary.model_dump(exclude={"datacontenttype"}) == expected.model_dump(
        exclude={"datacontenttype"}
    )


# ---------------------------------------------------------------------------------------------
# rejected records: each with a reason that says what is wrong


def test_invalid_json_is_rejected() -> None:
    assert re.search(r"not valid JSON", rejected(decode(KEY, b'{"specversion": "1.0",', [])))


def test_empty_value_is_rejected() -> None:
    assert re.search(r"not valid JSON", rejected(decode(KEY, None, [])))
    assert re.search(r"not valid JSON", rejected(decode(KEY, b"", [])))


def test_non_utf8_bytes_are_rejected() -> None:
    value = encoded(raw()).replace(b"Hello", b"H\xe9llo")
    assert re.search(r"UTF-8|unicode", rejected(decode(KEY, value, [])), re.IGNORECASE)


def test_non_utf8_bytes_are_rejected_in_binary_mode() -> None:
    _, headers = binary(raw("thread.message_added"))
    value = b'{"message_id": "msg_1", "model": "caf\xe9"}'
    assert re.search(r"UTF-8|unicode", rejected(decode(KEY, value, headers)), re.I)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_utf16_and_utf32_values_are_rejected_in_both_modes(encoding: str) -> None:
    # the contract says UTF-8; structured mode rejects other encodings, binary mode must too
    event = raw("thread.message_added")
    assert isinstance(decode(KEY, encoded(event), []), MessageAdded)
    rejected(decode(KEY, json.dumps(event).encode(encoding), []))
    _, headers = binary(event)
    rejected(decode(KEY, json.dumps(event["data"]).encode(encoding), headers))


def test_non_utf8_header_is_rejected_in_binary_mode() -> None:
    value, headers = binary(raw("thread.pinned"))
    headers = [(n, b"\xff" if n == "ce_id" else v) for n, v in headers]
    assert re.search(r"UTF-8|unicode", rejected(decode(KEY, value, headers)), re.I)


def test_json_array_is_rejected() -> None:
    assert "object" in rejected(decode(KEY, encoded([raw()]), []))


def test_json_array_as_data_is_rejected_in_binary_mode() -> None:
    _, headers = binary(raw("thread.pinned"))
    assert re.search(r"data.*object", rejected(decode(KEY, b"[]", headers)))


def test_missing_id_is_rejected() -> None:
    event = raw()
    del event["id"]
    assert re.search(r"\bid\b.*required", rejected(decode(KEY, encoded(event), [])))


@pytest.mark.parametrize("attribute", ["specversion", "type", "source", "subject", "time", "data"])
def test_missing_required_attribute_is_rejected(attribute: str) -> None:
    event = raw()
    del event[attribute]
    reason = rejected(decode(KEY, encoded(event), []))
    assert re.search(rf"{attribute}.*required", reason), reason


def test_missing_organization_id_is_rejected() -> None:
    event = raw()
    del event["data"]["organization_id"]
    reason = rejected(decode(KEY, encoded(event), []))
    assert re.search(r"data\.organization_id.*required", reason), reason


def test_missing_message_id_is_rejected() -> None:
    event = raw("thread.message_added")
    del event["data"]["message_id"]
    assert "data.message_id" in rejected(decode(KEY, encoded(event), []))


@pytest.mark.parametrize(
    ("event", "where"),
    [
        (with_data(visible_in_ui="true"), "data.visible_in_ui"),
        (with_data(metadata={"a": 1}), "data.metadata.a"),
        (with_data(space_ids="space_1"), "data.space_ids"),
        (with_data(title=7), "data.title"),
        (with_data("thread.updated", metadata=None), "data.metadata"),
        (with_data("thread.message_added", role="robot"), "data.role"),
        (with_data("thread.message_added", model=4), "data.model"),
        (raw(time="2025-11-17T10:00:00"), "time"),
        (raw(time="yesterday"), "time"),
        (raw(specversion="0.3"), "specversion"),
        (raw(data="{}"), "data"),
    ],
    ids=[
        "visible_in_ui-string",
        "metadata-int-value",
        "space_ids-string",
        "title-int",
        "updated-metadata-null",
        "role-unknown",
        "model-int",
        "time-without-offset",
        "time-not-a-time",
        "specversion",
        "data-string",
    ],
)
def test_wrong_type_is_rejected(event: dict[str, Any], where: str) -> None:
    reason = rejected(decode(KEY, encoded(event), []))
    assert reason.startswith(where + ":"), reason


def test_time_without_offset_reason_mentions_timezone() -> None:
    reason = rejected(decode(KEY, encoded(raw(time="2025-11-17T10:00:00")), []))
    assert "timezone" in reason


LONG = "x" * 129


@pytest.mark.parametrize(
    ("event", "where"),
    [
        (raw(subject=LONG), "subject"),
        (with_data(organization_id=LONG), "data.organization_id"),
        (with_data(user_id=LONG), "data.user_id"),
        (with_data(assistant_id=LONG), "data.assistant_id"),
        (with_data(workflow_id=LONG), "data.workflow_id"),
        (with_data(space_ids=["ok", LONG]), "data.space_ids.1"),
        (with_data("thread.message_added", message_id=LONG), "data.message_id"),
        (with_data("thread.updated", space_ids=[LONG]), "data.space_ids.0"),
    ],
    ids=["subject", "organization", "user", "assistant", "workflow", "space", "message", "upd"],
)
def test_id_longer_than_128_is_rejected(event: dict[str, Any], where: str) -> None:
    reason = rejected(decode(KEY, encoded(event), []))
    assert reason.startswith(where + ":") and "128" in reason, reason


def test_id_of_128_is_accepted() -> None:
    event = with_data(organization_id="x" * 128)
    event["subject"] = "t" * 128
    assert isinstance(decode(("t" * 128).encode(), encoded(event), []), ThreadCreated)


@pytest.mark.parametrize("field", ["subject", "id"])
def test_empty_id_is_rejected(field: str) -> None:
    reason = rejected(decode(KEY, encoded(raw(**{field: ""})), []))
    assert reason.startswith(field + ":"), reason


def test_metadata_with_17_keys_is_rejected() -> None:
    metadata = {f"k{i}": "v" for i in range(17)}
    reason = rejected(decode(KEY, encoded(with_data(metadata=metadata)), []))
    assert reason.startswith("data.metadata:") and "16" in reason, reason


def test_metadata_with_16_keys_is_accepted() -> None:
    metadata = {f"k{i}": "v" for i in range(16)}
    assert isinstance(decode(KEY, encoded(with_data(metadata=metadata)), []), ThreadCreated)


def test_metadata_key_and_value_lengths() -> None:
    assert isinstance(
        decode(KEY, encoded(with_data(metadata={"k" * 64: "v" * 512})), []), ThreadCreated
    )
    assert "64" in rejected(decode(KEY, encoded(with_data(metadata={"k" * 65: "v"})), []))
    assert "512" in rejected(decode(KEY, encoded(with_data(metadata={"k": "v" * 513})), []))


def test_subject_not_matching_the_key_is_rejected() -> None:
    reason = rejected(decode(b"thrd_other", encoded(raw()), STRUCTURED), "key_mismatch")
    assert reason == "subject does not match the record key"


def test_subject_not_matching_the_key_is_rejected_in_binary_mode() -> None:
    value, headers = binary(raw("thread.pinned"))
    assert "record key" in rejected(decode(b"thrd_other", value, headers))


# --- decoding is total: no bytes and no headers make decode() raise (issue 15) ---

header_names = st.one_of(
    st.sampled_from([f"ce_{a}" for a in ("specversion", "id", "type", "subject", "time")]),
    st.text(max_size=20),
)
header_lists = st.lists(st.tuples(header_names, st.binary(max_size=64)), max_size=8)


@given(
    key=st.one_of(st.none(), st.binary(max_size=40)),
    value=st.one_of(st.none(), st.binary(max_size=400)),
    headers=header_lists,
    timestamp=st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
)
@QUICK
def test_decode_never_raises_on_arbitrary_bytes(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]], timestamp: int | None
) -> None:
    assert_decoded_without_the_safety_net(decode(key, value, headers, timestamp))


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=10),
        st.sampled_from(["0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59-01:00", "1.0"]),
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    changes=st.dictionaries(
        st.sampled_from(["specversion", "id", "type", "subject", "time", "data", "source"]),
        json_values,
        max_size=3,
    ),
    data=st.dictionaries(
        st.sampled_from(["organization_id", "user_id", "title", "metadata", "message_id"]),
        json_values,
        max_size=3,
    ),
    kind=st.sampled_from(sorted(EVENT_TYPES)),
    mode=st.sampled_from(["structured", "binary"]),
)
@QUICK
def test_decode_never_raises_on_near_valid_events(
    changes: dict[str, Any], data: dict[str, Any], kind: str, mode: str
) -> None:
    event = with_data(kind, **data) if kind == "thread.created" else raw(kind)
    if kind != "thread.created":
        event["data"] = {**event["data"], **data}
    event.update(changes)
    if mode == "structured":
        decoded = decode(KEY, encoded(event), [])
    else:
        value, headers = binary({**event, "data": event.get("data")})
        decoded = decode(KEY, value, headers)
    assert_decoded_without_the_safety_net(decoded)


def assert_decoded_without_the_safety_net(decoded: object) -> None:
    """decode() turns any exception into a rejection as a last resort; these inputs must
    each get a reason of their own, so the property fails if that net ever catches one."""
    assert isinstance(decoded, (Rejected, Unknown, *EVENT_MODELS))
    if isinstance(decoded, Rejected):
        assert decoded.code in REJECTION_CODES
        assert "undecodable record" not in decoded.detail, decoded


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("value", "headers", "code"),
    [
        (encoded(raw(time="0001-01-01T00:00:00+00:01")), [], "invalid_event"),
        (encoded(raw(time="9999-12-31T23:59:59-01:00")), [], "invalid_event"),
        (encoded(raw(time="0001-01-01T00:00:00Z")), [], "time_before_floor"),
        (encoded(raw(time="1970-01-01T00:00:00Z")), [], "time_before_floor"),
        (b'{"data": ' + deep(2000) + b"}", [], "not_json"),
        (deep(2000), binary(raw("thread.pinned"))[1], "not_json"),
        (b'{"specversion": "1.0", "n": ' + b"9" * 5000 + b"}", [], "not_json"),
        (b'{"n": ' + b"9" * 5000 + b"}", binary(raw("thread.pinned"))[1], "not_json"),
        (b'{"n": NaN}', binary(raw("thread.pinned"))[1], "not_json"),
        (encoded(raw()).replace(b'"Hello"', b'"\\ud800"'), [], "not_json"),
    ],
    ids=[
        "year-1-in-utc",
        "year-10000-in-utc",
        "year-1",
        "epoch",
        "nested-structured",
        "nested-binary",
        "big-int-structured",
        "big-int-binary",
        "nan-binary",
        "lone-surrogate",
    ],
)
def test_poison_records_are_rejected_not_raised(
    value: bytes, headers: list[tuple[str, bytes]], code: str
) -> None:
    rejected(decode(KEY, value, headers, timestamp=NOW_MS), code)


NOW_MS = int(datetime(2025, 11, 17, 10, 0, tzinfo=UTC).timestamp() * 1000)


def test_time_bounds_are_relative_to_the_broker_timestamp() -> None:
    bounds = Bounds(max_skew=timedelta(minutes=5))
    event = encoded(raw(time="2025-11-17T10:05:00Z"))
    assert isinstance(decode(KEY, event, [], NOW_MS, bounds), ThreadCreated)  # at the edge
    later = encoded(raw(time="2025-11-17T10:05:00.001Z"))
    detail = rejected(decode(KEY, later, [], NOW_MS, bounds), "time_in_future")
    assert "300 s" in detail
    assert isinstance(decode(KEY, later, [], None, bounds), ThreadCreated)  # no timestamp known
    old = encoded(raw(time="2000-01-01T00:00:00Z"))  # the floor itself is allowed
    assert isinstance(decode(KEY, old, [], NOW_MS, bounds), ThreadCreated)
    rejected(decode(KEY, encoded(raw(time="1999-12-31T23:59:59.999Z")), []), "time_before_floor")


def test_a_record_over_the_size_limit_is_rejected_whatever_it_holds() -> None:
    bounds = Bounds(max_record_bytes=2048)
    title = "x" * 1000  # within the title limit
    assert isinstance(decode(KEY, encoded(with_data(title=title)), [], None, bounds), ThreadCreated)
    big = [("h", b"x" * 2048)]
    detail = rejected(decode(KEY, encoded(raw()), big, None, bounds), "too_large")
    assert "2048" in detail
    rejected(decode(None, b"\xff" * 4096, [], None, bounds), "too_large")


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"title": "x" * 1001}, "data.title"),
        ({"status": "s" * 65}, "data.status"),
        ({"space_ids": [f"s{i}" for i in range(101)]}, "data.space_ids"),
    ],
    ids=["title", "status", "space-ids"],
)
def test_fields_over_their_limit_are_rejected(data: dict[str, Any], where: str) -> None:
    for kind in ("thread.created", "thread.updated"):
        detail = rejected(decode(KEY, encoded(with_data(kind, **data)), []), "invalid_event")
        assert detail.startswith(where), detail


def test_model_source_and_type_are_bounded() -> None:
    model = with_data("thread.message_added", model="m" * 129)
    assert rejected(decode(KEY, encoded(model), [])).startswith("data.model")
    rejected(decode(KEY, encoded(raw(source="s" * 257)), []), "invalid_event")
    rejected(decode(KEY, encoded(raw(type="t" * 129)), []), "invalid_event")


def test_a_rejection_detail_stays_short_whatever_the_producer_sent() -> None:
    metadata = {"k" * 100_000: "v"}
    detail = rejected(decode(KEY, encoded(with_data(metadata=metadata)), []), "invalid_event")
    assert len(detail) < 1200
