"""Failpoints: named steps of a protocol where a test can have the process killed (SIGKILL).

A protocol that must survive ``kill -9`` between any two of its writes (the swap's handover,
the rebuild's flushes and checkpoints) names those steps with :func:`reach`. Nothing happens
unless ``THREADVIEW_FAILPOINT`` names the step, as ``step`` (the first time it is reached) or
``step:N`` (the N-th time in this process): then the process — and, from a rebuild's worker,
the rebuild that started it — dies on the spot, with no clean-up, exactly as under SIGKILL.
The fault tests set it to kill a command at its worst moment instead of at a random time.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

VARIABLE = "THREADVIEW_FAILPOINT"
_reached: Counter[str] = Counter()


def reach(step: str, parent: int | None = None) -> None:
    """Die here if ``THREADVIEW_FAILPOINT`` says so; ``parent``, a process to kill first."""
    wanted = os.environ.get(VARIABLE)
    if not wanted:
        return
    name, _, nth = wanted.partition(":")
    if name != step:
        return
    _reached[step] += 1
    if _reached[step] != (int(nth) if nth else 1):
        return
    if parent is not None:
        os.kill(parent, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
