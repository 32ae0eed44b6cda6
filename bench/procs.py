"""What the benchmarks read of the processes they run: resident memory and a sampled profile."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def _status(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` figure in KiB; 0 once the process is gone."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def peak_rss(pid: int) -> float:
    """MiB: the most ``pid`` has held resident so far (the kernel's high-water mark, VmHWM), so
    it is exact however short the peak; read it before the process ends."""
    return _status(pid, "VmHWM") / 1024


def tree_rss(pid: int) -> int:
    """KiB resident in ``pid`` and all its descendants now; 0 once it is gone."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        total += _status(current, "VmRSS")
        with contextlib.suppress(OSError, ValueError):  # a process that ended meanwhile
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    return total


class Profile:
    """``py-spy record`` attached to a running process for ``seconds``: a flame graph (SVG) and
    the collapsed stacks, from which :func:`hot` reads the busiest functions. py-spy samples
    from outside the process (100 Hz, not stopping it), so the run it watches barely slows."""

    def __init__(self, pid: int, seconds: float, out: Path, name: str) -> None:
        self.svg, self.raw = out / f"{name}.svg", out / f"{name}.txt"
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        common = ["record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
        common += ["--rate", "100", "--nonblocking"]
        out.mkdir(parents=True, exist_ok=True)
        self.spies = [
            subprocess.Popen(
                [spy, *common, "--format", form, "--output", str(path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for form, path in (("flamegraph", self.svg), ("raw", self.raw))
        ]

    def wait(self, timeout: float = 60) -> dict[str, Any]:
        problems = []
        for spy in self.spies:
            try:
                _, err = spy.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, err = spy.communicate()
            if spy.returncode:
                problems.append(err.decode(errors="replace").strip()[-500:])
        if problems or not self.raw.exists():
            return {"error": "; ".join(problems) or "py-spy wrote nothing"}
        return {"svg": self.svg.name, "raw": self.raw.name} | hot(self.raw)


def hot(raw: Path, top: int = 12) -> dict[str, Any]:
    """From py-spy's collapsed stacks (``frame;frame;... count`` per line): the samples; the
    share of them each package was running (the innermost frame's); the functions holding the
    most by own time; and threadview's own functions by total time (anywhere in the stack,
    once per stack), which says which of our steps the time goes under."""
    own: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if f]
        n = int(count)
        samples += n
        own[_short(frames[-1])] += n
        packages[_package(frames[-1])] += n
        for frame in {_short(f) for f in frames if _package(f).startswith("threadview")}:
            ours[frame] += n

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(f, n / samples) for f, n in counter.most_common(top)] if samples else []

    return {
        "samples": samples,
        "packages": shares(packages),
        "own": shares(own),
        "ours": shares(ours),
    }


OURS = ("services", "consumers", "api", "bench")


def _where(frame: str) -> str:
    """The file of ``function (path/to/module.py:12)``."""
    return frame.partition(" (")[2].rsplit(":", 1)[0].rstrip(")")


def _short(frame: str) -> str:
    """``function (path/to/module.py:12)`` -> ``function (module.py)``."""
    name, file = frame.partition(" (")[0], _where(frame)
    return f"{name} ({Path(file).name})" if file else name


def _package(frame: str) -> str:
    """Who a frame belongs to: ``threadview/services`` (our packages), a library (``pymongo``),
    or ``python`` (the standard library); py-spy names files from their package folder."""
    file = _where(frame)
    top = file.split("/", 1)[0] if "/" in file else Path(file).stem
    if top in OURS:
        return f"threadview/{top}"
    if file.startswith("<") or top in sys.stdlib_module_names:
        return "python (stdlib)"
    return top
