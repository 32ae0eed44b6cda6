"""The rebuild's memory budget: how it is shared, and the estimate of what states take."""

from __future__ import annotations

from consumers.build import MIN_STATES_MB, states_budget
from consumers.replay import STATE_BYTES, Footprint
from consumers.sample import cloud_event
from services.projection import ThreadState, fold
from tests.unit.strategies import TIMES, to_event

MiB = 1024 * 1024


def test_the_budget_is_shared_by_the_workers_after_what_each_process_needs() -> None:
    assert states_budget(768, 2) == 159 * MiB  # (768 - 150) // 2 - 150
    assert states_budget(768, 1) > 2 * states_budget(768, 2)
    assert states_budget(4096, 4) == (3946 // 4 - 150) * MiB
    assert states_budget(1, 8) == MIN_STATES_MB * MiB  # far too little: the floor, still bounded


def test_the_footprint_grows_with_messages_and_values_and_clears() -> None:
    def state(thread: str, messages: int, title: str) -> ThreadState:
        data = {"organization_id": "org_1", "user_id": "usr_1", "title": title}
        events = [to_event(cloud_event("thread.created", thread, TIMES[0], data, id="c"))]
        events += [
            to_event(
                cloud_event(
                    "thread.message_added", thread, TIMES[1], {"message_id": f"m{n}"}, id=f"e{n}"
                )
            )
            for n in range(messages)
        ]
        return fold(None, events)

    footprint = Footprint()
    states = {"a": state("a", 0, "t"), "b": state("b", 100, "t"), "c": state("c", 0, "x" * 1000)}
    footprint.update(states, ["a"])
    small = footprint.bytes
    assert STATE_BYTES < small < 3 * STATE_BYTES
    footprint.update(states, ["b", "c"])
    assert footprint.bytes > 3 * small + 100 * 90 + 1000
    footprint.update(states, ["a", "b", "c"])  # again: no double count
    again = Footprint()
    again.update(states, ["a", "b", "c"])
    assert again.bytes == footprint.bytes
    footprint.clear()
    assert footprint.bytes == 0
