"""Read-your-writes end to end (api/consistency.py): a producer's token from its acknowledgement,
waited for by the real API while the real projector is stopped, then running; tokens merged
across answers never go backwards; bad tokens are refused clearly."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from consumers.progress import JsonLines
from consumers.sample import cloud_event
from consumers.swap import swap
from services.consistency import Token, from_acks, merge, parse
from services.mongo.bootstrap import Services
from services.settings import Settings
from testkit.kafka import produce, structured
from testkit.processes import run_cli_async

pytestmark = pytest.mark.e2e


def created(thread: str) -> Any:
    data = {"organization_id": "org_e2e", "user_id": "usr_e2e", "title": thread}
    return structured(cloud_event("thread.created", thread, "2025-11-17T10:00:00Z", data))


async def sent(settings: Settings, thread: str) -> Token:
    """Produce the thread's creation; the token of its acknowledgement."""
    return from_acks(
        await produce(settings.kafka_bootstrap_servers, settings.topic, [created(thread)])
    )


async def fresh(client: httpx.Client, token: Token, deadline: float = 90) -> httpx.Response:
    """The list with ``token``, asked again (each wait is capped at 5 s) until it holds it."""
    end = time.monotonic() + deadline
    while True:
        answer = await get(client, token, "wait=5")
        assert answer.status_code == 200, answer.text
        if "consistency-stale" not in answer.headers or time.monotonic() > end:
            return answer


def listed(response: httpx.Response) -> set[str]:
    return {t["id"] for t in response.json()["data"]}


async def get(client: httpx.Client, token: Token | str | None, prefer: str = "") -> httpx.Response:
    headers = {"Prefer": prefer} if prefer else {}
    if token is not None:
        headers["Consistency-Token"] = str(token)
    return await asyncio.to_thread(client.get, "/v1/threads", headers=headers)


async def test_a_list_waits_for_the_producers_token_and_says_when_it_could_not(
    settings: Settings, run_process: Any, api_client: httpx.Client
) -> None:
    # given: the projector applied a first thread, then stopped; a second one produced since
    projector = run_process("consumers.projector", settings)
    first = from_acks(
        await produce(settings.kafka_bootstrap_servers, settings.topic, [created("thrd_c1")])
    )
    assert "thrd_c1" in listed(await fresh(api_client, first))
    projector.stop()
    token = from_acks(
        await produce(settings.kafka_bootstrap_servers, settings.topic, [created("thrd_c2")])
    )

    # when the projector is stopped: the answer comes at the wait, stale, without the thread
    started = time.monotonic()
    stale = await get(api_client, token, "wait=2")
    assert 1.9 <= time.monotonic() - started < 10
    assert stale.status_code == 200 and stale.headers["consistency-stale"] == "true"
    assert "thrd_c2" not in listed(stale)
    # ... and other requests go on meanwhile, waiting or not
    waiting = asyncio.create_task(get(api_client, token, "wait=3"))
    quick = await get(api_client, None)
    assert quick.status_code == 200 and "consistency-stale" not in quick.headers
    assert not waiting.done()
    assert (await waiting).headers["consistency-stale"] == "true"
    strict = await get(api_client, token, "wait=1, handling=strict")
    assert strict.status_code == 503 and strict.json()["error"]["code"] == "not_yet_consistent"
    assert "retry-after" in strict.headers

    # when the projector runs again: the answer comes once it applied the token, with it
    run_process("consumers.projector", settings)
    answer = await fresh(api_client, token)
    assert "consistency-stale" not in answer.headers
    assert "thrd_c2" in listed(answer)
    served = parse(answer.headers["consistency-token"])
    assert served.view == "main" and token.behind(served.positions) == {}

    # then: a token merged from the answers is never answered with an older list
    held = merge([served, parse(stale.headers["consistency-token"])])
    again = await get(api_client, held)
    assert "thrd_c2" in listed(again) and "consistency-stale" not in again.headers


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("nonsense", "consistency_token_invalid"),
        ("tv1.main.0:1,0:2", "consistency_token_invalid"),
        ("tv1.other.0:1", "consistency_token_stale_view"),
        ("tv1.main.0:999999", "consistency_token_beyond"),
        ("tv1.main.77:1", "consistency_token_beyond"),
    ],
)
async def test_a_bad_token_is_a_clear_400(api_client: httpx.Client, token: str, code: str) -> None:
    refused = await get(api_client, token, "wait=1")
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == (code, "Consistency-Token")
    assert refused.headers["x-request-id"]


async def test_a_domain_wait_ends_when_the_thread_and_its_message_show(
    settings: Settings, run_process: Any, api_client: httpx.Client
) -> None:
    # given: no projector yet, a thread and a message produced
    message = cloud_event(
        "thread.message_added", "thrd_d1", "2025-11-17T10:01:00Z", {"message_id": "msg_d1"}
    )
    await produce(
        settings.kafka_bootstrap_servers, settings.topic, [created("thrd_d1"), structured(message)]
    )

    def awaiting(**names: str) -> Any:
        headers = {"Prefer": "wait=5", **{f"Consistency-{k.title()}": v for k, v in names.items()}}
        return asyncio.to_thread(api_client.get, "/v1/threads/thrd_d1", headers=headers)

    # when no projector runs: stale at the wait, and for another tenant's key never told apart
    stale = await awaiting(thread="thrd_d1", message="msg_d1")
    assert stale.status_code == 404 and stale.headers["consistency-stale"] == "true"
    bad = await asyncio.to_thread(
        api_client.get, "/v1/threads", headers={"Consistency-Thread": "x" * 300}
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "consistency_await_invalid"

    # then: with the projector running, the wait ends with the message counted
    run_process("consumers.projector", settings)
    end = time.monotonic() + 90
    while True:
        shown = await awaiting(thread="thrd_d1", message="msg_d1")
        if "consistency-stale" not in shown.headers or time.monotonic() > end:
            break
    assert shown.status_code == 200 and "consistency-stale" not in shown.headers
    assert shown.json()["message_count"] == 1
    other = await awaiting(thread="thrd_d1", message="msg_never")
    assert other.headers["consistency-stale"] == "true"


async def started_api(run_process: Any, settings: Settings, key: str) -> tuple[Any, httpx.Client]:
    """The API as its own process, and a client of it, once it answers."""
    process = run_process("api.main", settings)
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{settings.api_port}", headers={"X-API-Key": key}, timeout=30
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            (await asyncio.to_thread(client.get, "/healthz")).raise_for_status()
            return process, client
        except httpx.HTTPError:
            assert process.popen.poll() is None and time.monotonic() < deadline, process.output()
            await asyncio.sleep(0.2)


async def test_tokens_hold_across_an_api_restart_and_a_swap_refuses_the_old_views(
    settings: Settings, services: Services, run_process: Any, service_key: str
) -> None:
    # given: two writes applied, their tokens merged with the API's answer
    run_process("consumers.projector", settings)
    api, client = await started_api(run_process, settings, service_key)
    tokens = [await sent(settings, f"thrd_s{n}") for n in range(2)]
    answer = await fresh(client, merge(tokens))
    held = merge([*tokens, parse(answer.headers["consistency-token"])])
    assert held.view == "main" and {"thrd_s0", "thrd_s1"} <= listed(answer)

    # when the API restarts: the held token is answered at once, holding both writes
    client.close()
    api.stop()
    api, client = await started_api(run_process, settings, service_key)
    started = time.monotonic()
    answer = await get(client, held, "wait=5")
    assert "consistency-stale" not in answer.headers and time.monotonic() - started < 4
    assert {"thrd_s0", "thrd_s1"} <= listed(answer)

    # when a rebuilt view is swapped in
    done = await run_cli_async("consumers.rebuild", settings, "run", "--name", "next", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    await swap(services, "next", JsonLines())
    await asyncio.sleep(1.5)  # the API looks the pointer up again within POINTER_TTL (1 s)

    # then: the old view's token is refused clearly; its positions, as a producer's, still hold
    refused = await get(client, held, "wait=1")
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "consistency_token_stale_view"
    newer = await sent(settings, "thrd_s2")
    answer = await fresh(client, merge([Token(held.positions), newer]))
    assert {"thrd_s0", "thrd_s1", "thrd_s2"} <= listed(answer)
    assert parse(answer.headers["consistency-token"]).view == "next"
    client.close()
