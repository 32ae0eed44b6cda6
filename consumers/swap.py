"""Makes a rebuilt view the live one while events keep arriving, with no gap.

The fold is idempotent and order-independent, so the new view may see a record twice but must
not miss one. The handover:

1. Catch up: the new view is fed the records after its rebuild's end offsets (load, fold,
   save, as the projector does) until it is nearly level with the topic. The live projector
   meanwhile writes the live view only.
2. ``next`` is set on the view pointer: from then on every projector batch writes the live
   view *and* the new one. A batch looks the pointer up after its records were fetched, so a
   batch that missed ``next`` was fetched before ``next`` was set.
3. The topic's end offsets E are read *after* ``next`` was set, read committed. Every record
   a batch that missed ``next`` holds was committed before E was read, so lies below E; the
   new view is caught up to E here. Every record at E or beyond reaches the projector in a
   batch that sees ``next``, and is written to the new view by it.
4. The pointer flips: the new view is live, ``next`` is cleared. The API follows within
   ``POINTER_TTL``; until then it answers from the old view, which is complete up to the
   flip. Each request is answered from one view.

Interrupted before the flip, the swap clears ``next``; the live view never changed.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.progress import Reporter
from consumers.replay import read_range, to_record
from consumers.topics import committed_offsets, reader, topic_offsets
from services.bootstrap import Services
from services.decoding import Bounds
from services.projection import FOLD_VERSION
from services.projector import Projector, only
from services.views import READY, View, ViewError

CLOSE_ENOUGH = 2000  # records behind: stop the first catch-up and start the handover
BATCH = 2000


async def swap(services: Services, name: str, reporter: Reporter) -> dict[str, Any]:
    """Make ``name`` the live view; return what was done."""
    settings, catalog = services.settings, services.catalog
    view = await catalog.require(name)
    live = (await catalog.pointer()).live
    _check(view, live, settings.topic)
    projector = Projector(only(services.store_of(view)), bounds=Bounds.from_settings(settings))
    consumer = reader(settings, max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    applied = 0
    try:
        for _ in range(20):  # the stream may outpace a catch-up; then hand over anyway
            end = (await topic_offsets(consumer, settings.topic)).end
            behind = _behind(view, end)
            reporter.phase("catch up", behind)
            applied += await _catch_up(consumer, projector, services, view, end, reporter)
            if behind <= CLOSE_ENOUGH:
                break
        committed = await committed_offsets(settings)
        await catalog.begin_swap(name, live)
        try:
            end = (await topic_offsets(consumer, settings.topic)).end  # after `next` is set
            reporter.phase("handover", _behind(view, end))
            applied += await _catch_up(consumer, projector, services, view, end, reporter)
            await catalog.finish_swap(name, live)
        except BaseException:
            with contextlib.suppress(Exception):
                await catalog.abort_swap(name)
            raise
    finally:
        await consumer.stop()
    # the old view got every record the group had committed before the handover began (and
    # maybe more): swapping back to it catches up from there
    await catalog.update(live, reached=committed)
    return {"live": name, "previous": live, "caught_up_records": applied}


def _check(view: View, live: str, topic: str) -> None:
    if view.name == live:
        raise ViewError(f"{view.name!r} is the live view already")
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


async def _catch_up(
    consumer: AIOKafkaConsumer,
    projector: Projector,
    services: Services,
    view: View,
    end: dict[int, int],
    reporter: Reporter,
) -> int:
    """Apply the records from the view's ``reached`` offsets to ``end``; advance ``reached``."""
    done = 0
    for partition, stop in sorted(end.items()):
        tp = TopicPartition(services.settings.topic, partition)
        start = view.reached.get(partition, 0)
        async for raws in read_range(consumer, tp, start, stop, max_records=BATCH):
            await projector.handle([to_record(r) for r in raws])
            done += len(raws)
            reporter.advance(done)
        view.reached[partition] = max(start, stop)
        await services.catalog.update(
            view.name, reached=view.reached, heartbeat_at=datetime.now(UTC)
        )
    return done
