"""Writes the event contract's JSON Schema and the projector's AsyncAPI document to docs/.

Run ``python -m consumers.contract`` after changing services/events.py; a unit test checks
that the files in docs/ are what this generates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from faststream.specification import AsyncAPI
from pydantic import Field, TypeAdapter

from consumers.projector import create_app
from services.decoding import DEFAULT_BOUNDS, REJECTION_CODES
from services.events import Event
from services.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"


def event_schema() -> dict[str, Any]:
    schema = TypeAdapter(Annotated[Event, Field(discriminator="type")]).json_schema()
    bounds = DEFAULT_BOUNDS
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "threadview/events/v1.1",
        "title": "Thread event (contract v1.1)",
        "description": "One record value on the thread events topic: a CloudEvents 1.0 event "
        "in structured mode. Unknown fields are ignored; unknown types are skipped. Beyond "
        "the field limits below (maxLength, maxItems, maxProperties), by default: the record "
        f"(key, value and headers) is at most {bounds.max_record_bytes} bytes; `time` is not "
        f"before {bounds.time_floor.date().isoformat()} nor more than "
        f"{bounds.max_skew.total_seconds():.0f} s after the record's broker timestamp; the "
        "record key is required and equals `subject`; a thread's owner comes from its first "
        "thread.created in log order, and a later thread.created that differs is refused. "
        "A refused record goes to the dead-letter topic with the header dlq.reason "
        f"'<code>: <detail>', code one of: {', '.join(REJECTION_CODES)}.",
        "x-threadview-bounds": {
            "max_record_bytes": bounds.max_record_bytes,
            "time_floor": bounds.time_floor.isoformat().replace("+00:00", "Z"),
            "max_clock_skew_seconds": bounds.max_skew.total_seconds(),
            "rejection_codes": list(REJECTION_CODES),
        },
        **schema,
    }


def asyncapi() -> dict[str, Any]:
    """FastStream's AsyncAPI 3 document, with the event schema as the message payload.

    The handler reads raw records (so that bad ones reach the dead-letter topic instead of
    failing the batch), so FastStream cannot infer the payload: it is filled in here.
    """
    app = create_app(Settings.model_construct())  # defaults, whatever the environment says
    assert app.broker is not None  # create_app always gives the app its broker
    document: dict[str, Any] = (
        AsyncAPI(
            app.broker,
            title="threadview projector",
            version="1.0.0",
            description="Consumes thread events; see docs/events.schema.json.",
        )
        .to_specification()
        .to_jsonable()
    )
    schema = event_schema()
    definitions = schema.pop("$defs")
    document["components"]["schemas"] = {**definitions, "ThreadEvent": _local_refs(schema)}
    for message in document["components"]["messages"].values():
        message["payload"] = {"$ref": "#/components/schemas/ThreadEvent"}
        message["contentType"] = "application/cloudevents+json"
    document["components"]["schemas"] = _local_refs(document["components"]["schemas"])
    return document


def _local_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" else _local_refs(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_local_refs(v) for v in node]
    return node


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main() -> None:
    (DOCS / "events.schema.json").write_text(render(event_schema()))
    (DOCS / "asyncapi.json").write_text(render(asyncapi()))
    print(f"wrote {DOCS / 'events.schema.json'} and {DOCS / 'asyncapi.json'}")


if __name__ == "__main__":
    main()
