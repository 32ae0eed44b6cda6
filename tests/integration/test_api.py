"""The HTTP API on the real store: parameters, errors and tenant isolation, as api.md says.

Why this module is longer than ~200 lines: the published API page's behaviours, one test each,
against one served store; splitting them would split the page.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.mongo.bootstrap import Services
from services.projection import Creation, Register, Stamp, ThreadState

pytestmark = pytest.mark.integration

T0 = datetime(2025, 11, 17, 10, tzinfo=UTC)


def thread(id: str, org: str, user: str, minute: int, **registers: bool) -> ThreadState:
    stamp = Stamp(T0 + timedelta(minutes=minute), f"evt_{id}")
    state = ThreadState(
        id=id, creation=Creation(org, user, None, None, stamp), updated_at=stamp.time
    )
    for name, value in registers.items():
        setattr(state, name, Register(value, stamp))
    return state


WORLD = [
    thread("thrd_a1", "org_a", "usr_1", 1),
    thread("thrd_a2", "org_a", "usr_2", 2),
    thread("thrd_a3", "org_a", "usr_1", 3, pinned=True),
    thread("thrd_b1", "org_b", "usr_1", 4),
    thread("thrd_b2", "org_b", "usr_3", 5, deleted=True),
    thread("thrd_c1", "org_c", "usr_1", 6, visible_in_ui=False),
]


@pytest.fixture
async def world(services: Services) -> Services:
    await services.store.save([(s, None) for s in WORLD])
    return services


async def key(services: Services, orgs: list[str], user: str | None = None) -> dict[str, str]:
    _, plaintext = await services.keys.create("user" if user else "service", orgs, user)
    return {"X-API-Key": plaintext}


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()["data"]]


def error(response: httpx.Response, status: int, type: str, param: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert (body["error"]["type"], body["error"]["param"]) == (type, param)
    assert "Traceback" not in response.text
    detail: dict[str, Any] = body["error"]
    return detail


async def test_the_response_has_exactly_the_published_shape(
    world: Services, api: httpx.AsyncClient
) -> None:
    response = await api.get("/v1/threads", headers=await key(world, ["org_a"], "usr_1"))
    body = response.json()
    assert list(body) == ["object", "data", "first_id", "last_id", "has_more", "limit", "total"]
    assert body["object"] == "list" and body["limit"] == 20 and body["total"] is None
    assert ids(response) == ["thrd_a3", "thrd_a1"]
    assert (body["first_id"], body["last_id"], body["has_more"]) == ("thrd_a3", "thrd_a1", False)
    first = body["data"][0]
    assert list(first) == [
        "id",
        "object",
        "created_at",
        "updated_at",
        "last_message_at",
        "metadata",
        "assistant_id",
        "organization_id",
        "user_id",
        "title",
        "status",
        "message_count",
        "visible_in_ui",
        "last_model_used",
        "is_pinned",
        "pinned_at",
        "space_ids",
        "deleted_at",
    ]
    assert (
        first["created_at"] == "2025-11-17T10:03:00Z" and first["pinned_at"] == first["created_at"]
    )


async def test_filters_and_defaults(world: Services, api: httpx.AsyncClient) -> None:
    service = await key(world, ["org_a", "org_b", "org_c"])

    async def get(**params: Any) -> httpx.Response:
        return await api.get("/v1/threads", params=params, headers=service)

    assert ids(await get()) == ["thrd_b1", "thrd_a3", "thrd_a2", "thrd_a1"]
    assert ids(await get(order="asc", limit=2)) == ["thrd_a1", "thrd_a2"]
    assert ids(await get(include_deleted="TRUE")) == [
        "thrd_b2",
        "thrd_b1",
        "thrd_a3",
        "thrd_a2",
        "thrd_a1",
    ]
    assert ids(await get(visible_in_ui="0")) == ["thrd_c1"]
    assert ids(await get(is_pinned="true")) == ["thrd_a3"]
    assert ids(await get(is_pinned="False", organization_id="org_a")) == ["thrd_a2", "thrd_a1"]
    assert (await get(include_total=1, limit=1)).json()["total"] == 4
    empty = (await get(organization_id="org_c")).json()
    assert (empty["data"], empty["first_id"], empty["last_id"], empty["has_more"]) == (
        [],
        None,
        None,
        False,
    )


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"order": "up"}, "order"),
        ({"is_pinned": "yes"}, "is_pinned"),
        ({"visible_in_ui": "2"}, "visible_in_ui"),
        ({"include_deleted": ""}, "include_deleted"),
        ({"include_total": "nope"}, "include_total"),
        ({"after": "thrd_missing"}, "after"),
        ({"before": "thrd_missing"}, "before"),
        ({"after": "x" * 129}, "after"),
    ],
)
async def test_invalid_parameters_are_400(
    world: Services, api: httpx.AsyncClient, params: dict[str, Any], param: str
) -> None:
    response = await api.get("/v1/threads", params=params, headers=await key(world, ["org_a"]))
    error(response, 400, "invalid_request_error", param)


async def test_a_cursor_of_another_tenant_is_the_same_400_as_a_missing_one(
    world: Services, api: httpx.AsyncClient
) -> None:
    user = await key(world, ["org_a"], "usr_1")
    foreign = await api.get("/v1/threads", params={"after": "thrd_b1"}, headers=user)
    colleague = await api.get("/v1/threads", params={"after": "thrd_a2"}, headers=user)
    missing = await api.get("/v1/threads", params={"after": "thrd_nope"}, headers=user)
    messages = {
        error(r, 400, "invalid_request_error", "after")["message"]
        for r in (foreign, colleague, missing)
    }
    assert len(messages) == 1


async def test_keys_missing_unknown_or_revoked_are_401(
    world: Services, api: httpx.AsyncClient
) -> None:
    key_, plaintext = await world.keys.create("service", ["org_a"])
    assert (await api.get("/v1/threads", headers={"X-API-Key": plaintext})).status_code == 200
    assert await world.keys.revoke(key_.id)
    for headers in (
        {},
        {"X-API-Key": ""},
        {"X-API-Key": "tv_nope_nope"},
        {"X-API-Key": plaintext[:-1] + "x"},
        {"X-API-Key": plaintext},
    ):
        error(await api.get("/v1/threads", headers=headers), 401, "authentication_error", None)
        error(
            await api.get("/v1/threads/thrd_a1", headers=headers), 401, "authentication_error", None
        )


async def test_another_organization_is_403(world: Services, api: httpx.AsyncClient) -> None:
    response = await api.get(
        "/v1/threads",
        params={"organization_id": "org_b"},
        headers=await key(world, ["org_a"], "usr_1"),
    )
    error(response, 403, "permission_error", "organization_id")


async def test_one_thread(world: Services, api: httpx.AsyncClient) -> None:
    user = await key(world, ["org_a", "org_b"], "usr_1")
    response = await api.get("/v1/threads/thrd_b1", headers=user)
    assert response.status_code == 200 and response.json()["id"] == "thrd_b1"
    for hidden in ("thrd_a2", "thrd_nope", "thrd_c1"):  # a colleague's, missing, other org
        error(
            await api.get(f"/v1/threads/{hidden}", headers=user),
            404,
            "invalid_request_error",
            "thread_id",
        )


ORGS = ["org_a", "org_b", "org_c"]
USERS = ["usr_1", "usr_2", "usr_3"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    orgs=st.lists(st.sampled_from(ORGS), min_size=1, max_size=2, unique=True),
    user=st.one_of(st.none(), st.sampled_from(USERS)),
    probe=st.sampled_from([s.id for s in WORLD] + ["thrd_nope"]),
    params=st.fixed_dictionaries(
        {},
        optional={
            "organization_id": st.sampled_from(ORGS),
            "include_deleted": st.sampled_from(["true", "false"]),
            "visible_in_ui": st.sampled_from(["true", "false"]),
            "include_total": st.just("true"),
            "limit": st.integers(1, 3),
        },
    ),
)
async def test_no_response_reveals_a_thread_outside_the_key_scope(
    world: Services,
    api: httpx.AsyncClient,
    orgs: list[str],
    user: str | None,
    probe: str,
    params: dict[str, Any],
) -> None:
    headers = await key(world, orgs, user)
    allowed = {
        s.id
        for s in WORLD
        if s.creation and s.creation.organization_id in orgs and user in (None, s.creation.user_id)
    }
    outside = {s.id for s in WORLD} - allowed

    responses = [
        await api.get("/v1/threads", params=params, headers=headers),
        await api.get(f"/v1/threads/{probe}", headers=headers),
        await api.get("/v1/threads", params={**params, "after": probe}, headers=headers),
        await api.get("/v1/threads", params={**params, "before": probe}, headers=headers),
    ]
    for response in responses:
        assert not any(thread_id in response.text for thread_id in outside), response.text
        body = response.json()
        if response.status_code == 200 and body.get("total") is not None:
            assert body["total"] <= len(allowed)
    assert (responses[1].status_code == 200) == (probe in allowed)
    assert (responses[2].status_code == 400) == (probe not in allowed) or responses[
        2
    ].status_code == 403
