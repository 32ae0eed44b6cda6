"""Turns one Kafka record (key, value, headers) into an event, an unknown type, or a rejection.

:func:`decode` is total: whatever bytes and headers a record holds, it returns one of the three
and never raises, so no record can stop a partition. Every rejection names its ``code`` (the
dead-letter reason's prefix and the metrics label: a fixed set) and a detail for people.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Union

import pydantic_core
from pydantic import Discriminator, Tag, TypeAdapter, ValidationError

from services.events import EVENT_TYPES, Envelope, Event

if TYPE_CHECKING:
    from services.settings import Settings

Headers = list[tuple[str, bytes]]

_CE_ATTRIBUTES = ("specversion", "id", "type", "source", "subject", "time", "datacontenttype")

# every reason a record is dead-lettered for (docs/projector.md, "Dead-letter reasons")
REJECTION_CODES = (
    "missing_key",  # the record has no key: the contract requires the thread id
    "too_large",  # value and headers together over the record limit
    "not_utf8",
    "not_json",
    "invalid_event",  # a missing field, a wrong type, a value over its limit
    "key_mismatch",  # subject is not the record key
    "time_before_floor",
    "time_in_future",  # dated after its record's broker timestamp plus the allowed skew
    "create_conflict",  # a second thread.created that differs from the one that made the thread
    "write_failed",  # the store refused the thread's write for good (services.projector)
)


@dataclass(frozen=True)
class Unknown:
    """A well-formed event of a type this service does not know: skipped and counted."""

    type: str


@dataclass(frozen=True)
class Rejected:
    """A record that breaks the contract: it goes to the dead-letter topic with ``reason``."""

    code: str  # one of REJECTION_CODES
    detail: str

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}"


@dataclass(frozen=True)
class Bounds:
    """What a record may be, beyond the event models' own field limits.

    Args:
        max_record_bytes: key, value and headers together.
        max_skew: how far after its record's broker timestamp an event may be dated. Topics
            the service creates stamp records with ``LogAppendTime``, so every replay of a
            record judges it the same way.
        time_floor: no event is dated before this. A fixed date, not one relative to the
            broker timestamp, so that a backfill of old threads stays possible; 2000-01-01 is
            before any thread this platform can hold, and far from the calendar's edges
            (year 1, the epoch) where a wrong clock or a zero value lands.
    """

    max_record_bytes: int = 256 * 1024
    max_skew: timedelta = timedelta(minutes=5)
    time_floor: datetime = datetime(2000, 1, 1, tzinfo=UTC)

    @classmethod
    def from_settings(cls, settings: Settings) -> Bounds:
        return cls(
            max_record_bytes=settings.max_record_bytes,
            max_skew=timedelta(seconds=settings.max_clock_skew_seconds),
            time_floor=settings.event_time_floor,
        )


DEFAULT_BOUNDS = Bounds()

Decoded = Event | Unknown | Rejected


def decode(
    key: bytes | None,
    value: bytes | None,
    headers: Headers,
    timestamp: int | None = None,
    bounds: Bounds = DEFAULT_BOUNDS,
) -> Decoded:
    """Decode a record in CloudEvents structured mode, or binary mode when ``ce_*`` headers exist.

    Never raises: anything that cannot become a valid event is a :class:`Rejected`.

    Args:
        key: the record key, which must equal the event's ``subject``.
        value: the record value.
        headers: the record headers.
        timestamp: the record's broker timestamp in milliseconds (None or negative: unknown,
            and then an event's time is not checked against it).
        bounds: the limits beyond the event models'.
    """
    try:
        return _decode(key, value, headers, timestamp, bounds)
    except Exception as exc:  # noqa: BLE001 - a record must never stop the partition
        return Rejected("invalid_event", f"undecodable record ({type(exc).__name__})")


def _decode(
    key: bytes | None,
    value: bytes | None,
    headers: Headers,
    timestamp: int | None,
    bounds: Bounds,
) -> Decoded:
    size = len(key or b"") + len(value or b"")
    size += sum(len(name.encode(errors="replace")) + len(raw or b"") for name, raw in headers)
    if size > bounds.max_record_bytes:
        return Rejected(
            "too_large", f"the record is {size} bytes, over the limit of {bounds.max_record_bytes}"
        )
    if key is None:
        return Rejected("missing_key", "the record has no key (the thread id)")
    try:
        payload = (
            _binary_envelope(value, headers) if _is_binary(headers) else (value or b"").decode()
        )
        event = _ANY_EVENT.validate_json(payload)
    except UnicodeDecodeError as exc:
        return Rejected("not_utf8", f"not valid UTF-8: {exc}")
    except ValueError as exc:  # pydantic_core's JSON errors; ValidationError is a ValueError too
        if isinstance(exc, ValidationError):
            return _rejected(exc)
        return Rejected("not_json", f"not valid JSON: {exc}")
    if not isinstance(event, EVENT_MODELS):
        return Unknown(event.type)
    if key != event.subject.encode():
        return Rejected("key_mismatch", "subject does not match the record key")
    if event.time < bounds.time_floor:
        return Rejected(
            "time_before_floor",
            f"time {_iso(event.time)} is before the floor {_iso(bounds.time_floor)}",
        )
    if timestamp is not None and timestamp >= 0:
        appended = datetime.fromtimestamp(timestamp / 1000, UTC)
        if event.time > appended + bounds.max_skew:
            return Rejected(
                "time_in_future",
                f"time {_iso(event.time)} is more than {bounds.max_skew.total_seconds():.0f} s "
                f"after the record's timestamp {_iso(appended)}",
            )
    return event


def _iso(time: datetime) -> str:
    return time.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event_kind(raw: object) -> str:
    kind = raw.get("type") if isinstance(raw, dict) else getattr(raw, "type", None)
    return kind if isinstance(kind, str) and kind in EVENT_TYPES else "unknown"


# One parse per record: known types validate as their model, anything else as a bare envelope.
_ANY_EVENT: TypeAdapter[Event | Envelope] = TypeAdapter(
    Annotated[  # type: ignore[arg-type]
        Union[  # noqa: UP007 - Tag needs the members spelled out
            tuple(Annotated[model, Tag(kind)] for kind, model in EVENT_TYPES.items())
            + (Annotated[Envelope, Tag("unknown")],)
        ],
        Discriminator(_event_kind),
    ]
)
EVENT_MODELS = tuple(EVENT_TYPES.values())


def _is_binary(headers: Headers) -> bool:
    return any(name == "ce_specversion" for name, _ in headers)


def _binary_envelope(value: bytes | None, headers: Headers) -> bytes:
    """The structured form of a binary-mode record, parsed by the same bounded parser.

    ``data`` goes through pydantic-core's JSON parser (nesting and number sizes bounded, as in
    structured mode), never :func:`json.loads`, whose recursion and integer limits raise.
    """
    envelope: dict[str, object] = {}
    for name, raw in headers:
        attribute = name.removeprefix("ce_")
        if name.startswith("ce_") and attribute in _CE_ATTRIBUTES:
            envelope[attribute] = raw.decode()
    data = (value or b"").decode()  # UTF-8 only, as in structured mode
    envelope["data"] = pydantic_core.from_json(data, allow_inf_nan=False)
    return pydantic_core.to_json(envelope)


def _rejected(exc: ValidationError) -> Rejected:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        if error["type"] == "json_invalid":
            return Rejected("not_json", f"not valid JSON: {error['ctx']['error']}")
        # the first location is the discriminator's tag (the event type): not worth repeating
        where = ".".join(str(p) for p in error["loc"][1:]) or "event"
        parts.append(f"{where}: {error['msg']}"[:200])
    return Rejected("invalid_event", "; ".join(parts))
