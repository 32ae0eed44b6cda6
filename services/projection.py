"""The projection: a pure fold of thread events into one thread's state. No I/O.

Every rule is a merge that is commutative, associative and idempotent (a last-writer-wins
register per field keyed by ``(time, event id)``, a set of message ids, a maximum of times,
a minimum of creations), so the state depends only on the *set* of events folded: any arrival
order and any number of redeliveries give the same state. The live consumer, the rebuild and
the tests all call :func:`fold`; no second copy of these rules exists.

The owner rule (events.md v1.1): a thread's owner — organization, user, assistant, workflow —
and its initial title, metadata, status, spaces and visibility come from its *first*
``thread.created`` in log order (broker timestamp, partition, offset: :class:`LogPosition`), not
from the earliest dated one, which a producer could choose. Any later create is ignored
whole: it never changes the owner and never acts as an update (the registers hold only
``thread.updated`` writes; the view takes, per field, the later of that register and the
creation's value). A later create that differs is dead-lettered (:func:`create_conflict`); one
that does not is a redelivery. Because the creation is a minimum over a total order and a
losing create contributes nothing (not even to ``updated_at``), the rule is as order-free as
the others: the live projector, which meets creates in arrival order, and a rebuild, which
meets them partition by partition, fold the same records to the same state.

Because every rule is such a join, two states folded from any two sets of a thread's events
join into the state of their union: :func:`merge`. A rebuild folds each partition (and each
memory-bounded chunk of one) apart and merges what it folded into what is stored, so a thread
whose records sit on several partitions comes out as the live projector folds it.

Ties: two writes with the same stamp (a producer reusing an event id and a time for different
content) are decided by their values, and two creations at the same place by their content,
never by which came first, so that even then the state depends on the set of events alone.

Why this module is longer than ~200 lines: the fold and its join (merge) are one algebra, held
together by the properties of tests/unit/test_projection.py; each register's rule is a few
lines, and splitting them would separate a rule from the stamps it compares.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from services.events import (
    Event,
    LogPosition,
    MessageAdded,
    ThreadCreated,
    ThreadDeleted,
    ThreadPinned,
    ThreadRestored,
    ThreadUnpinned,
    ThreadUpdated,
)

T = TypeVar("T")

# Raise it whenever a change to the fold (a rule, a new field) changes the state some log folds
# to: every view records the version that built it, and the projector warns when the live view
# was built by another one (rebuild it: see docs/rebuilding.md).
# 2: the owner rule (first create in log order), creates never update
# 3: the layout of issue 17 (services.documents): message ids in a collection of their own,
#    what every message changes in an activity document beside the thread's
FOLD_VERSION = 3

# the fields thread.created sets and thread.updated may change, each a last-writer-wins register
UPDATABLE = ("title", "metadata", "status", "space_ids", "visible_in_ui")


@dataclass(frozen=True, order=True)
class Stamp:
    """Orders writes to a field: the event with the latest ``(time, id)`` wins."""

    time: datetime
    id: str


@dataclass(frozen=True)
class Register(Generic[T]):
    value: T
    stamp: Stamp


@dataclass(frozen=True)
class Creation:
    """The ``thread.created`` that made the thread: its owner and the registers' first values."""

    organization_id: str
    user_id: str
    assistant_id: str | None
    workflow_id: str | None
    stamp: Stamp  # created_at is stamp.time
    position: LogPosition | None = None  # None: not read from Kafka (or stored before v2)
    initial: dict[str, Any] = field(default_factory=dict)  # UPDATABLE name -> value

    @property
    def order(self) -> tuple[bool, LogPosition, Stamp]:
        """The first creation in this order wins (see :func:`log_order`)."""
        return _log_order(self.position, self.stamp)

    @property
    def content(self) -> tuple[Any, ...]:
        """What a second create must repeat to be a mere redelivery."""
        owner = (self.organization_id, self.user_id, self.assistant_id, self.workflow_id)
        return (*owner, sorted(self.initial.items(), key=lambda item: item[0]))


_NOWHERE = LogPosition(0, 0, 0)


def _log_order(position: LogPosition | None, stamp: Stamp) -> tuple[bool, LogPosition, Stamp]:
    # a creation without a position (stored before positions were kept) comes first: it was
    # made earlier in the log than any record read since; the stamp breaks the remaining ties
    return (position is not None, position or _NOWHERE, stamp)


def log_order(event: Event) -> tuple[bool, LogPosition, Stamp]:
    """The order of records in the log (broker timestamp, partition, offset), the owner rule's."""
    return _log_order(event.position, Stamp(event.time, event.id))


def creation_of(event: ThreadCreated) -> Creation:
    data = event.data
    initial = {name: _frozen(getattr(data, name)) for name in UPDATABLE}
    return Creation(
        data.organization_id,
        data.user_id,
        data.assistant_id,
        data.workflow_id,
        Stamp(event.time, event.id),
        event.position,
        initial,
    )


def create_conflict(current: Creation | None, event: ThreadCreated) -> str | None:
    """Why ``event`` must be dead-lettered, or None: it comes after the creation that made the
    thread in log order and differs from it (the fold would ignore it either way)."""
    if current is None:
        return None
    new = creation_of(event)
    if new.content == current.content or new.order < current.order:
        return None  # a redelivery, or the first create (it can only be met late across partitions)
    owner = ("organization_id", "user_id", "assistant_id", "workflow_id")
    differs = [name for name in owner if getattr(new, name) != getattr(current, name)]
    differs += [name for name in UPDATABLE if new.initial.get(name) != current.initial.get(name)]
    return (
        f"thread {event.subject} was created by event {current.stamp.id}; this later "
        f"thread.created differs in {', '.join(differs)} and is ignored"
    )


def first_creation(current: Creation | None, new: Creation) -> Creation:
    if current is None or new.order < current.order:
        return new
    if new.order == current.order and _rank(new.content) < _rank(current.content):
        return new  # the same place in the log (no positions) and different content
    return current


@dataclass
class ThreadState:
    """One thread as folded so far. ``updated_at`` is the latest time of its events other than
    creates and messages (the view's ``updated_at`` is the latest of it, ``last_message_at`` and
    ``created_at``: what every message changes stays apart from the rest); the registers of
    UPDATABLE fields hold ``thread.updated`` writes only.

    Messages: ``counted`` distinct messages are known to the store already (it keeps their ids,
    services.mongo.store), and ``message_ids`` holds the ids folded since. A fold from nothing has
    ``counted == 0`` and every id in ``message_ids``; a state loaded from the store has the
    store's count and no ids, and the ids a batch folds into it may repeat counted ones until
    the store has told them apart (``MongoThreadStore.save``). The view counts both."""

    id: str
    creation: Creation | None = None
    title: Register[str | None] | None = None
    metadata: Register[dict[str, str]] | None = None
    status: Register[str] | None = None
    space_ids: Register[tuple[str, ...]] | None = None
    visible_in_ui: Register[bool] | None = None
    pinned: Register[bool] | None = None
    deleted: Register[bool] | None = None
    last_model: Register[str] | None = None
    message_ids: set[str] = field(default_factory=set)
    counted: int = 0
    last_message_at: datetime | None = None
    updated_at: datetime | None = None


def fold(state: ThreadState | None, events: Iterable[Event]) -> ThreadState:
    """Return the state after ``events``; ``state`` itself is left unchanged.

    Args:
        state: the thread's state so far, or None for a thread not seen yet.
        events: events of that one thread, in any order, duplicates allowed.
    """
    folded = copy(state, message_ids=set(state.message_ids)) if state else None
    for event in events:
        if folded is None:
            folded = ThreadState(id=event.subject)
        elif event.subject != folded.id:
            raise ValueError(f"event {event.id} is for {event.subject}, not {folded.id}")
        _apply(folded, event)
    if folded is None:
        raise ValueError("nothing to fold: no state and no events")
    return folded


def _apply(state: ThreadState, event: Event) -> None:
    stamp = Stamp(event.time, event.id)
    if isinstance(event, ThreadCreated):  # only the first creation counts, for anything
        state.creation = first_creation(state.creation, creation_of(event))
        return
    if not isinstance(event, MessageAdded):
        state.updated_at = _latest(state.updated_at, event.time)
    match event:
        case ThreadUpdated(data=data):
            for name in UPDATABLE:
                if name in data.model_fields_set:
                    _write(state, name, getattr(data, name), stamp)
        case MessageAdded(data=data):
            state.message_ids.add(data.message_id)
            state.last_message_at = _latest(state.last_message_at, event.time)
            if data.model is not None:
                state.last_model = _lww(state.last_model, data.model, stamp)
        case ThreadPinned() | ThreadUnpinned():
            state.pinned = _lww(state.pinned, isinstance(event, ThreadPinned), stamp)
        case ThreadDeleted() | ThreadRestored():
            state.deleted = _lww(state.deleted, isinstance(event, ThreadDeleted), stamp)


def _write(state: ThreadState, name: str, value: Any, stamp: Stamp) -> None:
    setattr(state, name, _lww(getattr(state, name), _frozen(value), stamp))


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def current(state: ThreadState, name: str) -> Register[Any] | None:
    """The register of an UPDATABLE field as the view sees it: the later of the field's last
    ``thread.updated`` write and the creation's value."""
    written: Register[Any] | None = getattr(state, name)
    creation = state.creation
    if creation is None or name not in creation.initial:
        return written
    initial = Register(creation.initial[name], creation.stamp)
    return written if written is not None and written.stamp > initial.stamp else initial


def _lww(current: Register[T] | None, value: T, stamp: Stamp) -> Register[T]:
    return _later(current, Register(value, stamp)) or Register(value, stamp)


def _later(a: Register[T] | None, b: Register[T] | None) -> Register[T] | None:
    """The register that wins: the later stamp; on a tie, the greater value (see the tie rule)."""
    if a is None or b is None:
        return b if a is None else a
    if a.stamp != b.stamp:
        return b if b.stamp > a.stamp else a
    return b if _rank(b.value) > _rank(a.value) else a


def _rank(value: Any) -> str:
    """A total order over any register value or creation content, for ties only."""
    return repr(sorted(value.items()) if isinstance(value, dict) else value)


def _latest(current: datetime | None, time: datetime) -> datetime:
    return time if current is None or time > current else current


def _max(a: datetime | None, b: datetime | None) -> datetime | None:
    return a if b is None else _latest(a, b)


def copy(state: ThreadState, **changes: Any) -> ThreadState:
    """A shallow copy of ``state`` with ``changes``: what ``dataclasses.replace`` does, without
    its cost (it runs ``__init__``; the write path copies states thousands of times a second)."""
    copied = object.__new__(ThreadState)
    copied.__dict__.update(state.__dict__, **changes)
    return copied


def as_counted(state: ThreadState) -> ThreadState:
    """``state`` as the store gives it back once it has counted its message ids: the count
    alone (``counted``), no ids."""
    return copy(state, counted=state.counted + len(state.message_ids), message_ids=set())


REGISTER_FIELDS = (*UPDATABLE, "pinned", "deleted", "last_model")


def merge(a: ThreadState | None, b: ThreadState | None) -> ThreadState:
    """The state of the union of the events ``a`` and ``b`` were folded from.

    A join: commutative, associative and idempotent, and ``merge(fold(None, A), fold(None, B))
    == fold(None, A + B)`` for any two sets of events A and B of one thread (the properties in
    tests/unit/test_projection.py hold it to that). The result shares nothing mutable with
    its arguments.

    Raises:
        ValueError: both are None, they are states of two threads, or both hold counted
            messages (two stored states: their counted sets may overlap, which only the store
            can tell).
    """
    if a is None or b is None:
        one = b if a is None else a
        if one is None:
            raise ValueError("nothing to merge: two missing states")
        return copy(one, message_ids=set(one.message_ids))
    if a.id != b.id:
        raise ValueError(f"cannot merge thread {a.id} with thread {b.id}")
    if a.counted and b.counted:
        raise ValueError(f"cannot merge two stored states of thread {a.id}")
    registers = {name: _later(getattr(a, name), getattr(b, name)) for name in REGISTER_FIELDS}
    creation = b.creation if a.creation is None else a.creation
    if a.creation is not None and b.creation is not None:
        creation = first_creation(a.creation, b.creation)
    return ThreadState(
        id=a.id,
        creation=creation,
        message_ids=a.message_ids | b.message_ids,
        counted=a.counted + b.counted,
        last_message_at=_max(a.last_message_at, b.last_message_at),
        updated_at=_max(a.updated_at, b.updated_at),
        **registers,
    )


def view(state: ThreadState) -> dict[str, Any]:
    """The thread as the API shows it (Python values), or as much of it as is known."""
    creation = state.creation
    pinned = state.pinned is not None and state.pinned.value
    deleted = state.deleted is not None and state.deleted.value
    title, metadata, status, space_ids, visible = (current(state, name) for name in UPDATABLE)
    created_at = creation.stamp.time if creation else None
    times = (state.updated_at, state.last_message_at, created_at)
    updated_at = max((t for t in times if t is not None), default=None)
    return {
        "id": state.id,
        "listed": creation is not None,
        "created_at": created_at,
        "updated_at": updated_at,
        # the published example shows a thread without messages with last_message_at equal
        # to its created_at, never null
        "last_message_at": state.last_message_at or (creation.stamp.time if creation else None),
        "metadata": dict(metadata.value) if metadata else {},
        "assistant_id": creation.assistant_id if creation else None,
        "organization_id": creation.organization_id if creation else None,
        "user_id": creation.user_id if creation else None,
        "workflow_id": creation.workflow_id if creation else None,
        "title": title.value if title else None,
        "status": status.value if status else "inactive",
        "message_count": state.counted + len(state.message_ids),
        "visible_in_ui": visible.value if visible else True,
        "last_model_used": state.last_model.value if state.last_model else None,
        "is_pinned": pinned,
        "pinned_at": state.pinned.stamp.time if pinned and state.pinned else None,
        "space_ids": list(space_ids.value) if space_ids else [],
        "is_deleted": deleted,
        "deleted_at": state.deleted.stamp.time if deleted and state.deleted else None,
    }
