"""The swap's pure parts: when its owner counts as dead, what a pointer document says, what
settling a flip writes, which fold versions a projector refuses, and its readiness then."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

from consumers.projector import readiness_problems
from services import owners
from services.views import READY, Handover, Pointer, View, fold_refusal, settlement

NOW = datetime(2026, 1, 1, tzinfo=UTC)
HERE = socket.gethostname()
GONE = 2**22 + 1  # above the kernel's pid_max: no such process


def test_an_owner_is_dead_when_its_process_is_gone_here_or_its_heartbeat_is_stale() -> None:
    me = {"host": HERE, "pid": os.getpid()}
    assert owners.me() == me
    assert not owners.dead(me, NOW, NOW)
    assert owners.dead({"host": HERE, "pid": GONE}, NOW, NOW)  # known at once: no wait
    elsewhere = {"host": "another-host", "pid": GONE}
    assert not owners.dead(elsewhere, NOW, NOW + owners.STALE)  # its pid means nothing here
    assert owners.dead(elsewhere, NOW, NOW + owners.STALE + timedelta(seconds=1))
    assert owners.dead(me, NOW, NOW + owners.STALE + timedelta(seconds=1))  # alive but hung
    assert owners.dead({}, NOW, NOW) and owners.dead(me, None, NOW)  # nothing to wait for
    assert timedelta(seconds=10 * owners.HEARTBEAT) < owners.STALE  # many beats per STALE
    shown = owners.describe({"host": "h", "pid": 7}, NOW - timedelta(seconds=4), NOW)
    assert shown == "pid 7 on h, last heartbeat 4 s ago"


def test_a_pointer_records_its_swap_and_an_old_pointer_reads_as_a_dead_handover() -> None:
    swap = Handover.new("k1", {"host": HERE, "pid": os.getpid()})
    pointer = Pointer.from_document(
        {
            "_id": "live",
            "view": "main",
            "next": "k1",
            "fold_version": 2,
            "next_fold_version": 2,
            "swap": {**swap.to_document(), "added_later": 1},
            "previous_reached": {"0": 5},
            "dropping": ["old"],
        }
    )
    assert pointer.swap == swap and not swap.dead()
    assert swap.match() == {"swap.id": swap.id}
    assert pointer.previous_reached == {0: 5} and pointer.dropping == ("old",)
    assert pointer.settled  # no flip recorded: nothing to settle
    # a pointer from before swaps recorded themselves, stuck with `next` set
    old = Pointer.from_document({"_id": "live", "view": "main", "next": "k1"})
    assert old.swap == Handover("k1") and old.swap.dead() and old.fold_version is None
    assert old.swap.match() == {"swap": None, "next": "k1"}
    assert Pointer.from_document({"_id": "live", "view": "main"}).swap is None
    assert not Pointer.from_document({"_id": "live", "view": "k1", "settled": False}).settled


def flipped(**changes: object) -> Pointer:
    values: dict[str, object] = {
        "live": "k1",
        "previous": "main",
        "swapped_at": NOW,
        "previous_reached": {0: 10, 1: 4},
        "settled": False,
    }
    values.update(changes)
    return Pointer(**values)  # type: ignore[arg-type]


def entry(name: str, **values: object) -> View:
    return View(name, f"threads_{name}", READY, **values)  # type: ignore[arg-type]


def test_settling_a_flip_fills_in_what_the_catalog_lacks_and_only_that() -> None:
    # killed right after the flip: neither entry says it
    main, k1 = entry("main", reached={0: 12, 2: 3}, live_since=NOW - timedelta(days=1)), entry("k1")
    assert settlement(flipped(), k1, main) == {
        "k1": {"live_since": NOW, "retired_at": None},
        "main": {"retired_at": NOW, "reached": {0: 12, 1: 4, 2: 3}},  # the larger of both
    }
    # killed between the two entries: only the previous one is left
    k1_done = entry("k1", live_since=NOW)
    assert list(settlement(flipped(), k1_done, main)) == ["main"]
    # both done, or a pointer that was settled, or one from before flips were recorded
    main_done = entry("main", retired_at=NOW)
    assert settlement(flipped(), k1_done, main_done) == {}
    assert settlement(flipped(settled=True), k1, main) == {}
    assert settlement(Pointer("k1", settled=False), k1, main) == {}
    # a view that was retired and is swapped in again sheds its retired_at
    again = entry("k1", live_since=NOW - timedelta(days=2), retired_at=NOW - timedelta(days=1))
    assert settlement(flipped(), again, main_done) == {
        "k1": {"live_since": NOW, "retired_at": None}
    }
    # an entry a later swap has moved on is left alone (a settle that stalled that long)
    later = NOW + timedelta(minutes=5)
    moved = entry("k1", retired_at=later), entry("main", live_since=later)
    assert settlement(flipped(), *moved) == {}
    # a previous view dropped since: only the live one
    assert list(settlement(flipped(), k1, None)) == ["k1"]


def test_a_projector_refuses_views_of_another_fold_version() -> None:
    assert fold_refusal(Pointer("main", fold_version=2), {}, 2) is None
    assert fold_refusal(Pointer("main", fold_version=1), {"main": 2}, 2) == (
        "the live view 'main' was built by fold version 1; this projector folds with 2: "
        "rebuild it (threadview-rebuild run, then swap)"
    )
    # a pointer older than the field: the catalog entry's version
    assert fold_refusal(Pointer("main"), {"main": 1}, 2) is not None
    assert fold_refusal(Pointer("main"), {"main": 2}, 2) is None
    # the view being swapped in counts as much: a batch must write both or neither
    swapping = Pointer("main", next="k3", fold_version=2, next_fold_version=3)
    refused = fold_refusal(swapping, {}, 2)
    assert refused is not None and "'k3' being swapped in was built by fold version 3" in refused
    assert "swap --abort" in refused
    assert fold_refusal(Pointer("main", next="k1", fold_version=2), {"k1": 1}, 2) is not None
    assert fold_refusal(Pointer("main", next="k1", fold_version=2), {"k1": 2}, 2) is None


def test_a_refusing_projector_is_unready_at_once() -> None:
    why = "the live view 'main' was built by fold version 1; this projector folds with 2: ..."
    state: dict[str, object] = {
        "store_answers": True,
        "assigned": True,
        "last_batch_at": 9_000.0,
        "lagging_since": 9_999.0,  # records wait for a second only: not stalled yet
        "failing_since": None,
        "stall_seconds": 120.0,
    }
    assert readiness_problems(10_000.0, **state) == []  # type: ignore[arg-type]
    assert readiness_problems(10_000.0, **state, refused=why) == [why]  # type: ignore[arg-type]
