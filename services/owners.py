"""Who runs a long command that leaves a record behind, and when that command counts as dead.

A rebuild (its catalog entry) and a swap (the handover on the view pointer) record their
owner, ``{"host", "pid"}``, and refresh a heartbeat while they work. Another command judges
them by one rule, :func:`dead`: the owner is dead when it ran on this host and its process is
gone (known at once: ``kill -9`` needs no wait), or when its heartbeat is older than
:data:`STALE` (another host, or a process that hangs, or a pid the system gave to another
process since). A live owner refreshes every :data:`HEARTBEAT` seconds, far below STALE.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

HEARTBEAT = 2.0  # seconds between a running command's heartbeats
STALE = timedelta(seconds=30)  # no heartbeat for this long: dead, wherever it ran


def me() -> dict[str, Any]:
    """This process, as an owner."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def dead(owner: Mapping[str, Any], beat: datetime | None, now: datetime | None = None) -> bool:
    """Whether the command ``owner`` ran, last heard of at ``beat``, is gone (no owner or no
    heartbeat recorded: dead, it cannot be waited for)."""
    if not owner or beat is None:
        return True
    if owner.get("host") == socket.gethostname() and not alive(owner.get("pid")):
        return True
    return (now or datetime.now(UTC)) - beat > STALE


def alive(pid: int | None) -> bool:
    """Whether a process of this host has that pid (someone else's counts)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(owner: Mapping[str, Any], beat: datetime | None, now: datetime | None = None) -> str:
    """``pid 123 on host h, last heartbeat 4 s ago``, for the operator."""
    who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}" if owner else "no owner"
    if beat is None:
        return f"{who}, no heartbeat"
    return f"{who}, last heartbeat {((now or datetime.now(UTC)) - beat).total_seconds():.0f} s ago"
