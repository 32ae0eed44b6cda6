"""Logging for every process: one line per event of interest, plain text or JSON, never colour.

``THREADVIEW_LOG_FORMAT=json`` writes one JSON object per line (python-json-logger), with the
fields a line carries (``request_id`` on the API, ``topic``/``partitions`` on the projector's
batch lines) as keys of their own; ``text`` (the default) writes the same as plain text. No
ANSI codes either way: FastStream and uvicorn log through these handlers, not their own
coloured ones. The level comes from ``THREADVIEW_LOG_LEVEL``.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

from services.settings import Settings

# the request being served (API): added to every line logged while it is
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# C0 controls, DEL, C1 controls (U+0085 and U+009B among them), and the Unicode line and
# paragraph separators: what could end a line, forge another, or steer a terminal (ANSI
# sequences begin with ESC, U+001B, or CSI, U+009B)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``,
    ``\\u2028``): one line, and nothing a terminal would act on. Used wherever text that came
    from outside (a request path, a producer's key, header or value) is logged or printed."""
    return _CONTROLS.sub(_escaped, text)


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        current = request_id.get()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current
        return True


# aiokafka logs these at WARNING or ERROR although it retries them and they pass on their own:
# a group coordinator not found yet or moved (a broker still creating its offsets topic right
# after it started, a leadership change), a group rebalancing, a topic just created and not
# yet in the metadata.
# They are INFO here, so that a WARNING or ERROR line always means something to look at.
_TRANSIENT = (
    "GroupCoordinatorNotAvailableError",
    "NotCoordinatorForGroupError",
    "Marking the coordinator dead",
    "is either not started or not valid",  # a heartbeat to such a coordinator
    "because it is rebalancing",  # a heartbeat during a rebalance: it rejoins
    "not found in cluster metadata",
)


class _Transient(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO and record.name.startswith("aiokafka"):
            message = record.getMessage()
            if any(text in message for text in _TRANSIENT):
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class _Text(logging.Formatter):
    """Plain text, one line per event: control characters in the message and its arguments
    are escaped (services.logs.printable), so a logged value cannot forge a line; a traceback,
    when there is one, follows on lines of its own. A request id, when there is one, ends the
    line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} request_id={rid}" if rid else line


def configure(settings: Settings, stream: TextIO | None = None) -> None:
    """Route every logger (ours, FastStream's, aiokafka's, uvicorn's) to one handler, on
    ``stream`` (stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_RequestId())
    handler.addFilter(_Transient())
    if settings.log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(_Text(TEXT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "faststream", "aiokafka"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []  # their own (coloured) handlers go; lines reach the root's
        logger.propagate = True
    # aiokafka reports every routine coordinator change at INFO; its warnings still show
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
