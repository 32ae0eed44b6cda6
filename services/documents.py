"""Maps a thread's state to its MongoDB document and back. Pure; no I/O.

The document holds the view fields the API reads and filters on (flat, indexable), and beside
them what the fold needs to go on (``clock``): the stamp of every register, with the value of
each UPDATABLE one (the view shows the later of it and the creation's value, so it may differ
from the view field), the creation (stamp, log position, initial values), the latest time of
the events other than creates, and the set of message ids. Metadata is stored as a list of
``{k, v}`` pairs because its keys come from producers and may contain ``.`` or start with
``$``: MongoDB accepts such names on inserts but refuses some of them in updates (our writes
are ``$set``), and discourages them; as values of ``{k, v}`` pairs they are plain data on
every server.
"""

from __future__ import annotations

from typing import Any

from services.events import LogPosition
from services.projection import UPDATABLE, Creation, Register, Stamp, ThreadState, view

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

# what a list or a single-thread read needs: everything but the fold's bookkeeping
VIEW_PROJECTION = {"clock": False, "message_ids": False, "rev": False, "wid": False}


def to_document(state: ThreadState, rev: int) -> dict[str, Any]:
    document = view(state)
    document["_id"] = document.pop("id")
    document["metadata"] = encode_metadata(document["metadata"])
    document["rev"] = rev
    document["message_ids"] = sorted(state.message_ids)
    clock: dict[str, Any] = {}
    for name in REGISTERS:
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
    if state.last_message_at:  # the view's last_message_at falls back to created_at
        clock["last_message_at"] = state.last_message_at
    # the view's updated_at is the later of this and created_at (None: only creates so far)
    clock["updated_at"] = state.updated_at
    document["clock"] = clock
    return document


def from_document(document: dict[str, Any]) -> ThreadState:
    """The state a document holds. A document of fold version 1 (no register values, no
    creation values in ``clock``) reads as the same view: its registers take the view fields."""
    clock = document["clock"]
    state = ThreadState(
        id=document["_id"],
        message_ids=set(document["message_ids"]),
        last_message_at=clock.get("last_message_at"),
        updated_at=clock.get("updated_at", document["updated_at"]),
    )
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
        if name in clock:
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


def view_from_document(document: dict[str, Any]) -> dict[str, Any]:
    """The view fields of a stored document, as :func:`services.projection.view` gives them."""
    found = {key: value for key, value in document.items() if key not in VIEW_PROJECTION}
    found["id"] = found.pop("_id")
    found["metadata"] = decode_metadata(found["metadata"])
    return found


def encode_metadata(metadata: dict[str, str]) -> list[dict[str, str]]:
    return [{"k": key, "v": value} for key, value in metadata.items()]


def decode_metadata(pairs: list[dict[str, str]]) -> dict[str, str]:
    return {pair["k"]: pair["v"] for pair in pairs}


def _stamp(stamp: Stamp) -> dict[str, Any]:
    return {"t": stamp.time, "id": stamp.id}


def _from_stamp(raw: dict[str, Any]) -> Stamp:
    return Stamp(raw["t"], raw["id"])
