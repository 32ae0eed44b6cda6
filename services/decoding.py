"""Turns one Kafka record (key, value, headers) into an event, an unknown type, or a rejection."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Union

from pydantic import Discriminator, Tag, TypeAdapter, ValidationError

from services.events import EVENT_TYPES, Envelope, Event

Headers = list[tuple[str, bytes]]

_CE_ATTRIBUTES = ("specversion", "id", "type", "source", "subject", "time", "datacontenttype")


@dataclass(frozen=True)
class Unknown:
    """A well-formed event of a type this service does not know: skipped and counted."""

    type: str


@dataclass(frozen=True)
class Rejected:
    """A record that breaks the contract: it goes to the dead-letter topic with ``reason``."""

    reason: str

    @property
    def code(self) -> str:
        """The kind of breach, for counting: not_utf8, not_json, key_mismatch, invalid_event."""
        for prefix, code in _CODES:
            if self.reason.startswith(prefix):
                return code
        return "invalid_event"


_CODES = (
    ("not valid UTF-8", "not_utf8"),
    ("not valid JSON", "not_json"),
    ("subject does not match", "key_mismatch"),
)


Decoded = Event | Unknown | Rejected


def decode(key: bytes | None, value: bytes | None, headers: Headers) -> Decoded:
    """Decode a record in CloudEvents structured mode, or binary mode when ``ce_*`` headers exist.

    Args:
        key: the record key, which must equal the event's ``subject`` when present.
        value: the record value.
        headers: the record headers.
    """
    try:
        payload = (
            _binary_envelope(value, headers) if _is_binary(headers) else (value or b"").decode()
        )
        event = _ANY_EVENT.validate_json(payload)
    except UnicodeDecodeError as exc:
        return Rejected(f"not valid UTF-8: {exc}")
    except json.JSONDecodeError as exc:
        return Rejected(f"not valid JSON: {exc}")
    except ValidationError as exc:
        return Rejected(_reason(exc))
    if not isinstance(event, EVENT_MODELS):
        return Unknown(event.type)
    if key is not None and key != event.subject.encode():
        return Rejected("subject does not match the record key")
    return event


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
    envelope: dict[str, object] = {}
    for name, raw in headers:
        attribute = name.removeprefix("ce_")
        if name.startswith("ce_") and attribute in _CE_ATTRIBUTES:
            envelope[attribute] = raw.decode()
    envelope["data"] = json.loads((value or b"").decode())  # UTF-8 only, as in structured mode
    return json.dumps(envelope).encode()


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        if error["type"] == "json_invalid":
            return f"not valid JSON: {error['ctx']['error']}"
        # the first location is the discriminator's tag (the event type): not worth repeating
        where = ".".join(str(p) for p in error["loc"][1:]) or "event"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
