"""Hypothesis strategies for realistic thread event logs (events.md contract v1)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from consumers.sample import cloud_event
from services.events import EVENT_TYPES, Event, LogPosition

# the main properties: enough examples to find ties and out-of-order logs, still fast
PROPERTY = settings(max_examples=200, deadline=None)
# cheaper properties (round trips, single checks)
QUICK = settings(max_examples=100, deadline=None)

THREAD_IDS = ("thrd_a", "thrd_b", "thrd_c")
ORGANIZATIONS = ("org_1", "org_2")
USERS = ("usr_1", "usr_2")
MESSAGE_IDS = ("msg_1", "msg_2", "msg_3", "msg_4")
MODELS = ("gpt-4o", "claude-sonnet", "mistral-large")
ROLES = ("user", "assistant", "system", "tool")

# A small set of instants, spelled in several ways, so that ties on time are frequent:
# "…:00Z", "…:00+00:00" and "…T12:00:00+02:00" are the same instant, and two fractions
# inside the same millisecond collapse to one time once truncated to milliseconds.
TIMES = (
    "2025-11-17T10:00:00Z",
    "2025-11-17T10:00:00+00:00",
    "2025-11-17T12:00:00+02:00",
    "2025-11-17T10:00:00.000400Z",
    "2025-11-17T10:00:01.500Z",
    "2025-11-17T10:00:01.500999Z",
    "2025-11-17T10:01:00Z",
    "2025-11-17T05:01:00-05:00",
    "2025-11-17T10:02:00Z",
    "2025-11-18T00:00:00Z",
)

TYPES = tuple(EVENT_TYPES)

times = st.sampled_from(TIMES)
titles = st.sampled_from((None, "", "Aitronos Inquiry", "café", "a.b $c"))
# metadata keys from producers may hold '.' or start with '$': the store must keep them
metadata = st.dictionaries(
    st.sampled_from(("user_id", "a.b", "$set", "$", ".", "x.$y", "", "k" * 64)),
    st.sampled_from(("", "v", "v.$", "x" * 512)),
    max_size=4,
)
space_id_lists = st.lists(st.sampled_from(("space_1", "space_2", "space_3")), max_size=3)
# unknown fields a newer producer may add: a tolerant reader ignores them
extras: st.SearchStrategy[dict[str, Any]] = st.sampled_from(
    ({}, {}, {}, {"extra_field": 1}, {"x-trace": {"a": [1, None]}})
)

UPDATABLE_FIELDS = {
    "title": titles,
    "metadata": metadata,
    "status": st.sampled_from(("inactive", "active", "archived")),
    "space_ids": space_id_lists,
    "visible_in_ui": st.booleans(),
}


def created_data() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "organization_id": st.sampled_from(ORGANIZATIONS),
            "user_id": st.sampled_from(USERS),
        },
        optional={
            "assistant_id": st.one_of(st.none(), st.sampled_from(("asst_1", "asst_2"))),
            "workflow_id": st.one_of(st.none(), st.sampled_from(("wf_1", "wf_2"))),
            **UPDATABLE_FIELDS,
        },
    )


def updated_data() -> st.SearchStrategy[dict[str, Any]]:
    # any subset of the updatable fields, the empty one included
    return st.fixed_dictionaries({}, optional=UPDATABLE_FIELDS)


def message_data() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"message_id": st.sampled_from(MESSAGE_IDS)},
        optional={
            "role": st.sampled_from(ROLES),
            "model": st.one_of(st.none(), st.sampled_from(MODELS)),
        },
    )


DATA: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "thread.created": created_data(),
    "thread.message_added": message_data(),
    "thread.updated": updated_data(),
    "thread.pinned": st.just({}),
    "thread.unpinned": st.just({}),
    "thread.deleted": st.just({}),
    "thread.restored": st.just({}),
}

# message events are the most frequent in practice; weight them a little
event_types = st.one_of(
    st.sampled_from(TYPES),
    st.just("thread.message_added"),
    st.just("thread.updated"),
)


def to_event(raw: dict[str, Any]) -> Event:
    """Validate an event dict (as a producer writes it) with its pydantic model."""
    return EVENT_TYPES[raw["type"]].model_validate_json(json.dumps(raw))


@st.composite
def raw_events(
    draw: st.DrawFn, thread_id: str, event_id: str, kinds: st.SearchStrategy[str] = event_types
) -> dict[str, Any]:
    """One event dict of a type drawn from ``kinds`` for ``thread_id``."""
    kind = draw(kinds)
    data = {**draw(DATA[kind]), **draw(extras)}
    return cloud_event(kind, thread_id, draw(times), data, id=event_id)


@st.composite
def event_ids(draw: st.DrawFn, n: int) -> list[str]:
    """``n`` distinct event ids, in an order unrelated to the order of the events."""
    # unpadded numbers: the order of the ids ("evt_10" < "evt_9") is unrelated to anything
    numbers = draw(st.lists(st.integers(0, 999), min_size=n, max_size=n, unique=True))
    return [f"evt_{k}" for k in numbers]


# broker timestamps (ms) of records: few, so that ties (broken by partition, then offset) are common
BROKER_TIMES = (1_763_373_600_000, 1_763_373_600_001, 1_763_373_660_000)


@st.composite
def positioned(draw: st.DrawFn, events: list[Event]) -> list[Event]:
    """Give each event the position of the record it came in (as the projector and the rebuild
    do), or, in some examples, none (events built in memory): the fold must hold for both."""
    if draw(st.booleans()):
        offsets = draw(st.permutations(range(len(events))))
        for event, offset in zip(events, offsets, strict=True):
            timestamp, partition = draw(st.sampled_from(BROKER_TIMES)), draw(st.integers(0, 2))
            event.at(LogPosition(timestamp, partition, offset))
    return events


@st.composite
def thread_logs(
    draw: st.DrawFn,
    thread_id: str | None = None,
    min_size: int = 1,
    max_size: int = 15,
    created: bool | None = None,
) -> list[Event]:
    """The distinct events of one thread, in arrival order (random, not sorted by time).

    Args:
        thread_id: the thread; drawn from THREAD_IDS when None.
        created: True to make sure a thread.created is in the log, False to leave none,
            None for either.
    """
    thread = thread_id or draw(st.sampled_from(THREAD_IDS))
    n = draw(st.integers(min_size, max_size))
    identifiers = draw(event_ids(n))
    kinds = event_types.filter(lambda k: k != "thread.created") if created is False else event_types
    events = [draw(raw_events(thread, identifier, kinds)) for identifier in identifiers]
    if created and not any(e["type"] == "thread.created" for e in events):
        extra_id = "evt_created"
        at = draw(st.integers(0, len(events)))
        data = draw(created_data())
        events.insert(at, cloud_event("thread.created", thread, draw(times), data, id=extra_id))
    return draw(positioned([to_event(e) for e in events]))


@st.composite
def mixed_logs(draw: st.DrawFn, max_size: int = 25) -> list[Event]:
    """Distinct events of two or three threads, interleaved as on one partition."""
    n = draw(st.integers(2, max_size))
    identifiers = draw(event_ids(n))
    threads = draw(st.lists(st.sampled_from(THREAD_IDS), min_size=n, max_size=n))
    if len(set(threads)) < 2:
        threads[0] = next(t for t in THREAD_IDS if t != threads[1])
    return draw(
        positioned(
            [
                to_event(draw(raw_events(thread, identifier)))
                for thread, identifier in zip(threads, identifiers, strict=True)
            ]
        )
    )
