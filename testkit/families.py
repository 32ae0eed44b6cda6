"""The request families of the list endpoint, and a plain-Python reference of what each lists.

Shared by the plan test (each family is an ordered index walk), the paging properties and the
fault tests (after crashes and outages, every family still answers, exactly); the reference
(:func:`expected`) also by the paging benchmark (bench/families.py), over its generated rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from services.mongo.bootstrap import Services
from services.query import Scope, ThreadQuery


def families(
    orgs: tuple[str, ...], user: str, assistant: str, workflow: str, cursor: str
) -> Iterator[tuple[str, ThreadQuery, Scope]]:
    """Each parameter the list endpoint takes, alone and combined, for service and user keys.

    ``cursor`` must name a thread that a service key of ``orgs`` may see.
    """
    service, one_org, user_key = Scope(orgs), Scope(orgs[:1]), Scope(orgs[:2], user)
    for order in ("desc", "asc"):
        for name, scope in (("one org", one_org), ("several orgs", service), ("user", user_key)):
            yield f"{name} {order}", ThreadQuery(order=order), scope
        narrowed = ThreadQuery(order=order, organization_id=orgs[1])
        yield f"organization_id {order}", narrowed, service
        yield f"after {order}", ThreadQuery(order=order, after=cursor), service
        yield f"before {order}", ThreadQuery(order=order, before=cursor), service
        both = ThreadQuery(order=order, after=cursor, before=cursor)
        yield f"after and before {order}", both, service
    yield "assistant_id", ThreadQuery(assistant_id=assistant), service
    yield "workflow_id", ThreadQuery(workflow_id=workflow), service
    yield "user and assistant_id", ThreadQuery(assistant_id=assistant), user_key
    every = ThreadQuery(assistant_id=assistant, workflow_id=workflow)
    yield "user, assistant_id and workflow_id", every, user_key
    for pinned in (True, False):
        yield f"is_pinned={pinned}", ThreadQuery(is_pinned=pinned), service
    yield "include_deleted", ThreadQuery(include_deleted=True, include_total=True), service
    yield "visible_in_ui=false", ThreadQuery(visible_in_ui=False), user_key


def expected(views: Iterable[dict[str, Any]], query: ThreadQuery, scope: Scope) -> list[str]:
    """The reference, cursors aside: filter the views in Python, sort by (created_at, id)."""
    orgs = set(scope.organization_ids)
    if query.organization_id is not None:
        orgs &= {query.organization_id}

    def selected(v: dict[str, Any]) -> bool:
        return (
            v["organization_id"] in orgs
            and scope.user_id in (None, v["user_id"])
            and v["visible_in_ui"] == query.visible_in_ui
            and (query.include_deleted or not v["is_deleted"])
            and query.is_pinned in (None, v["is_pinned"])
            and query.assistant_id in (None, v["assistant_id"])
            and query.workflow_id in (None, v["workflow_id"])
        )

    ordered = sorted((v for v in views if selected(v)), key=lambda v: (v["created_at"], v["id"]))
    ids = [v["id"] for v in ordered]
    return ids[::-1] if query.order == "desc" else ids


def expected_page(views: list[dict[str, Any]], query: ThreadQuery, scope: Scope) -> list[str]:
    """The ids of the page ``query`` asks for, cursors included."""
    listed = expected(views, query, scope)
    start, stop = 0, len(listed)
    if query.after is not None:
        start = listed.index(query.after) + 1
    if query.before is not None:
        stop = listed.index(query.before)
    window = listed[start:stop] if start <= stop else []
    if query.before is not None and query.after is None:
        return window[-query.limit :]
    return window[: query.limit]


async def assert_every_family_answers_exactly(
    services: Services, views: list[dict[str, Any]], orgs: tuple[str, ...], **names: str
) -> None:
    """Page 1 of every family, read from the store, equals the reference over ``views``."""
    wrong = []
    for name, query, scope in families(orgs, **names):
        page = await services.store.page(query, scope)
        want = expected_page(views, query, scope)
        if [t["id"] for t in page.data] != want:
            wrong.append(f"{name}: {[t['id'] for t in page.data]} != {want}")
        if query.include_total and page.total != len(expected(views, query, scope)):
            wrong.append(f"{name}: total {page.total}")
    assert not wrong, "\n".join(wrong)
