"""Read-your-writes for GET /v1/threads and GET /v1/threads/{id} (docs/api.md, "Consistency
tokens"): the ``Consistency-Token`` request header, waited for as RFC 7240's ``Prefer: wait=N``
asks, and the token of what each answer was served from on every response.

A producer that cannot know offsets (an outbox relay) names what it waits for instead:
``Consistency-Thread: <id>`` and, optionally, ``Consistency-Message: <message id>`` wait until
the view shows that thread within the caller's scope (and counts that message), checked for
every such waiter in one read per view and scope whenever the offsets move
(services.applied.Sightings).

A request whose token the view does not hold yet sleeps on the process's one watcher of the
projector's progress (services.applied) for at most ``wait`` seconds, capped by
THREADVIEW_API_MAX_WAIT_SECONDS; then it is answered from the view as it is, with
``Consistency-Stale: true`` (with ``Prefer: handling=strict``, 503 ``not_yet_consistent`` and
``Retry-After`` instead). A token that is malformed, of another view (a rebuild was swapped in:
drop it and list again), or past the topic's end is a 400; one request more than
THREADVIEW_API_MAX_WAITING waiting is a 503 at once.

An ASGI middleware outside api.limits: a request waits *before* it takes one of the requests
in flight and before its store deadline starts, so waiting requests never hold back the
others. The response's token is the offsets known applied after the wait, taken before the
store is read, with the served view's name: a lower bound of what the answer holds.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ErrorDetail
from api.limits import error_body, refuse
from services.applied import Applied, Beyond, TooManyWaiting
from services.consistency import BadToken, Token, parse
from services.settings import Settings

log = logging.getLogger(__name__)

PATHS = "/v1/threads"
HEADER = b"consistency-token"
THREAD, MESSAGE = b"consistency-thread", b"consistency-message"  # a domain wait (Sightings)
_ID = re.compile(rb"[\x21-\x7e]{1,256}")
_WAIT = re.compile(r"(?:^|[,;])\s*wait\s*=\s*(\d{1,9})\s*(?=$|[,;])", re.IGNORECASE)
_STRICT = re.compile(r"(?:^|[,;])\s*handling\s*=\s*strict\s*(?=$|[,;])", re.IGNORECASE)


def preferences(prefer: str) -> tuple[float, bool]:
    """What ``Prefer`` asks of a wait: its seconds (0: none) and whether strict."""
    found = _WAIT.search(prefer)
    return (float(found[1]) if found else 0.0), bool(_STRICT.search(prefer))


class Consistency:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not scope["path"].startswith(PATHS)
            or scope["path"] == "/v1/threads/watch"  # resumed by its own ids (api.watch)
        ):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        applied: Applied | None = getattr(state, "applied", None)
        services = getattr(state, "services", None)
        if applied is None or services is None or services.problem is not None:
            await self.app(scope, receive, send)  # not ready: the route answers why
            return
        headers = dict(scope["headers"])
        try:
            view, _ = await services.served()
        except Exception:  # noqa: BLE001 - the store's trouble: the route answers it
            await self.app(scope, receive, send)
            return
        prefer = headers.get(b"prefer", b"")
        waits: list[bool | tuple[int, ErrorDetail]] = []  # each wait: stale, or its refusal
        if (text := headers.get(HEADER)) is not None:
            waits.append(await self._wait(text, prefer, view, applied))
        if (thread := headers.get(THREAD)) is not None and not _refused(waits):
            waits.append(await self._sight(scope, headers, thread, prefer, services))
        if refusal := _refused(waits):
            status, detail = refusal
            await refuse(send, status, error_body(detail), self.settings.api_retry_after_seconds)
            return
        stale = any(waits)
        served = str(Token(applied.known(), view)).encode()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"consistency-token", served)]
                if stale:
                    extra.append((b"consistency-stale", b"true"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, sending)

    async def _wait(
        self, text: bytes, prefer: bytes, view: str, applied: Applied
    ) -> bool | tuple[int, ErrorDetail]:
        """Whether the answer will be stale, or the refusal (status, error)."""
        try:
            token = parse(text.decode("ascii"))
        except (UnicodeDecodeError, BadToken) as exc:
            return 400, _invalid(f"Consistency-Token: {exc}", "consistency_token_invalid")
        if token.view is not None and token.view != view:
            message = (
                f"Consistency-Token is of view {token.view!r}, and {view!r} is served now (a "
                "rebuild was swapped in): drop the token and list again"
            )
            return 400, _invalid(message, "consistency_token_stale_view")
        seconds, strict = preferences(prefer.decode("latin-1"))
        try:
            held = await applied.wait(token, min(seconds, self.settings.api_max_wait_seconds))
        except Beyond as exc:
            return 400, _invalid(f"Consistency-Token: {exc}", "consistency_token_beyond")
        except TooManyWaiting:
            message = "the API has as many requests waiting for their token as it allows"
            return 503, ErrorDetail(message=message, type="api_error", code="overloaded")
        except Exception as exc:  # noqa: BLE001 - the broker away: answered as it is, stale
            log.warning("could not check a Consistency-Token: %r", exc)
            held = False
        if not held and strict:
            message = "the view does not hold the Consistency-Token yet; retry"
            return 503, ErrorDetail(message=message, type="api_error", code="not_yet_consistent")
        return not held

    async def _sight(
        self, scope: Scope, headers: dict[bytes, bytes], thread: bytes, prefer: bytes, services: Any
    ) -> bool | tuple[int, ErrorDetail]:
        """The domain wait: whether the answer will be stale, or the refusal. Only for a caller
        whose key authenticates, within its scope (no answer says anything of a thread the key
        may not see: it waits, and is stale)."""
        message = headers.get(MESSAGE)
        names = [thread] + ([message] if message is not None else [])
        if not all(_ID.fullmatch(n) for n in names):
            detail = (
                "Consistency-Thread and Consistency-Message are ids of 1-256 printable characters"
            )
            return 400, _invalid(detail, "consistency_await_invalid", "Consistency-Thread")
        key = headers.get(b"x-api-key")
        caller = await services.key_cache.authenticate(key.decode("latin-1")) if key else None
        if caller is None:
            return False  # the route answers 401
        wanted = (thread.decode(), message.decode() if message is not None else None)
        seconds, strict = preferences(prefer.decode("latin-1"))
        _, store = await services.served()
        try:
            shown = await scope["app"].state.sightings.wait(
                store, caller.scope, wanted, min(seconds, self.settings.api_max_wait_seconds)
            )
        except TooManyWaiting:
            detail = "the API has as many requests waiting as it allows"
            return 503, ErrorDetail(message=detail, type="api_error", code="overloaded")
        if not shown and strict:
            detail = "the view does not show that thread (or message) yet; retry"
            return 503, ErrorDetail(message=detail, type="api_error", code="not_yet_consistent")
        return not shown


def _invalid(message: str, code: str, param: str = "Consistency-Token") -> ErrorDetail:
    return ErrorDetail(message=message, type="invalid_request_error", param=param, code=code)


def _refused(waits: list[bool | tuple[int, ErrorDetail]]) -> tuple[int, ErrorDetail] | None:
    return next((w for w in waits if isinstance(w, tuple)), None)


def install(app: FastAPI, settings: Settings) -> None:
    """Call it after api.limits.install (middleware added later wraps the earlier)."""
    app.add_middleware(Consistency, settings=settings)
