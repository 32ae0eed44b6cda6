"""The view catalog's pure parts: names, entries, when a rebuild counts as abandoned, progress."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

import pytest

from consumers.build import abandoned
from consumers.progress import Rate
from services.owners import STALE
from services.views import BUILDING, FAILED, INTERRUPTED, READY, View, ViewError, check_name

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("name", ["v2", "rebuild-20261129-2230", "a_b", "0"])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "live", "V2", "-a", "a b", "a/b", "x" * 49, "thréad"])
def test_bad_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(ViewError, match="1-48 characters"):
        check_name(name)


def test_an_entry_round_trips_through_its_document() -> None:
    view = View(
        "v2",
        "threads_v2",
        READY,
        topic="t",
        as_of=NOW,
        begin={0: 0},
        end={0: 10},
        done=[0],
        counts={"records": 10},
    )
    assert View.from_document({**view.to_document(), "unknown": 1}) == view
    assert view.to_document()["end"] == {"0": 10}  # BSON keys are text
    assert view.point_in_time and not View("x", "threads_x", READY).point_in_time


def building(**values: object) -> View:
    return View("b", "threads_b", BUILDING, heartbeat_at=NOW, **values)  # type: ignore[arg-type]


def test_a_rebuild_is_abandoned_when_it_stopped_or_its_process_is_gone() -> None:
    here = socket.gethostname()
    assert not abandoned(building(owner={"host": here, "pid": os.getpid()}), NOW)
    assert abandoned(building(owner={"host": here, "pid": 2**22 + 1}), NOW)  # no such process
    elsewhere = building(owner={"host": "another-host", "pid": 1})
    assert not abandoned(elsewhere, NOW + STALE)
    assert abandoned(elsewhere, NOW + STALE + timedelta(seconds=1))  # no heartbeat since
    for state in (INTERRUPTED, FAILED):
        assert abandoned(View("b", "threads_b", state), NOW)
    assert not abandoned(View("b", "threads_b", READY), NOW + timedelta(days=9))


def test_progress_has_a_rate_and_an_eta() -> None:
    rate = Rate()
    rate.phase("fold", 1000)
    rate.started -= 2.0
    rate.done = 500
    shown = rate.snapshot()
    assert shown["per_second"] == pytest.approx(250, rel=0.05)
    assert shown["eta_seconds"] == pytest.approx(2.0, rel=0.05)
    rate.phase("indexes", None)
    assert rate.snapshot()["eta_seconds"] is None
