"""GET /v1/threads/watch: the caller's list, live, as Server-Sent Events (services.watching).

Takes the list's filters. The stream opens with ``position`` (the token it starts from), then
``thread`` (the thread as the list shows it), ``removed`` (``{"id"}``: it left the caller's
filters) and ``bookmark`` (the position, when nothing happened for a while); each event's id is
a consistency token, so a client that reconnects with ``Last-Event-ID`` (or ``?since=``) is told
exactly what changed after it. ``reset`` says "list again" (a resume from too far back, a token
of another view, a client too slow to take its events) and ends the stream. Bounded: watchers
per process and per key (one more: 503 ``overloaded``); a watch holds no request slot of
api.limits and has no store deadline of its own (its reads are the feed's).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import CallerDep
from api.errors import ERROR_RESPONSES, ApiError
from api.models import Thread
from api.params import list_params
from services.applied import Applied
from services.consistency import BadToken, parse
from services.query import ThreadQuery
from services.settings import Settings
from services.watching import Event, Feed

PATH = "/v1/threads/watch"
log = logging.getLogger(__name__)


def _line(event: Event) -> str:
    data: Any = event.data
    if event.kind == "thread":
        data = Thread.model_validate(event.data).model_dump(mode="json")
    return f"event: {event.kind}\nid: {event.id}\ndata: {json.dumps(data)}\n\n"


def install(app: FastAPI, settings: Settings) -> None:
    """The route; call it before the routes of ``/v1/threads/{thread_id}``. The lifespan sets
    ``app.state.feed`` and runs :func:`drive`."""
    per_key: dict[str, int] = {}

    @app.get(PATH, responses=ERROR_RESPONSES, response_class=StreamingResponse)
    async def watch_threads(
        request: Request,
        caller: CallerDep,
        query: Annotated[ThreadQuery, Depends(list_params)],
        since: Annotated[str | None, Query(max_length=65536)] = None,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        """Follow the list (with its filters) as Server-Sent Events; resume with
        Last-Event-ID or since."""
        feed: Feed = request.app.state.feed
        applied: Applied = request.app.state.applied
        text = last_event_id or since
        try:
            token = parse(text) if text else None
        except BadToken as exc:
            raise ApiError(
                400, f"since: {exc}", "invalid_request_error", "since", "watch_since_invalid"
            ) from None
        if len(feed.watchers) >= settings.api_max_watchers:
            message = "the API has as many watchers as it allows"
            raise ApiError(503, message, "api_error", code="overloaded")
        if per_key.get(caller.id, 0) >= settings.api_max_watchers_per_key:
            message = "this key has as many watchers as it may"
            raise ApiError(503, message, "api_error", code="overloaded")
        if not feed.watchers:  # the first: the feed starts from what is applied now
            await feed.start(await applied.read_now())
        per_key[caller.id] = per_key.get(caller.id, 0) + 1
        applied.follow()
        events = feed.follow(caller.scope, query, token, settings.api_watch_bookmark_seconds)

        async def stream() -> AsyncIterator[str]:
            try:
                async for event in events:
                    yield _line(event)
            finally:
                await events.aclose()  # the feed forgets the watcher now, not when collected
                applied.unfollow()
                per_key[caller.id] -= 1
                if not per_key[caller.id]:
                    del per_key[caller.id]

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
        )


async def drive(feed: Feed, applied: Applied) -> None:
    """Advance the feed to what is applied after each read of the offsets (the shared watcher
    reads every ``interval`` while anyone watches: services.applied)."""
    failing = False  # logged once a spell (a read every 20 ms would flood the log)
    while True:
        await applied.next_read()
        if feed.watchers:
            try:
                await feed.advance(applied.offsets)
            except Exception as exc:  # noqa: BLE001 - the log or the store away: next read
                if not failing:
                    log.warning("the watch could not advance (tried again each read): %r", exc)
                failing = True
            else:
                if failing:
                    log.info("the watch advances again")
                failing = False
