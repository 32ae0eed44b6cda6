"""scripts/audit.py: a known vulnerability fails the audit unless accepted with a reason and a
date; no vulnerability service in reach is a warning, not a failure."""

from __future__ import annotations

import datetime
import importlib.util
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit", ROOT / "scripts" / "audit.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["audit"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


audit = _audit()

REPORT = {
    "dependencies": [
        {"name": "safe", "version": "1.0", "vulns": []},
        {
            "name": "risky",
            "version": "2.0",
            "vulns": [
                {"id": "PYSEC-1", "aliases": ["CVE-2026-1"], "fix_versions": ["2.1"]},
                {"id": "GHSA-2", "aliases": [], "fix_versions": []},
            ],
        },
        {"name": "gone", "skip_reason": "Dependency not found on PyPI"},
    ]
}


def test_a_known_vulnerability_fails_unless_accepted(tmp_path: Path) -> None:
    # nothing accepted: both found
    verdict = audit.judge(REPORT, {})
    assert verdict.audited == 2 and len(verdict.skipped) == 1
    assert verdict.found == [
        "risky==2.0 PYSEC-1 / CVE-2026-1 (fixed in: 2.1)",
        "risky==2.0 GHSA-2 (fixed in: no fixed version)",
    ]
    # one accepted by an alias, one never seen: the other still fails, the stale one is named
    ignore = tmp_path / "ignore.toml"
    ignore.write_text(
        '[[ignore]]\nid = "CVE-2026-1"\npackage = "risky"\nreason = "not reachable"\n'
        "since = 2026-12-02\n\n"
        '[[ignore]]\nid = "GHSA-old"\npackage = "x"\nreason = "bumped since"\nsince = 2026-01-01\n'
    )
    accepted = audit.accepted(ignore)
    assert accepted["CVE-2026-1"].since == datetime.date(2026, 12, 2)
    verdict = audit.judge(REPORT, accepted)
    assert verdict.found == ["risky==2.0 GHSA-2 (fixed in: no fixed version)"]
    assert verdict.accepted == [
        "risky==2.0 PYSEC-1 / CVE-2026-1 (fixed in: 2.1): accepted 2026-12-02: not reachable"
    ]
    assert verdict.unused == ["GHSA-old"]
    assert audit.report_verdict(verdict, "pypi", ignore) == 1
    # every one accepted: the audit passes
    also = audit.Accepted("GHSA-2", "risky", "no fix yet; not used", datetime.date(2026, 12, 2))
    assert audit.report_verdict(audit.judge(REPORT, {**accepted, "GHSA-2": also}), "x", ignore) == 0


def test_an_acceptance_needs_a_reason_and_a_date(tmp_path: Path) -> None:
    ignore = tmp_path / "ignore.toml"
    ignore.write_text('[[ignore]]\nid = "GHSA-2"\npackage = "risky"\nsince = 2026-12-02\n')
    with pytest.raises(SystemExit, match="lacks reason"):
        audit.accepted(ignore)
    assert audit.accepted(tmp_path / "none.toml") == {}
    assert audit.accepted(ROOT / "scripts" / "audit-ignore.toml") is not None  # it parses


def test_no_service_in_reach_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a pin, and an OSV address where nothing listens
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pinned = tmp_path / "constraints.txt"
    pinned.write_text("httpx==0.28.1\n")
    # when: OSV, then PyPI's project JSON, both out of reach
    monkeypatch.setattr(audit, "PYPI", f"http://127.0.0.1:{port}/pypi")
    code = audit.main(
        [
            *("--requirements", str(pinned), "--service", "osv", "--service", "latest"),
            *("--osv-url", f"http://127.0.0.1:{port}"),
        ]
    )
    # then
    assert code == 0
    err = capsys.readouterr().err
    assert "WARNING: dependency audit NOT run" in err and "osv:" in err and "latest:" in err
    assert len(err.strip().splitlines()) == 1


def test_a_latest_release_with_a_listed_vulnerability_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a PyPI whose project JSON lists a vulnerability of the latest release (and a
    # withdrawn one), a project whose pin is older, and one that is clean
    projects = {
        "risky": (
            "2.0",
            [
                {"id": "GHSA-r", "aliases": ["CVE-9"], "fixed_in": ["2.1"]},
                {"id": "GHSA-w", "withdrawn": "2026-01-01"},
            ],
        ),
        "older": ("3.0", []),
        "clean": ("1.0", []),
    }

    class PyPI(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            version, vulns = projects[self.path.split("/")[2]]
            body = json.dumps({"info": {"version": version}, "vulnerabilities": vulns})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), PyPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(audit, "PYPI", f"http://127.0.0.1:{server.server_address[1]}/pypi")
    pinned = tmp_path / "constraints.txt"
    pinned.write_text("clean==1.0\nolder==2.9  # a comment\nrisky==2.0\n")
    try:
        # when
        code = audit.main(["--requirements", str(pinned), "--service", "latest"])
    finally:
        server.shutdown()
    # then
    err = capsys.readouterr().err
    assert code == 1, err
    assert "VULNERABLE: risky==2.0 GHSA-r / CVE-9 (fixed in: 2.1)" in err
    assert "GHSA-w" not in err and "older==2.9: not the latest release (3.0)" in err
