"""The layers' arrows point inwards: the entry points (api/, consumers/) use the core
(services/), the core uses neither, and neither entry point uses the other; the shared test
kit (testkit/) uses neither the tests nor the benchmarks, and the benchmarks do not use the
tests."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "services": ("api", "consumers", "bench", "testkit", "tests"),
    "consumers": ("api",),
    # the test kit serves the tests and the benchmarks; a benchmark uses the kit, not the tests
    "bench": ("tests",),
    "testkit": ("tests", "bench"),
}


def imported(path: Path) -> set[str]:
    """The top-level packages a module imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_arrow_points_outwards(package: str) -> None:
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules
    wrong = {
        str(m.relative_to(ROOT)): sorted(imported(m) & set(FORBIDDEN[package])) for m in modules
    }
    assert {m: w for m, w in wrong.items() if w} == {}


# what the core may not import outside its MongoDB adapters (services/mongo/): a driver or a
# framework (pydantic is the contract's models; pydantic-settings, pythonjsonlogger: config and
# logging, no I/O of their own)
DRIVERS_AND_FRAMEWORKS = (
    "pymongo",
    "bson",
    "motor",
    "fastapi",
    "starlette",
    "uvicorn",
    "faststream",
    "aiokafka",
    "prometheus_client",
    "httpx",
    "typer",
    "rich",
)


def test_the_core_imports_no_driver_or_framework_outside_its_mongo_adapters() -> None:
    core = [m for m in sorted((ROOT / "services").rglob("*.py")) if "mongo" not in m.parts]
    assert len(core) > 10
    wrong = {
        str(m.relative_to(ROOT)): sorted(imported(m) & set(DRIVERS_AND_FRAMEWORKS)) for m in core
    }
    assert {m: w for m, w in wrong.items() if w} == {}
    adapters = sorted((ROOT / "services" / "mongo").rglob("*.py"))
    assert any("pymongo" in imported(m) for m in adapters)  # the rule looks where it should
