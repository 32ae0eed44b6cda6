"""The timed cases of bench.paging: each family's page 1 and its page 501 three ways, with the
answer each must give (from the reference list), and the check of an answer."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from bench.families import Family, scope_of
from services.query import ThreadQuery, match_filters

LIMIT, DEPTH = 20, 500  # page 501: after the 10,000th thread


@dataclass
class Case:
    family: Family
    label: str
    deep: bool
    query: ThreadQuery
    want: list[str]
    want_more: bool
    want_total: int | None
    driver: list[float] = field(default_factory=list)  # ms
    api: list[float] = field(default_factory=list)  # ms
    spent: float = 0.0  # s, both ways, warm-up included
    error: str | None = None  # a wrong answer, or too many failed requests: not timed further
    failures: list[str] = field(default_factory=list)  # failed requests (a store restart ...)
    kind: str = "list"  # "get": GET /v1/threads/{id}, the floor under every list request
    checked: bool = False  # both answers compared with the reference once

    @property
    def streams(self) -> int:
        """Index walks the store reads the page with."""
        return (
            len(match_filters(self.query, scope_of(self.family.key))) if self.kind == "list" else 1
        )

    @property
    def name(self) -> str:
        return f"{self.family.name} | {self.label}"


def cases_of(family: Family, full: list[str]) -> list[Case]:
    """Page 1 and, for a deep family, its page 501 (or deepest page) three ways."""
    query = replace(family.query, limit=LIMIT)
    total = len(full) if query.include_total else None
    made = [Case(family, "1", False, query, full[:LIMIT], len(full) > LIMIT, total)]
    # the page starts at full[start]; `before` needs the thread right after the page
    start = min(DEPTH * LIMIT, (len(full) - LIMIT - 1) // LIMIT * LIMIT)
    if not family.deep or start < LIMIT:
        return made
    page = f"{start // LIMIT + 1}" + ("" if start == DEPTH * LIMIT else " (deepest)")
    want = full[start : start + LIMIT]
    upper = min(start + 2 * LIMIT, len(full) - 1)  # a window wider than the page
    made += [
        Case(
            family,
            f"{page} after",
            True,
            replace(query, after=full[start - 1]),
            want,
            len(full) > start + LIMIT,
            total,
        ),
        Case(
            family,
            f"{page} before",
            True,
            replace(query, before=full[start + LIMIT]),
            want,
            True,
            total,
        ),
        Case(
            family,
            f"{page} after+before",
            True,
            replace(query, after=full[start - 1], before=full[upper]),
            full[start : min(start + LIMIT, upper)],
            upper - start > LIMIT,
            total,
        ),
    ]
    return made


def problems(case: Case, ids: list[str], has_more: bool, total: int | None) -> list[str]:
    found = []
    if ids != case.want:
        first = next(
            (i for i, (a, b) in enumerate(zip(ids, case.want, strict=False)) if a != b), None
        )
        found.append(
            f"ids differ (got {len(ids)}, want {len(case.want)}; first difference at {first}: "
            f"got {ids[first] if first is not None else ids[len(case.want) :][:1]}, "
            f"want {case.want[first] if first is not None else case.want[len(ids) :][:1]})"
        )
    if has_more != case.want_more:
        found.append(f"has_more {has_more}, want {case.want_more}")
    if total != case.want_total:
        found.append(f"total {total}, want {case.want_total}")
    return found
