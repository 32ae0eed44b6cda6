"""The contract files in docs/ are exactly what consumers/contract.py generates."""

from __future__ import annotations

from consumers.contract import DOCS, asyncapi, event_schema, render


def test_event_schema_file_is_current() -> None:
    assert (DOCS / "events.schema.json").read_text() == render(event_schema()), (
        "run: python -m consumers.contract"
    )


def test_asyncapi_file_is_current() -> None:
    assert (DOCS / "asyncapi.json").read_text() == render(asyncapi()), (
        "run: python -m consumers.contract"
    )
