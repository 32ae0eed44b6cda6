"""A record near the broker's 1 MiB limit, dead-lettered through the real committer: its copy
is cut to the budget and says so, the batch commits, and threadview-dlq will not re-drive the
partial copy as if it were the record."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from consumers.committer import TransactionalCommitter
from consumers.dead_letters import Copy, dead_letter_headers
from consumers.replay import to_record
from consumers.topics import committed_offsets, ensure_topics
from services.decoding import Rejected
from services.mongo.bootstrap import Services
from services.settings import Settings
from testkit.kafka import produce, read_all
from testkit.processes import run_cli

pytestmark = pytest.mark.integration

# not JSON, and as large as a producer may send with aiokafka's defaults (max_request_size
# 1 MiB, the key, these headers and the record's overhead beside it)
VALUE = (b'{"specversion": "1.0", "data": "' + b"x" * 1024 * 1024)[: 1024 * 1024 - 200]


async def test_a_copy_over_the_limits_is_cut_and_the_batch_commits(
    settings: Settings, services: Services
) -> None:
    # given: a malformed record just under the broker's limit, and a good one after it
    await ensure_topics(settings)
    headers = [("content-type", b"application/cloudevents+json"), ("x-trace", b"\xff\x01")]
    await produce(
        settings.kafka_bootstrap_servers,
        settings.topic,
        [(b"thrd_big", VALUE, headers), (b"thrd_big", b"{}", [])],
    )
    raw = await read_all(settings.kafka_bootstrap_servers, settings.topic, expect=2)
    big, after = sorted((to_record(r) for r in raw), key=lambda r: r.offset)
    rejection = Rejected("too_large", f"{len(VALUE)} bytes")
    whole = dead_letter_headers(big, rejection.reason)  # the copy as it was sent before
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(big.key, big.value, whole)
    assert size > 1024 * 1024  # over aiokafka's default max_request_size: the commit failed

    # when: the committer dead-letters it and commits the batch
    committer = TransactionalCommitter(
        settings.kafka_bootstrap_servers,
        settings.dlq_topic,
        settings.consumer_group,
        None,
        dlq_max_bytes=settings.dlq_max_bytes,
    )
    await committer.start()
    try:
        await committer.commit([big, after], [(big, rejection)])
    finally:
        await committer.stop()

    # then: the offsets are committed, and the copy is there once, cut to the budget
    assert await committed_offsets(settings) == {big.partition: after.offset + 1}
    (copy,) = await read_all(settings.kafka_bootstrap_servers, settings.dlq_topic, expect=1)
    named = dict(copy.headers)
    assert [(n, v) for n, v in copy.headers if not n.startswith("dlq.")] == headers
    assert named["dlq.reason"] == rejection.reason.encode()
    assert named["dlq.truncated"] == b"value"
    assert named["dlq.original_size"] == str(len(VALUE)).encode()
    assert named["dlq.original_sha256"] == hashlib.sha256(VALUE).hexdigest().encode()
    assert (named["dlq.topic"], named["dlq.partition"], named["dlq.offset"]) == (
        settings.topic.encode(),
        str(big.partition).encode(),
        str(big.offset).encode(),
    )
    assert copy.key == big.key and VALUE.startswith(copy.value)
    assert settings.dlq_max_bytes - 64 < Copy(copy.key, copy.value, list(copy.headers)).size
    assert Copy(copy.key, copy.value, list(copy.headers)).size <= settings.dlq_max_bytes

    # and threadview-dlq shows it as truncated and will not re-drive it
    shown = _json(settings, "show", f"0:{copy.offset}")
    assert shown["truncated"] == "value"
    for args in (["redrive", "--dry-run"], ["redrive"]):
        done = _json(settings, *args)
        assert (done["selected"], done["truncated"], done["redriven"]) == (1, 1, 0)
        assert done["records"][0]["status"] == "truncated, skipped"
        assert done["records"][0]["origin"] == f"{settings.topic}:{big.partition}:{big.offset}"
    text = run_cli("consumers.dlq", settings, "redrive")
    assert text.returncode == 0 and "1 truncated copies skipped" in text.stdout, text.stderr
    assert len(await read_all(settings.kafka_bootstrap_servers, settings.topic, expect=2)) == 2


def _json(settings: Settings, *args: str) -> Any:
    done = run_cli("consumers.dlq", settings, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
