"""Makes a rebuilt view the live one while events keep arriving, with no gap, and can be killed
at any step.

The fold is idempotent and order-independent, so the new view may see a record twice but must
not miss one. The handover:

0. Claim: the swap records itself on the view pointer (``swap``: an id, its owner, host and
   pid, and a heartbeat it refreshes every ``owners.HEARTBEAT`` seconds until it ends). One
   swap runs at a time, and no drop of the view can start from now on (services.views).
1. Catch up: the new view is fed the records after its ``reached`` offsets (load, fold,
   save, as the projector does) until it is nearly level with the topic. The live projector
   meanwhile writes the live view only.
2. ``next`` is set on the view pointer: from then on every projector batch writes the live
   view *and* the new one. A batch looks the pointer up after its records were fetched, so a
   batch that missed ``next`` was fetched before ``next`` was set.
3. The topic's end offsets E are read *after* ``next`` was set, read committed. Every record
   a batch that missed ``next`` holds was committed before E was read, so lies below E; the
   new view is caught up to E here. Every record at E or beyond reaches the projector in a
   batch that sees ``next``, and is written to the new view by it.
4. The pointer flips, conditional on the swap's id: the new view is live, ``next`` and the
   swap record are cleared, and the pointer keeps the previous view, the flip's time and the
   group's committed offsets read just before it (what the previous view is known to hold),
   marked unsettled. The API follows within ``POINTER_TTL``; until then it answers from the
   old view, which is complete up to the flip. Each request is answered from one view.
5. Settle: the catalog entries are told (the new view live since the flip, the old one
   retired then, with those offsets), from the pointer alone (``ViewCatalog.settle``), which
   ``swap``, ``status`` and ``gc`` run first too.

Interrupted (Ctrl-C, SIGTERM, an error) before the flip, the swap clears its record and
``next``; the live view never changed. Killed, it clears nothing. What it leaves at each step,
named by the failpoints the fault tests kill it at (services.failpoints):

- ``swap.before_next`` (caught up, ``next`` not set): a dead swap record; nothing else.
- ``swap.handover`` (once E is read, and after each chunk of that catch-up: ``:N``) and
  ``swap.before_flip`` (caught up to E): a dead handover with ``next`` set, so every
  projector batch keeps writing both views: still exact, only slower.
- ``swap.after_flip``: the new view is live; the catalog does not say so yet.
- ``swap.settle``: the new view's entry says so, the previous view's not yet.

A swap is dead when its process is gone from this host or its heartbeat is older than
``owners.STALE`` (the rule a rebuild is judged by, services.owners); ``status`` shows it. Then:

- ``swap NAME`` of the same view resumes it: it takes the record over, conditional on the
  dead swap's id (of two commands resuming at once one wins, the other is refused), reads
  the end offsets again and goes on from step 1, or from step 3 if ``next`` was set. That is
  gap-free: ``next`` has been set all along since the dead swap set it, before it read its E,
  so step 3's argument holds with the later end offsets E' >= E: a batch that missed ``next``
  was fetched before ``next`` was set, so before E' was read, and its records lie below E';
  the view is caught up to E' from its ``reached`` offsets, which only ever pass records the
  view was given.
- ``swap OTHER`` clears the dead swap first (conditional on its id), then swaps.
- ``swap --abort`` clears it (:func:`abort`).

A swapper that only seemed dead (it hung, and another command took its swap over or aborted
it) can do no harm when it wakes: its heartbeat, ``next`` and flip are conditional on its own
swap id and fail, so it stops; the records it applied meanwhile are applied again by whoever
goes on, which the fold absorbs.

Why this module is longer than ~200 lines: the swap's handover protocol (catch-up, next,
handover, flip, settle) and its gap-free argument, above, are one piece; the store's side of
each step is in services.mongo.views.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.progress import Reporter
from consumers.replay import read_range, to_record
from consumers.topics import committed_offsets, reader, topic_offsets
from services import owners
from services.decoding import Bounds
from services.failpoints import reach
from services.mongo.bootstrap import Services
from services.ports import ViewCatalog
from services.projection import FOLD_VERSION
from services.projector import Projector, only
from services.views import READY, Handover, Pointer, View, ViewError

CLOSE_ENOUGH = 2000  # records behind: stop the first catch-up and start the handover
BATCH = 2000
ROUNDS = 20  # the stream may outpace a catch-up; after this many, hand over anyway

Tick = Callable[[], Awaitable[None]]  # called after each chunk a catch-up applies


async def swap(services: Services, name: str, reporter: Reporter) -> dict[str, Any]:
    """Make ``name`` the live view, or resume a dead swap to it; return what was done."""
    settings, catalog = services.settings, services.catalog
    await catalog.settle()
    view = await catalog.require(name)
    pointer = await catalog.pointer()
    if view.name == pointer.live:
        reporter.note(f"{view.name!r} is the live view already")
        return {"live": view.name, "already_live": True, "caught_up_records": 0}
    _check(view, settings.topic)
    handover, resumed = await _claim(catalog, view.name, pointer, reporter)
    try:  # read again, now that no drop can start: a drop (or a new rebuild) may have won
        view = await catalog.require(view.name)
        _check(view, settings.topic)
    except ViewError:
        await catalog.abort_swap(handover)
        raise
    projector = Projector(only(services.store_of(view)), bounds=Bounds.from_settings(settings))
    beat = Heartbeat(catalog, handover)

    async def in_handover() -> None:
        await beat()
        reach("swap.handover")

    consumer = reader(settings, max_partition_fetch_bytes=8 * 1024 * 1024)
    applied = 0
    try:
        await consumer.start()
        if not (resumed and pointer.next == view.name):
            applied += await _approach(consumer, projector, services, view, reporter, beat)
            reach("swap.before_next")
            await catalog.begin_swap(handover, view.fold_version)
        end = (await topic_offsets(consumer, settings.topic)).end  # after `next` is set
        reporter.phase("handover", _behind(view, end))
        reach("swap.handover")
        applied += await _catch_up(consumer, projector, services, view, end, reporter, in_handover)
        reach("swap.before_flip")
        # the old view got every record the group committed before the flip (and maybe more):
        # swapping back to it catches up from there
        committed = await committed_offsets(settings)
        await catalog.finish_swap(handover, pointer.live, view.fold_version, committed)
    except BaseException:
        with contextlib.suppress(Exception):
            await catalog.abort_swap(handover)
        raise
    finally:
        await consumer.stop()
    reach("swap.after_flip")
    await catalog.settle()
    return {
        "live": view.name,
        "previous": pointer.live,
        "caught_up_records": applied,
        "resumed": resumed,
    }


async def abort(services: Services, name: str | None, force: bool) -> dict[str, Any]:
    """Clear the swap in progress (``swap --abort``), ``next`` with it: the projector writes the
    live view alone again, and the view keeps what it was given (a later swap catches it up
    from its ``reached`` offsets). A swap whose command still runs is cleared only with
    ``force``; that command then stops at its next heartbeat or at its flip, without
    flipping. ``name``, if given, must be the view of the swap in progress."""
    catalog = services.catalog
    await catalog.settle()
    current = (await catalog.pointer()).swap
    if current is None:
        return {"aborted": None, "note": "no swap in progress"}
    if name is not None and name != current.view:
        raise ViewError(f"the swap in progress is to {current.view!r}, not {name!r}")
    running = not current.dead()
    if running and not force:
        raise ViewError(
            f"the swap to {current.view!r} is running ({current.describe()}): stop that "
            "command (Ctrl-C puts the pointer back), or add --force to clear it anyway (it "
            "then stops without flipping)"
        )
    if not await catalog.abort_swap(current):
        raise ViewError(
            "the swap changed meanwhile (it flipped, or another command took it over or "
            "cleared it): see `threadview-rebuild status`"
        )
    return {"aborted": current.view, "owner": current.owner, "was_running": running}


async def _claim(
    catalog: ViewCatalog, name: str, pointer: Pointer, reporter: Reporter
) -> tuple[Handover, bool]:
    """Record this swap on the pointer: a dead swap to the same view is taken over (True), a
    dead one to another view cleared first; a running one refuses."""
    current = pointer.swap
    if current is not None:
        if not current.dead():
            raise ViewError(
                f"a swap to {current.view!r} is in progress ({current.describe()}): wait for "
                "it, or stop it"
            )
        if current.view == name:
            reporter.note(f"resuming the swap to {name} that died ({current.describe()})")
            return await catalog.take_over(current, owners.me()), True
        reporter.note(f"clearing the dead swap to {current.view} ({current.describe()})")
        await catalog.abort_swap(current)  # if another command did first, the claim says so
    return await catalog.claim_swap(name, pointer.live, owners.me()), False


class Heartbeat:
    """Refreshes the swap record's heartbeat, at most every ``owners.HEARTBEAT`` seconds;
    raises ViewError once the record is no longer this swap's (aborted, or taken over)."""

    def __init__(self, catalog: ViewCatalog, handover: Handover) -> None:
        self.catalog, self.handover = catalog, handover
        self.last = time.monotonic()

    async def __call__(self) -> None:
        if time.monotonic() - self.last >= owners.HEARTBEAT:
            await self.catalog.beat(self.handover)
            self.last = time.monotonic()


def _check(view: View, topic: str) -> None:
    if view.state != READY:
        raise ViewError(f"view {view.name!r} is {view.state}, not ready")
    if view.point_in_time:
        raise ViewError(f"view {view.name!r} is a point-in-time view: it cannot go live")
    if view.topic not in (None, topic):
        raise ViewError(f"view {view.name!r} was built from {view.topic}, not {topic}")
    if view.fold_version != FOLD_VERSION:
        raise ViewError(
            f"view {view.name!r} was built by fold version {view.fold_version}, this is "
            f"{FOLD_VERSION}: rebuild it"
        )


def _behind(view: View, end: dict[int, int]) -> int:
    return sum(max(0, o - view.reached.get(p, 0)) for p, o in end.items())


async def _approach(
    consumer: AIOKafkaConsumer,
    projector: Projector,
    services: Services,
    view: View,
    reporter: Reporter,
    tick: Tick,
) -> int:
    """Step 1: catch the view up until it is nearly level with the topic."""
    applied = 0
    for _ in range(ROUNDS):
        end = (await topic_offsets(consumer, services.settings.topic)).end
        behind = _behind(view, end)
        reporter.phase("catch up", behind)
        applied += await _catch_up(consumer, projector, services, view, end, reporter, tick)
        if behind <= CLOSE_ENOUGH:
            break
    return applied


async def _catch_up(
    consumer: AIOKafkaConsumer,
    projector: Projector,
    services: Services,
    view: View,
    end: dict[int, int],
    reporter: Reporter,
    tick: Tick,
) -> int:
    """Apply the records from the view's ``reached`` offsets to ``end``; advance ``reached``
    once a partition is applied up to its end."""
    done = 0
    for partition, stop in sorted(end.items()):
        tp = TopicPartition(services.settings.topic, partition)
        start = view.reached.get(partition, 0)
        async for raws in read_range(consumer, tp, start, stop, max_records=BATCH):
            await projector.handle([to_record(r) for r in raws])
            done += len(raws)
            reporter.advance(done)
            await tick()
        view.reached[partition] = max(start, stop)
        await services.catalog.update(
            view.name, reached=view.reached, heartbeat_at=datetime.now(UTC)
        )
    return done
