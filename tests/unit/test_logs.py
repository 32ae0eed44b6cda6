"""Log lines: JSON that parses, request ids, aiokafka's self-healing errors not shown as errors."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services.logs import configure, request_id
from services.settings import Settings

Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def json_lines() -> Iterator[Lines]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    written = io.StringIO()
    configure(Settings.model_construct(log_format="json", log_level="INFO"), written)
    yield lambda: [json.loads(line) for line in written.getvalue().splitlines()]
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


def test_lines_are_json_with_their_fields_and_request_id(
    json_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    token = request_id.set("req-1")
    logging.getLogger("threadview.api").info("GET /v1/threads 200", extra={"topic": "t"})
    request_id.reset(token)
    logging.getLogger("threadview.api").warning("no request here")

    first, second = json_lines()
    assert first["level"] == "INFO" and first["request_id"] == "req-1" and first["topic"] == "t"
    assert first["message"] == "GET /v1/threads 200" and first["logger"] == "threadview.api"
    assert second["level"] == "WARNING" and "request_id" not in second


def test_aiokafka_errors_it_retries_by_itself_are_info(
    json_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    coordinator.error(
        "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError"
    )
    coordinator.warning("Marking the coordinator dead (node 1)for group g.")
    coordinator.error("Something else failed")

    transient, dead, real = json_lines()
    assert transient["level"] == "INFO" and dead["level"] == "INFO"
    assert real["level"] == "ERROR"
