"""A rebuild's rules over the catalog of views, typed on services.ports.ViewCatalog: starting a
rebuild or resuming one (:func:`start`), where each partition resumes (:func:`checkpoint`),
which rebuilds are abandoned, what ``gc`` removes (:func:`collect`), and how ``status`` names a
view's state and kind. The commands are consumers.rebuild; the replay itself (worker processes
reading Kafka, the view's DDL) is consumers.build.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from services import owners
from services.ports import ViewCatalog
from services.projection import FOLD_VERSION
from services.views import (
    BUILDING,
    FAILED,
    INTERRUPTED,
    MAIN,
    READY,
    Pointer,
    View,
    ViewError,
    building,
    collection_of,
)


def abandoned(view: View, now: datetime | None = None) -> bool:
    """A rebuild that stopped (interrupted, failed, or its process died) and left its view."""
    return view.state in (INTERRUPTED, FAILED) or (
        view.state == BUILDING and not building(view, now)
    )


def truncation_warning(topic: str, truncated: Sequence[int]) -> str | None:
    """What to tell of a topic whose ``truncated`` partitions lost their first records."""
    if not truncated:
        return None
    return (
        f"topic {topic} no longer holds its first records on partitions {list(truncated)} "
        "(retention deleted them): a rebuild would miss those events; give the topic "
        "retention.ms=-1"
    )


def checkpoint(view: View, partition: int) -> int:
    """The first offset of ``partition`` not merged into the view yet."""
    if partition in view.done:
        return view.end[partition]
    found = view.checkpoint.get(partition)
    return max(view.begin[partition], found["offset"]) if found else view.begin[partition]


async def start(
    catalog: ViewCatalog,
    name: str,
    topic: str,
    begin: dict[int, int],
    end: dict[int, int],
    as_of: datetime | None,
    as_was: datetime | None,
    note: Callable[[str], None],
) -> View:
    """A new catalog entry reading ``topic`` from ``begin`` to ``end``, or the one of an
    abandoned rebuild of ``name`` to resume (``note`` says how far it got).

    Raises:
        ViewError: the name is taken by a ready view or by a rebuild still running, a resumed
            rebuild was asked for other times or another fold version than it started with,
            or a drop of it began.
    """
    existing = await catalog.get(name)
    if existing is None:
        view = View(
            name,
            collection_of(name),
            BUILDING,
            topic=topic,
            as_of=as_of,
            as_was=as_was,
            begin=begin,
            end=end,
            done=[p for p, o in end.items() if o <= begin[p]],
            heartbeat_at=datetime.now(UTC),
            owner=owners.me(),
        )
        await catalog.create(view)
        return view
    if not abandoned(existing):
        raise ViewError(
            f"view {name!r} exists and is {existing.state}"
            + (" (a rebuild is running)" if existing.state == BUILDING else "")
        )
    if (existing.topic, existing.as_of, existing.as_was) != (topic, as_of, as_was):
        raise ViewError(
            f"view {name!r} was started from {existing.topic} with as_of={existing.as_of}, "
            f"as_was={existing.as_was}: resume it with the same, or `gc` it"
        )
    if existing.fold_version != FOLD_VERSION:
        raise ViewError(f"view {name!r} was started by fold version {existing.fold_version}")
    merged = sum(checkpoint(existing, p) - existing.begin[p] for p in existing.end)
    size = sum(existing.end[p] - existing.begin[p] for p in existing.end)
    note(
        f"resuming {name}: {merged} of {size} records merged already, reading on from each "
        "partition's checkpoint"
    )
    await catalog.update(
        name, state=BUILDING, heartbeat_at=datetime.now(UTC), error=None, owner=owners.me()
    )
    if name in (await catalog.pointer()).dropping:  # a drop began: it reads us after its mark
        await catalog.update(name, state=INTERRUPTED)
        raise ViewError(f"view {name!r} is being dropped")
    existing.state = BUILDING
    return existing


async def collect(catalog: ViewCatalog, dry_run: bool) -> list[str]:
    """Remove (unless ``dry_run``) abandoned rebuilds and views retired by a swap, never the
    live view, the next one or the one a swap is taking live; their names."""
    await catalog.settle()  # a retired view is one the catalog says is retired
    pointer = await catalog.pointer()
    kept = {pointer.live, pointer.next, pointer.swap.view if pointer.swap else None}
    gone = [
        v.name
        for v in await catalog.all()
        if v.name not in kept and (abandoned(v) or (v.state == READY and v.retired_at is not None))
    ]
    if not dry_run:
        for name in gone:
            await catalog.drop(name)
    return gone


def state(view: View, pointer: Pointer) -> str:
    """A view's state as ``status`` shows it."""
    if view.name == pointer.live:
        return "live"
    swap = pointer.swap
    if swap is not None and swap.view == view.name:
        if swap.dead():
            return "swap dead"
        return "swapping in" if pointer.next == view.name else "catching up"
    if view.state != READY:
        return "abandoned" if abandoned(view) else view.state
    return "retired" if view.retired_at else "ready"


def kind(view: View) -> str:
    if view.as_of:
        return f"as-of {view.as_of.isoformat()}"
    if view.as_was:
        return f"as-was {view.as_was.isoformat()}"
    return "projector" if view.name == MAIN else "full"


def swap_summary(pointer: Pointer) -> dict[str, Any] | None:
    """The swap in progress, for status: who runs it, whether ``next`` is set, whether dead."""
    if pointer.swap is None:
        return None
    return {
        **pointer.swap.to_document(),
        "next_set": pointer.next == pointer.swap.view,
        "dead": pointer.swap.dead(),
    }


def dead_swap(pointer: Pointer) -> str | None:
    """What to tell of a swap whose command died, or None when none did."""
    if pointer.swap is None or not pointer.swap.dead():
        return None
    name = pointer.swap.view
    meanwhile = (
        f"; until then every projector batch writes both {pointer.live} and {name}"
        if pointer.next == name
        else ""
    )
    return (
        f"the swap to {name!r} died ({pointer.swap.describe()}): `threadview-rebuild swap "
        f"{name}` resumes it, `threadview-rebuild swap --abort` clears it{meanwhile}"
    )
