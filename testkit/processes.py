"""Our entry points run as separate OS processes with given settings: to their end
(:func:`run_cli`, :func:`run_cli_async`) or in the background (:class:`Process`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import SecretStr

from services.mongo.bootstrap import migrate
from services.settings import Settings
from testkit.servers import ROOT

_MIGRATED: set[tuple[str, str]] = set()
# the entry points that need the store migrated (the tests' processes are started after it)
NEEDS_SCHEMA = ("consumers.projector", "api.main", "api.keys_cli", "consumers.rebuild")


def migrated(settings: Settings) -> None:
    """:func:`migrate`, once per database, from code with or without a running event loop."""
    where = (settings.mongo_url, settings.mongo_database)
    if where not in _MIGRATED:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, migrate(settings)).result()
        _MIGRATED.add(where)


def note_migrated(settings: Settings) -> None:
    """Records that the settings' database has been migrated already (by the caller)."""
    _MIGRATED.add((settings.mongo_url, settings.mongo_database))


def settings_env(settings: Settings) -> dict[str, str]:
    """This process's environment with the settings as THREADVIEW_* variables."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):  # its str() is asterisks
            value = value.get_secret_value()
        if value is not None:
            env[f"THREADVIEW_{name.upper()}"] = str(value)
    return env


def run_cli(
    module: str,
    settings: Settings,
    *args: str,
    env: dict[str, str] | None = None,
    migrate: bool = True,
) -> subprocess.CompletedProcess[str]:
    """One of our command-line tools, run to its end with the test's settings (and ``env``),
    on a migrated store unless ``migrate`` is false."""
    if migrate and module in NEEDS_SCHEMA:
        migrated(settings)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**settings_env(settings), **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )


async def run_cli_async(
    module: str,
    settings: Settings,
    *args: str,
    env: dict[str, str] | None = None,
    migrate: bool = True,
) -> subprocess.CompletedProcess[str]:
    """:func:`run_cli` without blocking the event loop (a test producing records meanwhile)."""
    if migrate and module in NEEDS_SCHEMA:
        migrated(settings)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        env={**settings_env(settings), **(env or {})},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 240)
    assert process.returncode is not None
    return subprocess.CompletedProcess(list(args), process.returncode, out.decode(), err.decode())


class Process:
    """One of our entry points, run as a separate OS process with the test's settings."""

    def __init__(
        self, module: str, settings: Settings, log: Path, *args: str, migrate: bool = True
    ) -> None:
        if migrate and module in NEEDS_SCHEMA:  # as scripts/run and docker compose do first
            migrated(settings)
        self.log = log
        self._file = log.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=settings_env(settings),
            cwd=ROOT,
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._file.close()

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a crash."""
        self.popen.kill()
        self.popen.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")
