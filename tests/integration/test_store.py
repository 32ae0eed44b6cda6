"""The Mongo store against the real server (FerretDB here, MongoDB in production), beyond the
contract both stores keep (tests/integration/test_contract.py): concurrent writers."""

from __future__ import annotations

import asyncio

import pytest

from services.mongo.bootstrap import Services
from services.projection import as_counted
from services.query import Scope
from testkit.threads import created, message, state_of
from tests.fault.harness import stored_states

pytestmark = pytest.mark.integration

ORG_1 = Scope(("org_1",))


async def test_absorbing_parts_at_once_from_many_writers_gives_the_fold_of_all(
    services: Services,
) -> None:
    # given: 50 threads, each with its events split over 4 "partitions" and 3 chunks each,
    # absorbed by 12 concurrent writers (as rebuild workers are), some chunks twice
    store = services.store
    threads = [f"thrd_{n:02d}" for n in range(50)]
    events = {t: [created(t, title=t), *(message(t, n) for n in range(24))] for t in threads}
    chunks = [
        (
            part,
            [
                state_of(*events[t][part * 6 + chunk * 2 : part * 6 + chunk * 2 + 3])
                for t in threads
            ],
        )
        for part in range(4)
        for chunk in range(3)
    ]

    # when
    results = await asyncio.gather(
        *(store.absorb(states, part) for part, states in chunks + chunks[:3])
    )

    # then: every thread is the fold of all its events, found on the 4 partitions
    loaded = await store.load(threads)
    assert {t: s.state for t, s in loaded.items()} == {
        t: as_counted(state_of(*events[t])) for t in threads
    }
    assert await stored_states(store) == {t: state_of(*events[t]) for t in threads}
    assert all(s.parts == (0, 1, 2, 3) for s in loaded.values())
    assert await store.spread() == 50
    assert sum(r.conflicts for r in results) > 0, "no writer ever conflicted: proves little"
    # absorbing again changes nothing, not even a revision
    before = {t: s.rev for t, s in loaded.items()}
    assert (await store.absorb(chunks[0][1], 0)).merged == 0
    assert {t: s.rev for t, s in (await store.load(threads)).items()} == before
