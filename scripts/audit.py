"""The dependency audit (scripts/test runs it before the tests): every pin of constraints.txt
checked against a vulnerability database with pip-audit, exactly as pinned (``--no-deps
--disable-pip``: nothing is resolved or installed).

When PyPI's per-release JSON cannot be had, a pin that is its project's latest release is
audited from the project's JSON instead (SERVICES).

Exit 0 when no known vulnerability is found, or every one found is accepted in
scripts/audit-ignore.toml (each with its reason and the date it was accepted); exit 1 when one
is not. Offline-tolerant: when no vulnerability service can be reached (or none answers for
any pin), it says so in one warning and exits 0: the audit did not run, which is not a pass.

    .venv/bin/python scripts/audit.py [--requirements FILE] [--ignore FILE]
                                      [--service pypi|osv|latest ...] [--osv-url URL]

Why this module is longer than ~200 lines: one command (parse the pins, query the audit
offline-tolerantly, apply the reviewed ignores, report) that CI runs as a single step.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# PyPI's JSON API first, then OSV; then, when neither audits a pin (a mirror or a proxy of
# PyPI may serve no per-release JSON), "latest": a pin that is its project's latest release is
# audited against the vulnerabilities PyPI lists for that release
SERVICES = ("pypi", "osv", "latest")
PYPI = "https://pypi.org/pypi"
TIMEOUT = 15  # seconds per request


@dataclass(frozen=True)
class Accepted:
    """A vulnerability accepted on purpose: why, and since when."""

    id: str
    package: str
    reason: str
    since: datetime.date


@dataclass
class Verdict:
    audited: int = 0
    skipped: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)  # not accepted: the audit fails
    accepted: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)  # accepted ids no pin has any more


def accepted(path: Path) -> dict[str, Accepted]:
    """The ignore file's entries by id; one without a reason or a date is refused."""
    if not path.exists():
        return {}
    entries = tomllib.loads(path.read_text()).get("ignore", [])
    found = {}
    for entry in entries:
        missing = [k for k in ("id", "package", "reason", "since") if not entry.get(k)]
        if missing:
            raise SystemExit(f"[audit] {path}: an entry lacks {', '.join(missing)}: {entry}")
        since = entry["since"]
        if not isinstance(since, datetime.date):
            since = datetime.date.fromisoformat(str(since))
        found[entry["id"]] = Accepted(entry["id"], entry["package"], entry["reason"], since)
    return found


def judge(report: dict[str, Any], ignore: dict[str, Accepted]) -> Verdict:
    """What pip-audit's JSON report says, given the accepted vulnerabilities."""
    verdict = Verdict()
    used: set[str] = set()
    for dep in report.get("dependencies", []):
        pin = f"{dep['name']}=={dep['version']}" if dep.get("version") else dep["name"]
        if dep.get("skip_reason"):
            verdict.skipped.append(f"{pin}: {dep['skip_reason']}")
            continue
        verdict.audited += 1
        for vuln in dep.get("vulns", []):
            names = [vuln["id"], *vuln.get("aliases", [])]
            known = next((ignore[n] for n in names if n in ignore), None)
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed version"
            line = f"{pin} {' / '.join(names)} (fixed in: {fixed})"
            if known is None:
                verdict.found.append(line)
            else:
                used.add(known.id)
                verdict.accepted.append(f"{line}: accepted {known.since}: {known.reason}")
    verdict.unused = sorted(set(ignore) - used) if verdict.audited else []
    return verdict


def pins(requirements: Path) -> list[tuple[str, str]]:
    lines = (line.split("#", 1)[0].strip() for line in requirements.read_text().splitlines())
    split = (line.split("==", 1) for line in lines if "==" in line)
    return [(name.strip(), version.strip()) for name, version in split]


def latest(requirements: Path) -> dict[str, Any] | str:
    """A report in pip-audit's shape from PyPI's project JSON: a pin that is the project's
    latest release gets the vulnerabilities PyPI lists for it; any other pin is skipped."""

    def one(pin: tuple[str, str]) -> dict[str, Any]:
        name, version = pin
        try:
            with urllib.request.urlopen(f"{PYPI}/{name}/json", timeout=TIMEOUT) as answer:
                project = json.load(answer)
        except (OSError, ValueError) as exc:
            return {"name": name, "version": version, "skip_reason": f"no answer: {exc}"}
        newest = project["info"]["version"]
        if newest != version:
            reason = f"not the latest release ({newest}): no per-release audit here"
            return {"name": name, "version": version, "skip_reason": reason}
        vulns = [
            {"id": v["id"], "aliases": v.get("aliases") or [], "fix_versions": v.get("fixed_in")}
            for v in project.get("vulnerabilities") or []
            if not v.get("withdrawn")
        ]
        return {"name": name, "version": version, "vulns": vulns}

    pinned = pins(requirements)
    if not pinned:
        return {"dependencies": []}
    first = one(pinned[0])  # out of reach: said once, not once a pin
    if "no answer" in first.get("skip_reason", "") and "HTTP Error" not in first["skip_reason"]:
        return f"PyPI out of reach: {first['skip_reason']}"
    with ThreadPoolExecutor(8) as pool:
        return {"dependencies": [first, *pool.map(one, pinned[1:])]}


def run(requirements: Path, service: str, osv_url: str | None) -> dict[str, Any] | str:
    """pip-audit's JSON report, or why there is none (a service out of reach)."""
    if service == "latest":
        return latest(requirements)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        command = [
            sys.executable,
            "-m",
            "pip_audit",
            "--requirement",
            str(requirements),
            "--no-deps",
            "--disable-pip",
            "--vulnerability-service",
            service,
            "--progress-spinner",
            "off",
            "--timeout",
            str(TIMEOUT),
            "--format",
            "json",
            "--output",
            str(out),
        ]
        if osv_url and service == "osv":
            command += ["--osv-url", osv_url]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if not out.exists() or not out.read_text().strip():
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            return lines[-1] if lines else f"pip-audit exited {done.returncode}"
        report: dict[str, Any] = json.loads(out.read_text())
        return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requirements", type=Path, default=ROOT / "constraints.txt")
    parser.add_argument("--ignore", type=Path, default=ROOT / "scripts" / "audit-ignore.toml")
    parser.add_argument("--service", action="append", choices=SERVICES)
    parser.add_argument("--osv-url")
    args = parser.parse_args(argv)
    ignore = accepted(args.ignore)
    why_not: list[str] = []
    for service in args.service or SERVICES:
        report = run(args.requirements, service, args.osv_url)
        if isinstance(report, str):
            why_not.append(f"{service}: {report}")
            continue
        verdict = judge(report, ignore)
        if not verdict.audited:
            first = verdict.skipped[0] if verdict.skipped else "no dependency in the report"
            why_not.append(f"{service}: no pin audited ({len(verdict.skipped)} skipped; {first})")
            continue
        return report_verdict(verdict, service, args.requirements)
    print(
        f"[audit] WARNING: dependency audit NOT run, no vulnerability service answered: "
        f"{'; '.join(why_not)}",
        file=sys.stderr,
    )
    return 0


def report_verdict(verdict: Verdict, service: str, requirements: Path) -> int:
    for line in verdict.accepted:
        print(f"[audit] {line}", file=sys.stderr)
    for entry in verdict.unused:
        print(f"[audit] {entry} is accepted but no longer found: remove it", file=sys.stderr)
    if verdict.skipped:
        print(
            f"[audit] WARNING: {len(verdict.skipped)} pins not audited: "
            f"{'; '.join(verdict.skipped[:5])}",
            file=sys.stderr,
        )
    for line in verdict.found:
        print(f"[audit] VULNERABLE: {line}", file=sys.stderr)
    if verdict.found:
        print(
            f"[audit] {len(verdict.found)} known vulnerabilities in {requirements.name}: bump "
            "the pin, or accept it in scripts/audit-ignore.toml with a reason and a date",
            file=sys.stderr,
        )
        return 1
    print(
        f"[audit] {verdict.audited} pins of {requirements.name} audited ({service}): "
        f"no known vulnerability{' beyond those accepted' if verdict.accepted else ''}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
