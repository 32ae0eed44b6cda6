"""Store credentials per component on the local stack: the API serves through scripts/stack's
second FerretDB (authentication on, a read-only PostgreSQL role), whose user can write nothing
and create nothing, and which refuses a client that did not authenticate (docs/ferretdb.md)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from api.main import create_app
from services.mongo import migration
from services.mongo.bootstrap import Services, bootstrap, connect
from services.projection import Creation, Stamp, ThreadState
from services.settings import Settings
from testkit.servers import STACK, Servers

pytestmark = pytest.mark.integration
PORT = int(os.environ.get("FERRETDB_READER_PORT", "27018"))
PASSWORD = os.environ.get("FERRETDB_READER_PASSWORD", "threadview-reader")
READER = f"mongodb://threadview_reader:{PASSWORD}@127.0.0.1:{PORT}/?authSource=admin"
WRITER_PORT = int(os.environ.get("FERRETDB_WRITER_PORT", "27019"))
WRITER_PASSWORD = os.environ.get("FERRETDB_WRITER_PASSWORD", "threadview-writer")
WRITER = f"mongodb://threadview_writer:{WRITER_PASSWORD}@127.0.0.1:{WRITER_PORT}/?authSource=admin"
PERMISSION_DENIED = 16797828  # PostgreSQL's 42501 through DocumentDB


@pytest.fixture
def reader(servers: Servers, settings: Settings) -> Settings:
    """The test's settings with the API's credential: the read-only FerretDB's user."""
    with socket.socket() as probe:
        if "127.0.0.1" not in servers.mongo_url or probe.connect_ex(("127.0.0.1", PORT)):
            pytest.skip(f"no read-only FerretDB of scripts/stack on 127.0.0.1:{PORT}")
    return settings.model_copy(update={"mongo_url": READER})


@pytest.fixture
async def as_reader(services: Services, reader: Settings) -> AsyncIterator[Services]:
    """The services an API started with the reader's credential builds (migrated by admin)."""
    built = await bootstrap(reader, unmigrated=True)
    yield built
    await built.close()


async def test_the_api_serves_with_the_read_only_user(
    services: Services, reader: Settings, as_reader: Services
) -> None:
    # given: a thread and a key written by the admin's credential (the projector, the keys CLI)
    stamp = Stamp(datetime(2025, 1, 1, tzinfo=UTC), "evt_ro_1")
    creation = Creation("org_ro", "usr_ro", None, None, stamp)
    await services.store.save([(ThreadState(id="thrd_ro_1", creation=creation), None)])
    _, key = await services.keys.create("service", ["org_ro"])
    # when: the API runs on the reader's credential
    assert as_reader.problem is None
    app = create_app(reader)
    app.state.services = as_reader
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://threadview.test") as api:
        page = await api.get("/v1/threads", headers={"X-API-Key": key})
        ready = await api.get("/readyz")
    # then
    assert page.status_code == 200, page.text
    assert [t["id"] for t in page.json()["data"]] == ["thrd_ro_1"]
    assert ready.status_code == 200, ready.text


async def test_the_read_only_user_can_write_nothing(as_reader: Services) -> None:
    database = as_reader.database
    for write in (
        lambda: database["api_keys"].insert_one({"_id": "forged", "kind": "service"}),
        lambda: database["threads"].update_one({}, {"$set": {"title": "x"}}),
        lambda: database["views"].delete_many({}),
    ):
        with pytest.raises(OperationFailure, match="permission denied") as refused:
            await write()
        assert refused.value.code == PERMISSION_DENIED
    # nor any DDL: a migrate with this credential is refused at its first command
    with pytest.raises(OperationFailure, match="permission denied"):
        await database.create_collection("made_by_the_api")
    with pytest.raises(OperationFailure, match="permission denied"):
        await database["threads"].create_index([("title", 1)], name="made_by_the_api")
    fresh = as_reader.client.get_database(f"{database.name}_not_migrated")
    with pytest.raises(OperationFailure, match="permission denied"):
        await migration.migrate(fresh, as_reader.descending_indexes)


async def test_a_client_that_did_not_authenticate_is_refused(reader: Settings) -> None:
    for url in (f"mongodb://127.0.0.1:{PORT}", READER.replace(PASSWORD, "wrong")):
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
            url, serverSelectionTimeoutMS=3000
        )
        try:
            with pytest.raises(OperationFailure) as refused:
                await client[reader.mongo_database]["threads"].find_one()
            assert refused.value.code in (13, 18)  # Unauthorized, AuthenticationFailed
        finally:
            await client.close()
    client, database = connect(reader)  # the right password: reads are served
    try:
        assert await database["views"].find_one({"_id": "main"}) is None  # not migrated
    finally:
        await client.close()


async def test_the_projectors_user_writes_views_but_no_key_and_no_ddl(
    services: Services, reader: Settings
) -> None:
    # given: a migrated store, and the writer's grants taken again (as scripts/run does after
    # migrate: the new database's catalog and keys leave the writer's reach)
    grants = await asyncio.create_subprocess_exec(STACK, "grants", stderr=subprocess.PIPE)
    _, err = await grants.communicate()
    assert grants.returncode == 0, err.decode()
    writer = reader.model_copy(update={"mongo_url": WRITER})
    projector = await bootstrap(writer, unmigrated=True)
    try:
        # when: it writes as the projector does
        stamp = Stamp(datetime(2025, 1, 1, tzinfo=UTC), "evt_rw_1")
        state = ThreadState(
            id="thrd_rw_1", creation=Creation("org_rw", "usr_rw", None, None, stamp)
        )
        [store] = await projector.written_stores()
        assert await store.save([(state, None)]) == {"thrd_rw_1"}
        await store.probe()
        # then: the view has it; keys, the catalog and every DDL are refused
        assert (await services.store.read("thrd_rw_1")) is not None
        database = projector.database
        for write in (
            lambda: database["api_keys"].insert_one({"_id": "forged", "kind": "service"}),
            lambda: database["views"].update_one({"_id": "main"}, {"$set": {"state": "x"}}),
            lambda: database["view_pointer"].delete_many({}),
        ):
            with pytest.raises(OperationFailure, match="permission denied"):
                await write()
        with pytest.raises(OperationFailure, match="permission denied"):
            await database["threads"].create_index([("title", 1)], name="made_by_the_projector")
        with pytest.raises(OperationFailure, match="permission denied"):
            await database["never_migrated"].insert_one({"_id": 1})  # an implicit create
    finally:
        await projector.close()
