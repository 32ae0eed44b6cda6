"""Projector.handle against the real store: poison among good records, conflicting creates,
permanent write failures of one thread, and a store that refuses most of a batch (issue 15)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from consumers.sample import cloud_event
from services.mongo.bootstrap import Services
from services.projector import Projector, Record, only
from tests.heavy import longer_title, store_nearly_full

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)


def event(kind: str, thread: str, at: str, data: dict[str, Any], id: str) -> dict[str, Any]:
    return cloud_event(kind, thread, at, data, id=id)


def created(thread: str, id: str, org: str = "org_1", **data: Any) -> dict[str, Any]:
    owner = {"organization_id": org, "user_id": "usr_1"}
    return event("thread.created", thread, "2025-11-17T10:00:00Z", {**owner, **data}, id)


def message(thread: str, id: str, message_id: str, at: str = "2025-11-17T10:05:00Z") -> Any:
    return event("thread.message_added", thread, at, {"message_id": message_id}, id)


class Log:
    """Records of one partition, in order, as the projector receives them."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def add(
        self,
        value: bytes | dict[str, Any] | None,
        key: bytes | None | str = "",
        headers: list[tuple[str, bytes]] | None = None,
    ) -> int:
        if isinstance(value, dict):
            key = value["subject"].encode() if key == "" else key
            value = json.dumps(value).encode()
        offset = len(self.records)
        self.records.append(
            Record(
                "t",
                0,
                offset,
                key.encode() if isinstance(key, str) else key,
                value,
                headers or [],
                NOW_MS + offset,
            )
        )
        return offset


async def view_of(services: Services, thread: str) -> dict[str, Any] | None:
    found = await services.store.threads.find_one({"_id": thread}, {"clock": 0, "pad": 0})
    return None if found is None else {**found, **(await services.store.views([found]))[0]}


async def test_poison_is_dead_lettered_and_the_rest_applied(services: Services) -> None:
    log = Log()
    log.add(created("thrd_a", "e1", title="first"))
    poison = {
        log.add(created("thrd_a", "e2", org="org_evil", title="moved")): "create_conflict",
        log.add(created("thrd_x", "e3"), key=None): "missing_key",
        log.add(b"{not json", key="thrd_x"): "not_json",
        log.add(b"\xff\xfe", key="thrd_x"): "not_utf8",
        log.add({**created("thrd_x", "e4"), "time": "0001-01-01T00:00:00+00:01"}): "invalid_event",
        log.add({**created("thrd_x", "e5"), "time": "1970-01-01T00:00:00Z"}): "time_before_floor",
        log.add({**message("thrd_a", "e6", "m9"), "time": "9999-12-31T00:00:00Z"}): (
            "time_in_future"
        ),
        log.add(b"[" * 3000 + b"]" * 3000, "thrd_x", [("ce_specversion", b"1.0")]): "not_json",
        log.add(created("thrd_x", "e7", title="x" * 300_000)): "too_large",
        log.add(created("thrd_x", "e8", title="x" * 1001)): "invalid_event",
        log.add(created("thrd_a", "e1", title="first"), key="thrd_b"): "key_mismatch",
    }
    log.add(created("thrd_a", "e1", title="first"))  # an exact redelivery: nothing to say
    log.add(message("thrd_a", "e10", "m1"))
    log.add(created("thrd_b", "e11", org="org_2", visible_in_ui=False, title="hidden"))
    poison[log.add(created("thrd_b", "e12", org="org_2", title="shown"))] = "create_conflict"
    log.add(event("thread.archived", "thrd_b", "2025-11-17T10:00:00Z", {}, "e13"))

    projector = Projector(only(services.store))
    outcome = await projector.handle(log.records)

    assert {r.offset: why.code for r, why in outcome.rejected} == poison
    assert all(why.reason.startswith(why.code + ": ") for _, why in outcome.rejected)
    assert outcome.unknown == {"thread.archived": 1}
    assert outcome.applied == 4  # e1 twice, e10, e11
    assert projector.failing_since is None
    a, b = await view_of(services, "thrd_a"), await view_of(services, "thrd_b")
    assert a and a["organization_id"] == "org_1" and a["title"] == "first"
    assert a["message_count"] == 1
    assert b and b["visible_in_ui"] is False and b["title"] == "hidden"
    assert await view_of(services, "thrd_x") is None


async def test_a_create_met_again_in_a_later_batch_is_judged_against_the_stored_one(
    services: Services,
) -> None:
    projector = Projector(only(services.store))
    first, again = Log(), Log()
    first.add(created("thrd_c", "e1", title="mine"))
    await projector.handle(first.records)
    again.records = [
        Record(
            "t",
            0,
            10,
            b"thrd_c",
            json.dumps(created("thrd_c", "e2", org="org_x")).encode(),
            [],
            NOW_MS + 10,
        ),
        Record("t", 0, 11, b"thrd_c", first.records[0].value, [], NOW_MS + 11),
    ]
    outcome = await projector.handle(again.records)
    assert [(r.offset, why.code) for r, why in outcome.rejected] == [(10, "create_conflict")]
    view = await view_of(services, "thrd_c")
    assert view and view["organization_id"] == "org_1" and view["rev"] == 1  # nothing written


async def test_a_thread_the_store_refuses_is_dead_lettered_and_the_rest_commits(
    services: Services,
) -> None:
    await store_nearly_full(services.store, "thrd_big")
    log = Log()
    refused = {log.add(longer_title("thrd_big", f"e{n}", letter)) for n, letter in enumerate("xyz")}
    log.add(created("thrd_ok", "e3"))
    log.add(message("thrd_ok", "e4", "m1"))

    projector = Projector(only(services.store))
    outcome = await asyncio.wait_for(projector.handle(log.records), 60)

    assert {r.offset for r, _ in outcome.rejected} == refused
    assert {why.code for _, why in outcome.rejected} == {"write_failed"}
    ok = await view_of(services, "thrd_ok")
    assert ok and ok["message_count"] == 1
    stored = await view_of(services, "thrd_big")
    assert stored and stored["title"] is None and stored["rev"] == 1


async def test_a_store_refusing_most_of_a_batch_stalls_it_instead(services: Services) -> None:
    for thread in ("thrd_big1", "thrd_big2"):
        await store_nearly_full(services.store, thread)
    log = Log()
    for n, letter in enumerate("xyz"):  # each 900 bytes over the 300 left
        log.add(longer_title("thrd_big1", f"e1{n}", letter))
        log.add(longer_title("thrd_big2", f"e2{n}", letter))
    log.add(created("thrd_ok", "e3"))
    projector = Projector(only(services.store), max_backoff=0.5)
    with pytest.raises(TimeoutError):  # it never dead-letters most of a batch
        await asyncio.wait_for(projector.handle(log.records), 8)
    assert projector.failing_since is not None
