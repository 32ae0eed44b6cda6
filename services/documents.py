"""Maps a thread's state to its MongoDB documents and back. Pure; no I/O.

A thread is stored as two documents and a set of records (the layout of fold version 3):

- the **thread document**, in the view's collection: the view fields the API reads and
  filters on (flat, indexable), and beside them what the fold needs to go on (``clock``): the
  stamp of every register but the last model's, with the value of each UPDATABLE one (the view
  shows the later of it and the creation's value, so it may differ from the view field), the
  creation (stamp, log position, initial values) and the latest time of the events other than
  creates and messages. A message changes none of it, so the list indexes, which only this
  collection has, are not rewritten for messages (on DocumentDB every update of a document
  rewrites its entry in every index of its collection: docs/ferretdb.md);
- the **activity document**, in ``<collection>_activity`` (an ``_id`` index only): what every
  message changes — the message count, the latest message time, the last model's register —
  and the ids of the messages counted but perhaps not yet recorded (``pending``);
- a **message record** per counted message, in ``<collection>_messages``: its ``_id`` names
  the thread and the message, and nothing else is in it. services.mongo.store says how the three
  stay exact without transactions.

No document grows with the thread's message count. A thread document of fold version 2 (the
previous layout: the count, times and the set of message ids in the document) still reads as
its view (:func:`view_from_document`), so a view of that layout serves until it is rebuilt.
Metadata is stored as a list of
``{k, v}`` pairs because its keys come from producers and may contain ``.`` or start with
``$``: MongoDB accepts such names on inserts but refuses some of them in updates (our writes
are ``$set``), and discourages them; as values of ``{k, v}`` pairs they are plain data on
every server.

Why this module is longer than ~200 lines: the mapping between a thread's state and its
documents has to be read in both directions at once (to_document and from_document must stay
inverse), for both documents of the layout.
"""

from __future__ import annotations

from typing import Any

from services.events import LogPosition
from services.projection import UPDATABLE, Creation, Register, Stamp, ThreadState, copy, view

# register attribute of ThreadState -> the view field that holds its value
REGISTERS = {
    "title": "title",
    "metadata": "metadata",
    "status": "status",
    "space_ids": "space_ids",
    "visible_in_ui": "visible_in_ui",
    "pinned": "is_pinned",
    "deleted": "is_deleted",
    "last_model": "last_model_used",
}

# the view fields every message may change: in the activity document, not the thread's
ACTIVITY_FIELDS = ("message_count", "last_message_at", "last_model_used")

# what a list or a single-thread read needs: everything but the fold's bookkeeping
VIEW_PROJECTION = {"clock": False, "message_ids": False, "rev": False, "wid": False}
# what a page needs of the activity documents of its threads
ACTIVITY_PROJECTION = {"n": True, "last_message_at": True, "model.v": True}


def message_key(thread_id: str, message_id: str) -> str:
    """The ``_id`` of a message record: the thread's id, its length first, so that no two
    (thread, message) pairs share a key whatever characters the ids hold."""
    return f"{len(thread_id)}:{thread_id}:{message_id}"


def parse_message_key(key: str) -> tuple[str, str]:
    """The thread and message ids a message record's ``_id`` names."""
    size, _, rest = key.partition(":")
    return rest[: int(size)], rest[int(size) + 1 :]


# what of a state the thread document holds (the rest is the activity document's)
THREAD_STATE = ("creation", *UPDATABLE, "pinned", "deleted", "updated_at")


def thread_part(state: ThreadState) -> tuple[Any, ...]:
    """What of ``state`` the thread document holds: equal for two states exactly when their
    thread documents are (but for the revision)."""
    return tuple(getattr(state, name) for name in THREAD_STATE)


def only_messages(state: ThreadState) -> bool:
    """Whether ``state`` holds nothing a thread document would (messages at most)."""
    return all(getattr(state, name) is None for name in THREAD_STATE)


def to_document(state: ThreadState, rev: int) -> dict[str, Any]:
    """The thread document of ``state`` at revision ``rev``."""
    document = view(
        copy(state, counted=0, message_ids=set(), last_message_at=None, last_model=None)
    )
    document["_id"] = document.pop("id")
    for name in ACTIVITY_FIELDS:
        del document[name]
    document["metadata"] = encode_metadata(document["metadata"])
    document["rev"] = rev
    clock: dict[str, Any] = {}
    for name in REGISTERS:
        if name == "last_model":
            continue
        register = getattr(state, name)
        if register is not None:
            clock[name] = _stamp(register.stamp)
            if name in UPDATABLE:
                clock[name]["v"] = _encode(name, register.value)
    if creation := state.creation:
        clock["creation"] = {
            **_stamp(creation.stamp),
            "pos": _position(creation.position),
            "initial": {name: _encode(name, v) for name, v in creation.initial.items()},
        }
    # the view's updated_at is the latest of this, created_at and the activity's
    # last_message_at (None: only creates and messages so far)
    clock["updated_at"] = state.updated_at
    document["clock"] = clock
    return document


def to_activity(state: ThreadState, count: int, pending: list[str], rev: int) -> dict[str, Any]:
    """The activity document of ``state``: ``count`` messages, of which ``pending`` may not be
    recorded yet, at revision ``rev``."""
    activity: dict[str, Any] = {
        "_id": state.id,
        "n": count,
        "last_message_at": state.last_message_at,
        "pending": pending,
        "rev": rev,
    }
    if model := model_field(state):
        activity["model"] = model
    return activity


def model_field(state: ThreadState) -> dict[str, Any] | None:
    """The last model's register, as the activity document holds it."""
    model = state.last_model
    return None if model is None else {"v": model.value, **_stamp(model.stamp)}


def from_documents(
    thread_id: str, document: dict[str, Any] | None, activity: dict[str, Any] | None
) -> ThreadState:
    """The state a thread's documents hold (either may be missing), with the activity's count
    as ``counted`` and no message ids."""
    state = from_document(document) if document else ThreadState(id=thread_id)
    if activity:
        state.counted = activity["n"]
        state.last_message_at = activity["last_message_at"]
        if model := activity.get("model"):
            state.last_model = Register(model["v"], _from_stamp(model))
    return state


def from_document(document: dict[str, Any]) -> ThreadState:
    """The state a thread document holds, messages aside (see :func:`from_documents`)."""
    clock = document["clock"]
    state = ThreadState(id=document["_id"], updated_at=clock.get("updated_at"))
    if "creation" in clock:
        raw = clock["creation"]
        state.creation = Creation(
            document["organization_id"],
            document["user_id"],
            document["assistant_id"],
            document["workflow_id"],
            _from_stamp(raw),
            _from_position(raw.get("pos")),
            {name: _decode(name, v) for name, v in raw.get("initial", {}).items()},
        )
    for name, field in REGISTERS.items():
        if name in clock and name != "last_model":
            stamp = clock[name]
            value = _decode(name, stamp["v"] if "v" in stamp else document[field])
            setattr(state, name, Register(value, _from_stamp(stamp)))
    return state


def _encode(name: str, value: Any) -> Any:
    if name == "metadata":
        return encode_metadata(value)
    return list(value) if name == "space_ids" else value


def _decode(name: str, value: Any) -> Any:
    if name == "metadata":
        return decode_metadata(value)
    return tuple(value) if name == "space_ids" else value


def _position(position: LogPosition | None) -> list[int] | None:
    return None if position is None else [position.timestamp, position.partition, position.offset]


def _from_position(raw: list[int] | None) -> LogPosition | None:
    return None if raw is None else LogPosition(*raw)


def view_from_document(
    document: dict[str, Any], activity: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The view fields of a stored thread document and its activity document (read with
    ``ACTIVITY_PROJECTION``; None when the thread has none), as
    :func:`services.projection.view` gives them. A document of the previous layout holds
    them all itself, and ``activity`` is not looked at."""
    found = {key: value for key, value in document.items() if key not in VIEW_PROJECTION}
    found["id"] = found.pop("_id")
    found["metadata"] = decode_metadata(found["metadata"])
    if of_old_layout(found):
        return found  # fold version 2
    activity = activity or {}
    last_message_at = activity.get("last_message_at")
    found["message_count"] = activity.get("n", 0)
    found["last_message_at"] = last_message_at or found["created_at"]
    found["last_model_used"] = activity.get("model", {}).get("v")
    if last_message_at is not None:
        updated = found["updated_at"]
        found["updated_at"] = last_message_at if updated is None else max(updated, last_message_at)
    return found


def of_old_layout(document: dict[str, Any]) -> bool:
    """Whether a thread document is of fold version 2 (it holds its activity itself)."""
    return "message_count" in document


def encode_metadata(metadata: dict[str, str]) -> list[dict[str, str]]:
    return [{"k": key, "v": value} for key, value in metadata.items()]


def decode_metadata(pairs: list[dict[str, str]]) -> dict[str, str]:
    return {pair["k"]: pair["v"] for pair in pairs}


def _stamp(stamp: Stamp) -> dict[str, Any]:
    return {"t": stamp.time, "id": stamp.id}


def _from_stamp(raw: dict[str, Any]) -> Stamp:
    return Stamp(raw["t"], raw["id"])
