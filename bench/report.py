"""The table bench.paging prints, and explain() trees as one line each."""

from __future__ import annotations

import argparse
from typing import Any

from bench.cases import DEPTH, LIMIT, Case
from bench.stats import fmt, machine, percentile, ratio

GOAL_MS, GOAL_RATIO = 25.0, 1.5


def row_of(case: Case, first: Case | None) -> tuple[str, bool]:
    d50, d99 = percentile(case.driver, 50), percentile(case.driver, 99)
    a50, a99 = percentile(case.api, 50), percentile(case.api, 99)
    deep = ratio(a50, percentile(first.api, 50)) if case.deep and first else float("nan")
    misses = []
    if not a50 <= GOAL_MS:
        misses.append(f"p50>{GOAL_MS:.0f}ms")
    if case.deep and not deep <= GOAL_RATIO:
        misses.append(f"deep>{GOAL_RATIO}x")
    mark = "MISS " + ",".join(misses) if misses else "ok"
    if case.error:
        mark = "ERROR"
    elif case.failures:
        mark += f" ({len(case.failures)} failed)"
    text = (
        f"{case.family.name:<32}{case.label:<26}{case.streams:>4}{len(case.api):>4}"
        f"{fmt(d50, 9)}{fmt(d99, 9)}{fmt(a50, 9)}{fmt(a99, 9)}"
        f"{fmt(deep, 8, 2, 'x')}{fmt(ratio(a50, d50), 8, 2, 'x')}  {mark}"
    )
    return text, bool(misses) or bool(case.error)


def report(cases: list[Case], backend: str, args: argparse.Namespace, took: float) -> int:
    header = (
        f"{'family':<32}{'page':<26}{'str':>4}{'n':>4}{'drv p50':>9}{'drv p99':>9}{'API p50':>9}"
        f"{'API p99':>9}{'deep/p1':>8}{'API/drv':>8}  goal"
    )
    print(f"\n{backend}; {args.threads} threads; {args.runs} runs; limit {LIMIT}; {machine()}")
    print(
        "times in ms; str = index walks (streams) per page; n = timed runs; deep/p1 = API p50 "
        "of the deep page / of the family's page 1; key 'svc org_big' unless the family names "
        "5 orgs or a user"
    )
    print(f"goal: API p50 <= {GOAL_MS:.0f} ms and page {DEPTH + 1} within {GOAL_RATIO}x of page 1")
    print(header)
    print("-" * len(header))
    firsts = {c.family.name: c for c in cases if c.label == "1"}
    missed = failed = 0
    totals = [c for c in cases if c.query.include_total]
    floors = [c for c in cases if c.kind == "get"]
    for case in [c for c in cases if c not in totals and c not in floors]:
        text, miss = row_of(case, firsts.get(case.family.name))
        print(text)
        missed += miss
        failed += case.error is not None
    if totals:
        print("\ninclude_total (counts every match, page 1 only; reported apart from paging):")
        for case in totals:
            text, _ = row_of(case, None)
            print(text)
            failed += case.error is not None
    if floors:
        print("\nthe floor: one thread by id (driver: store.get; API: GET /v1/threads/{id}):")
        for case in floors:
            print(row_of(case, None)[0])
            failed += case.error is not None
    paged = len(cases) - len(totals) - len(floors)
    print(f"\n{missed} of {paged} paging rows miss the goal; took {took / 60:.1f} min")
    for case in cases:
        for failure in case.failures:
            print(f"  {case.name}: failed request at {failure}")
        if case.error:
            print(f"  {case.name}: {case.error}")
        elif len(case.api) < args.runs and not case.failures:
            print(f"  {case.name}: only {len(case.api)} runs (over the {args.case_budget}s budget)")
    return 1 if failed else 0


def plan_shape(node: Any) -> str:
    """An explain() tree as one line: PostgreSQL nodes (FerretDB on DocumentDB) or MongoDB
    stages, each with its index, e.g. ``Limit > Index Scan(list_org_desc)``."""
    if not isinstance(node, dict):
        return "?"
    if "queryPlanner" in node:
        planner = node["queryPlanner"]
        return plan_shape(planner.get("Plan") or planner.get("winningPlan") or planner)
    name = node.get("Node Type") or node.get("stage") or "?"
    index = node.get("Index Name") or node.get("indexName")
    if index:
        name += f"({index})"
    children = node.get("Plans") or node.get("inputStages") or []
    if "inputStage" in node:
        children = [node["inputStage"]]
    if not children:
        return name
    inner = [plan_shape(c) for c in children]
    return f"{name} > " + (inner[0] if len(inner) == 1 else "[" + "; ".join(inner) + "]")
