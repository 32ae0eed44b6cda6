"""Every kind of list request is an ordered index walk on the real store: explain() of each
stream of each request family must show an index scan in the page's order, and never a sort
of the matches or a scan of the collection."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.documents import to_document
from services.mongo.bootstrap import Services
from services.projection import Creation, Register, Stamp, ThreadState
from testkit.families import families

pytestmark = pytest.mark.integration

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ORGS = ("org_a", "org_b", "org_c")

# store nodes that read every match (a sort) or the whole collection: MongoDB's stages and
# PostgreSQL's plan nodes (FerretDB 2 answers explain() with DocumentDB's PostgreSQL plan)
SORTS = {"SORT", "SORT_KEY_GENERATOR", "Sort", "Incremental Sort"}
SCANS = {"COLLSCAN", "Seq Scan", "Bitmap Heap Scan", "Bitmap Index Scan"}
WALKS = {"IXSCAN", "Index Scan", "Index Only Scan"}


def nodes(plan: Any) -> Iterator[str]:
    """The names of every stage or plan node in an explain() answer, however nested."""
    if isinstance(plan, dict):
        for key, value in plan.items():
            if key in ("stage", "Node Type") and isinstance(value, str):
                yield value
            elif key != "rejectedPlans":
                yield from nodes(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from nodes(item)


@pytest.fixture
async def crowd(services: Services) -> Services:
    """Enough threads that a sort would look cheap to a planner that could choose one."""
    documents = []
    for n in range(3000):
        stamp = Stamp(T0 + timedelta(seconds=n // 2), f"evt_{n}")
        state = ThreadState(
            id=f"thrd_{n:05d}",
            creation=Creation(ORGS[n % 3], f"usr_{n % 7}", f"asst_{n % 5}", f"wf_{n % 4}", stamp),
            visible_in_ui=Register(n % 10 != 0, stamp),
            pinned=Register(n % 6 == 0, stamp),
            deleted=Register(n % 9 == 0, stamp),
            updated_at=stamp.time,
        )
        documents.append(to_document(state, 1))
    await services.store.threads.insert_many(documents)
    return services


async def test_every_request_family_walks_an_index_in_the_page_order(crowd: Services) -> None:
    cursor = "thrd_01501"  # mid-list, listed for a service key
    failures = []
    for name, query, scope in families(ORGS, "usr_1", "asst_1", "wf_1", cursor):
        explained = await crowd.store.explain(query, scope)
        assert explained, name
        for stream in explained:
            seen = list(nodes(stream))
            if not WALKS & set(seen) or (SORTS | SCANS) & set(seen):
                failures.append(f"{name}: {seen}")
    assert not failures, "\n".join(failures)


async def test_the_projector_loads_a_batch_through_the_id_index(crowd: Services) -> None:
    ids = [f"thrd_{n:05d}" for n in range(0, 3000, 7)]
    explained = await crowd.store.threads.find({"_id": {"$in": ids}}).explain()  # as load() does
    seen = set(nodes(explained))
    assert WALKS & seen and not (SORTS | SCANS) & seen, seen
    assert len(await crowd.store.load(ids)) == len(ids)
