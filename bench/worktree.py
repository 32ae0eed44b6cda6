"""Another release's code beside this one: a temporary ``git worktree`` of a ref, and its entry
points run as processes with this venv, so a benchmark can measure both in one run (issue 17)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from services.settings import Settings
from testkit.processes import Process, settings_env

ROOT = Path(__file__).resolve().parent.parent


def worktree(ref: str, under: Path) -> Path:
    """A checkout of ``ref`` beside this one (git worktree), in ``under``."""
    tree = under / "against"
    subprocess.run(["git", "worktree", "add", "--detach", tree, ref], cwd=ROOT, check=True)
    return tree


def worktree_removed(tree: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT, check=False)


def described(ref: str, modules: tuple[str, ...]) -> str:
    """``ref``'s commit and subject, after checking that each of ``modules`` is an entry point
    there (``git show ref:path``): a release without one fails here, not minutes into a run."""
    if _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}") is None:
        raise RuntimeError(f"{ref} names no commit of this repository")
    for module in modules:
        path = module.replace(".", "/") + ".py"
        if '__name__ == "__main__"' not in (_git("show", f"{ref}:{path}") or ""):
            raise RuntimeError(f"{ref} has no entry point {path}: it cannot run beside this")
    return (_git("log", "-1", "--format=%h %s", ref) or "").strip()[:72]


def _git(*args: str) -> str | None:
    """What ``git args`` printed, or None when it failed."""
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return None if done.returncode else done.stdout


def tree_env(settings: Settings, tree: Path) -> dict[str, str]:
    """The settings as THREADVIEW_* variables, with ``tree`` first on the import path: the venv's
    editable install points at this checkout, and a worker process does not start in ``cwd``'s
    package by itself."""
    env = settings_env(settings)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), env.get("PYTHONPATH")) if p)
    return env


async def migrate(settings: Settings, tree: Path) -> None:
    """Runs the tree's ``threadview-admin migrate --no-topics`` (consumers.admin) when it has
    one: a release since migrations sets up its store so; one before them, at its bootstrap."""
    if (tree / "consumers" / "admin.py").exists():
        await _cli(settings, tree, "consumers.admin", "migrate", "--no-topics")


async def keys(settings: Settings, tree: Path, *args: str) -> str:
    """Runs the tree's threadview-keys CLI (``api.keys_cli``) to its end; what it printed. The
    tree's migrate runs first (an older release's CLI bootstraps the store itself: the views
    catalog, the indexes), so a side's database is set up by that side's own release."""
    await migrate(settings, tree)
    return await _cli(settings, tree, "api.keys_cli", *args)


async def _cli(settings: Settings, tree: Path, module: str, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", module, *args),
        env=tree_env(settings, tree),
        cwd=tree,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"{module} {' '.join(args)} in {tree}: {err.decode()[-2000:]}")
    return out.decode()


class TreeProcess(Process):
    """``python -m module`` of the checkout ``tree`` (this one by default), as testkit.processes'
    Process runs this tree's: same log, same stop and kill."""

    def __init__(self, module: str, settings: Settings, log: Path, tree: Path = ROOT) -> None:
        self.log = log
        self._file = log.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", module],
            env=tree_env(settings, tree),
            cwd=tree,
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )
