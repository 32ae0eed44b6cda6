"""Generated thread documents and the list-request families the paging benchmark times.

The data: several organizations, one large (``org_big``, ~70% of the threads by default);
~80% visible, ~10% deleted, ~25% pinned; ~30% each of user ``usr_big``, assistant
``asst_big`` and workflow ``wf_big`` (in every organization, so scopes must cut them out), the
rest spread over many users, assistants and workflows; ``created_at`` one or two seconds apart
with ~3% ties, shuffled against the ids. At 100,000 threads every family but the user +
assistant combination has more than 10,020 matching threads, so a page 501 deep (limit 20)
exists. Deterministic for a seed; bump ``GENERATION`` whenever the output changes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from services.documents import to_activity, to_document
from services.projection import Creation, Register, Stamp, ThreadState
from services.query import Scope, ThreadQuery
from testkit.families import expected

GENERATION = 2  # 2: the layout of fold version 3 (activity documents)
T0 = datetime(2025, 1, 1, tzinfo=UTC)
BIG = "org_big"
ORGS = (BIG, "org_s1", "org_s2", "org_s3", "org_s4")
USER, ASSISTANT, WORKFLOW = "usr_big", "asst_big", "wf_big"


def states(
    count: int, seed: int = 7, prefix: str = "thrd_", orgs: Sequence[str] = ORGS
) -> Iterator[ThreadState]:
    """``count`` threads; the first of ``orgs`` holds ~70% of them, the others share the rest."""
    rng = random.Random(seed)
    seconds, clock = [], 0
    for n in range(count):
        if n and rng.random() >= 0.03:  # ~3% share their second with the thread before
            clock += rng.choice((1, 1, 1, 2))
        seconds.append(clock)
    rng.shuffle(seconds)  # creation order unrelated to id order
    for n in range(count):
        created = T0 + timedelta(seconds=seconds[n])
        stamp = Stamp(created, f"evt_{prefix}{n}_created")
        later = Stamp(created + timedelta(minutes=rng.randrange(1, 600)), f"evt_{prefix}{n}_later")
        org = orgs[0] if rng.random() < 0.7 else rng.choice(orgs[1:])
        user = USER if rng.random() < 0.3 else f"usr_{rng.randrange(400)}"
        assistant = (
            ASSISTANT if rng.random() < 0.3 else rng.choice((None, f"asst_{rng.randrange(60)}"))
        )
        workflow = (
            WORKFLOW if rng.random() < 0.3 else rng.choice((None, None, f"wf_{rng.randrange(30)}"))
        )
        messages = rng.randrange(0, 8)
        yield ThreadState(
            id=f"{prefix}{n:07d}",
            creation=Creation(org, user, assistant, workflow, stamp),
            title=Register(f"Thread {n}", stamp),
            metadata=Register({"source": rng.choice(("web", "api", "slack"))}, stamp),
            status=Register(rng.choice(("active", "inactive")), stamp),
            visible_in_ui=Register(rng.random() < 0.8, stamp),
            pinned=Register(rng.random() < 0.25, later),
            deleted=Register(rng.random() < 0.1, later),
            last_model=Register("gpt-4o", later) if messages else None,
            message_ids={f"msg_{n}_{m}" for m in range(messages)},
            last_message_at=later.time if messages else None,
            updated_at=later.time,
        )


def documents(
    count: int, seed: int = 7, prefix: str = "thrd_", orgs: Sequence[str] = ORGS
) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """The thread and activity documents of :func:`states` (None: a thread without messages
    has none), as the projector would write them (their message records aside: a page never
    reads them)."""
    for state in states(count, seed, prefix, orgs):
        count_ = len(state.message_ids)
        activity = to_activity(state, count_, [], 1) if count_ else None
        yield to_document(state, 1), activity


@dataclass(frozen=True, slots=True)
class Row:
    """What the list filters look at, read from a generated document."""

    created_at: datetime
    id: str
    organization_id: str
    user_id: str
    assistant_id: str | None
    workflow_id: str | None
    visible_in_ui: bool
    is_deleted: bool
    is_pinned: bool

    @classmethod
    def of(cls, document: dict[str, Any]) -> Row:
        return cls(
            document["created_at"],
            document["_id"],
            document["organization_id"],
            document["user_id"],
            document["assistant_id"],
            document["workflow_id"],
            document["visible_in_ui"],
            document["is_deleted"],
            document["is_pinned"],
        )


def views_of(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The rows as the tests' reference reads them (plain dicts), made once for every query."""
    names = [f.name for f in fields(Row)]
    return [{name: getattr(row, name) for name in names} for row in rows]


def reference(views: list[dict[str, Any]], query: ThreadQuery, scope: Scope) -> list[str]:
    """The full list ``query`` selects in ``scope``, in list order, cursors ignored: the tests'
    reference (testkit/families.py) over the generated rows (:func:`views_of`)."""
    return expected(views, query, scope)


# the API keys the benchmark makes: name -> (kind, organizations, user)
KEYS: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "svc big": ("service", (BIG,), None),
    "svc all": ("service", ORGS, None),
    "user": ("user", (BIG,), USER),
}


def scope_of(key: str) -> Scope:
    _, organizations, user = KEYS[key]
    return Scope(organizations, user)


@dataclass(frozen=True)
class Family:
    name: str
    key: str  # one of KEYS
    query: ThreadQuery
    deep: bool = True  # False: only page 1 is timed


FAMILIES = [
    Family("svc org_big", "svc big", ThreadQuery()),
    Family("svc 5 orgs", "svc all", ThreadQuery()),
    Family("svc 5 orgs, organization_id=big", "svc all", ThreadQuery(organization_id=BIG)),
    Family("user usr_big", "user", ThreadQuery()),
    Family("assistant_id=asst_big", "svc big", ThreadQuery(assistant_id=ASSISTANT)),
    Family("workflow_id=wf_big", "svc big", ThreadQuery(workflow_id=WORKFLOW)),
    Family("is_pinned=true", "svc big", ThreadQuery(is_pinned=True)),
    Family("is_pinned=false", "svc big", ThreadQuery(is_pinned=False)),
    Family("include_deleted=true", "svc big", ThreadQuery(include_deleted=True)),
    Family("visible_in_ui=false", "svc big", ThreadQuery(visible_in_ui=False)),
    Family("order=asc", "svc big", ThreadQuery(order="asc")),
    Family("user + assistant_id=asst_big", "user", ThreadQuery(assistant_id=ASSISTANT)),
    Family("include_total=true", "svc big", ThreadQuery(include_total=True), deep=False),
]


def url_params(query: ThreadQuery) -> dict[str, str]:
    """``query`` as the API's query string takes it (api/params.py): every parameter that
    differs from its default, and ``limit`` always."""
    default = ThreadQuery()
    params = {}
    for field in fields(query):
        value = getattr(query, field.name)
        if value is None or (value == getattr(default, field.name) and field.name != "limit"):
            continue
        params[field.name] = str(value).lower() if isinstance(value, bool) else str(value)
    return params
