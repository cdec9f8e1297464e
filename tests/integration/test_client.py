"""``DBOSClient`` against an app launched in this process, on the chosen backend.

The app's workers run what the client enqueues; the client itself only
uses the system database (the acceptance tests use a separate process).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import replace
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from dbos import DBOS, DBOSClient, DBOSConfig, DefaultSerializer, EnqueueOptions, Queue, SendMessage, SetWorkflowID
from dbos._clock import now_ms
from dbos._queues.queue import current_intake
from dbos._sysdb import DatabaseURL, SystemDatabase, latest_version
from dbos.error import (
    DBOSConflictingWorkflowError,
    DBOSDatabaseConnectionError,
    DBOSException,
    DBOSInvalidArgumentError,
    DBOSMigrationRequiredError,
    DBOSNonExistentWorkflowError,
    DBOSQueueDeduplicatedError,
    DBOSStreamTimeoutError,
)
from tests.integration.sysdb_sql import count_rows, engine, status_row
from tests.probe import (
    database_exists,
    database_name,
    drop_database,
    execute,
    maintenance_url,
    migration_version,
    sqlite_path,
)

WAIT_S = 30.0


@pytest.fixture
def app(config: DBOSConfig) -> Iterator[Dict[str, Any]]:
    Queue("work")

    @DBOS.workflow(name="echo")
    def echo(*args: Any, **kwargs: Any) -> Any:
        return {"args": args, "kwargs": kwargs, "user": DBOS.authenticated_user}

    @DBOS.workflow(name="inbox")
    def inbox() -> Any:
        DBOS.set_event("ready", True)
        return DBOS.recv("mail", timeout_seconds=WAIT_S)

    @DBOS.workflow(name="streamer")
    def streamer() -> Any:
        DBOS.write_stream("log", "a")
        DBOS.close_stream("log")
        return DBOS.recv("done", timeout_seconds=WAIT_S)  # still running while the client reads

    @DBOS.workflow(name="open_streamer")
    def open_streamer() -> Any:
        DBOS.write_stream("log", "a")
        DBOS.write_stream("log", "b")
        return DBOS.recv("done", timeout_seconds=WAIT_S)  # the stream stays open meanwhile

    DBOS(config=config)
    DBOS.launch()
    # The queue's first poll is over before a test enqueues: its work is then
    # claimed at the next poll.
    intake = current_intake()
    assert intake is not None
    worker = intake.worker("work")  # type: ignore[attr-defined]
    assert worker is not None and (worker.polls > 0 or worker.wait_polls(1, WAIT_S))
    yield {"echo": echo, "inbox": inbox, "streamer": streamer, "open_streamer": open_streamer}


@pytest.fixture
def client(app: Dict[str, Any], sys_db_url: str) -> Iterator[DBOSClient]:
    client = DBOSClient(system_database_url=sys_db_url)
    yield client
    client.destroy()


def test_enqueue_by_name_with_options(client: DBOSClient) -> None:
    options: EnqueueOptions = {
        "workflow_name": "echo", "queue_name": "work", "workflow_id": "e1",
        "priority": 5, "authenticated_user": "ann", "authenticated_roles": ["admin"],
        "app_version": DBOS.application_version, "workflow_timeout": 60,
    }
    handle = client.enqueue(options, 1, "two", three=3)
    result = handle.get_result(polling_interval_sec=0.05)
    assert result == {"args": (1, "two"), "kwargs": {"three": 3}, "user": "ann"}
    row = status_row("e1")
    assert (row["queue_name"], row["priority"], row["workflow_timeout_ms"]) == ("work", 5, 60_000)
    assert row["application_version"] == DBOS.application_version
    again = client.enqueue(options, 1, "two", three=3)  # the same ID: the same workflow
    assert again.get_result() == result and count_rows("status") == 1


def test_enqueue_delay_and_deduplication(client: DBOSClient) -> None:
    current_intake().stop()  # leave rows as the client wrote them
    delayed = client.enqueue({"workflow_name": "echo", "queue_name": "work", "delay_seconds": 3600})
    assert status_row(delayed.workflow_id)["status"] == "DELAYED"
    first: EnqueueOptions = {"workflow_name": "echo", "queue_name": "work", "deduplication_id": "d"}
    client.enqueue(first)
    with pytest.raises(DBOSQueueDeduplicatedError):
        client.enqueue(first)
    assert count_rows("status") == 2


@pytest.mark.parametrize("options, message", [
    ({"queue_name": "work"}, "workflow_name as a non-empty string"),
    ({"workflow_name": "echo", "queue_name": ""}, "queue_name as a non-empty string"),
    ({"workflow_name": "echo", "queue_name": "work", "priority": 0}, "priority must be an integer"),
    ({"workflow_name": "echo", "queue_name": "work", "workflow_id": " "}, "workflow_id must be"),
    ({"workflow_name": "echo", "queue_name": "work", "delay_seconds": -1}, "delay_seconds must be"),
])
def test_enqueue_rejects_bad_options(client: DBOSClient, options: Any, message: str) -> None:
    with pytest.raises(DBOSException, match=message):
        client.enqueue(options)
    assert count_rows("status") == 0


def test_enqueue_refuses_an_id_taken_by_another_workflow(client: DBOSClient, app: Dict[str, Any]) -> None:
    with SetWorkflowID("taken"):
        app["echo"]()
    with pytest.raises(DBOSConflictingWorkflowError):
        client.enqueue({"workflow_name": "inbox", "queue_name": "work", "workflow_id": "taken"})


def test_send_get_event_and_retrieve(client: DBOSClient, app: Dict[str, Any]) -> None:
    with SetWorkflowID("box"):
        DBOS.start_workflow(app["inbox"])
    assert client.get_event("box", "ready", timeout_seconds=WAIT_S) is True
    assert client.get_event("box", "never-set", timeout_seconds=0.05) is None
    client.send("box", {"hello": 1}, "mail", "key-1")
    client.send("box", {"hello": 2}, "mail", "key-1")  # same idempotency key: dropped
    assert client.retrieve_workflow("box").get_result(polling_interval_sec=0.05) == {"hello": 1}
    with pytest.raises(DBOSNonExistentWorkflowError):
        client.retrieve_workflow("no-such")
    with pytest.raises(DBOSNonExistentWorkflowError):
        client.send("no-such", 1)


def test_read_stream_ends_where_the_stream_was_closed(client: DBOSClient, app: Dict[str, Any]) -> None:
    with SetWorkflowID("writer"):
        handle = DBOS.start_workflow(app["streamer"])
    assert list(client.read_stream("writer", "log")) == ["a"]
    assert handle.get_status().status == "PENDING"
    with pytest.raises(DBOSNonExistentWorkflowError):
        list(client.read_stream("no-such", "log"))
    client.send("writer", "stop", "done")
    assert handle.get_result() == "stop"


def test_listing_is_scoped_to_the_clients_application(app: Dict[str, Any], sys_db_url: str) -> None:
    with SetWorkflowID("mine"):
        app["echo"]()
    other = DBOSClient(system_database_url=sys_db_url, application_name="other-app")
    try:
        other.enqueue({"workflow_name": "echo", "queue_name": "work", "workflow_id": "theirs"})
        assert [w.workflow_id for w in other.list_workflows()] == ["theirs"]
        assert [w.workflow_id for w in DBOS.list_workflows()] == ["mine"]
        assert [w.workflow_id for w in other.list_workflows(workflow_ids=["mine"])] == ["mine"]
    finally:
        other.destroy()


def test_async_methods(client: DBOSClient, app: Dict[str, Any]) -> None:
    async def scenario() -> Any:
        handle = await client.enqueue_async({"workflow_name": "inbox", "queue_name": "work",
                                             "workflow_id": "abox"})
        assert await client.get_event_async("abox", "ready", WAIT_S) is True
        await client.send_async("abox", "hi", "mail")
        result = await handle.get_result(polling_interval_sec=0.05)
        listed = await client.list_workflows_async(name="inbox")
        steps = await client.list_workflow_steps_async("abox")
        status = await (await client.retrieve_workflow_async("abox")).get_status()
        await client.delete_workflow_async("abox")
        # The recv's wake-up time (DBOS.sleep) is recorded only if it waited a while.
        names = [s["function_name"] for s in steps if s["function_name"] != "DBOS.sleep"]
        return result, [w.workflow_id for w in listed], names, status.status

    assert asyncio.run(scenario()) == ("hi", ["abox"], ["DBOS.setEvent", "DBOS.recv"], "SUCCESS")
    assert client.get_workflow_status("abox") is None




# ----------------------------------------------------------------------
# Made before any app: the first call creates and migrates the database
# ----------------------------------------------------------------------


def make_database(url: str, kind: str) -> None:
    """``missing``: nothing at all; ``empty``: a database (or SQLite file) with nothing in it."""
    if kind == "missing":
        return
    path = sqlite_path(url)
    if path is not None:
        open(path, "wb").close()
    else:
        execute(maintenance_url(url), f'CREATE DATABASE "{database_name(url)}"')


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_a_client_made_before_any_launch_is_served_by_the_app_launched_later(
        fresh_config: DBOSConfig, sys_db_url: str, kind: str, lazy: bool) -> None:
    make_database(sys_db_url, kind)
    client = DBOSClient(system_database_url=sys_db_url, lazy=lazy)
    try:
        assert database_exists(sys_db_url) == (kind == "empty")  # making the client created nothing
        handle = client.enqueue({"workflow_name": "late", "queue_name": "later", "workflow_id": "early"}, 2)
        assert migration_version(sys_db_url) == latest_version()
        assert client.get_workflow_status("early").status == "ENQUEUED"  # type: ignore[union-attr]

        Queue("later")

        @DBOS.workflow(name="late")
        def late(x: int) -> int:
            return x * 21

        DBOS(config=fresh_config)
        DBOS.launch()
        assert handle.get_result(polling_interval_sec=0.05) == 42
        assert client.retrieve_workflow("early").get_status().status == "SUCCESS"
    finally:
        client.destroy()


def test_clients_and_a_launch_racing_to_migrate_all_succeed(fresh_config: DBOSConfig, sys_db_url: str) -> None:
    Queue("raced")

    @DBOS.workflow(name="raced")
    def raced() -> str:
        return "ran"

    clients = [DBOSClient(system_database_url=sys_db_url) for _ in range(3)]
    start, errors = threading.Barrier(len(clients) + 1), []

    def first_call(client: DBOSClient) -> None:
        start.wait()
        try:
            client.list_workflows()
        except Exception as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=first_call, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    DBOS(config=fresh_config)
    start.wait()
    try:
        DBOS.launch()
        for thread in threads:
            thread.join(WAIT_S)
        assert errors == []
        assert migration_version(sys_db_url) == latest_version()
        handle = clients[0].enqueue({"workflow_name": "raced", "queue_name": "raced"})
        assert handle.get_result(polling_interval_sec=0.05) == "ran"
    finally:
        for client in clients:
            client.destroy()


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_a_role_that_may_not_migrate_is_told_to_run_dbos_migrate(
        backend: str, sys_db_url: str, kind: str) -> None:
    if backend != "postgres":
        pytest.skip("database roles are PostgreSQL's (root writes any SQLite file)")
    role = f"dbos_client_{uuid.uuid4().hex[:8]}"
    make_database(sys_db_url, kind)
    execute(maintenance_url(sys_db_url), f'CREATE ROLE "{role}" LOGIN')  # no CREATEDB, no CREATE here
    client = DBOSClient(system_database_url=replace(DatabaseURL.parse(sys_db_url), user=role).render())
    try:
        with pytest.raises(DBOSMigrationRequiredError) as caught:
            client.list_workflows()
        message = str(caught.value)
        assert "`dbos migrate --sys-db-url" in message and "may not create or migrate" in message
        assert repr(database_name(sys_db_url)) in message and "run_migrations" not in message
        admin = DBOSClient(system_database_url=sys_db_url)
        admin.list_workflows()  # migrates, as a privileged role may
        admin.destroy()
        execute(sys_db_url, f'GRANT USAGE ON SCHEMA dbos TO "{role}"')
        execute(sys_db_url, f'GRANT ALL ON ALL TABLES IN SCHEMA dbos TO "{role}"')
        assert client.list_workflows() == []  # the same client, once migrated by someone who may
    finally:
        client.destroy()
        drop_database(sys_db_url)
        execute(maintenance_url(sys_db_url), f'DROP ROLE "{role}"')


def test_construction_checks_only_the_connection(sys_db_url: str) -> None:
    with pytest.raises(DBOSException, match="needs system_database_url"):
        DBOSClient()
    with pytest.raises(DBOSException, match="lazy=True cannot be combined with use_listen_notify"):
        DBOSClient(system_database_url=sys_db_url, lazy=True, use_listen_notify=True)
    client = DBOSClient(system_database_url=sys_db_url)  # nothing there yet: fine
    client.check_connection()
    asyncio.run(client.check_connection_async())
    client.destroy()
    assert not database_exists(sys_db_url)
    unreachable = "postgresql://postgres:x@127.0.0.1:1/nowhere"
    with pytest.raises(DBOSDatabaseConnectionError, match="failed while connecting: no connection could be opened"):
        DBOSClient(system_database_url=unreachable)
    lazy = DBOSClient(system_database_url=unreachable, lazy=True)  # no connection until used
    try:
        with pytest.raises(DBOSDatabaseConnectionError, match="127.0.0.1:1/nowhere failed while connecting"):
            lazy.list_workflows()
    finally:
        lazy.destroy()


def test_every_constructor_argument_is_accepted(app: Dict[str, Any], sys_db_url: str) -> None:
    import sqlalchemy

    sa_engine = sqlalchemy.create_engine(sys_db_url)
    client = DBOSClient(
        None, system_database_engine=sa_engine, application_database_url=None, dbos_system_schema="dbos",
        serializer=DefaultSerializer(), system_database_pool_size=2, system_database_polling_concurrency=1,
        use_listen_notify=False, application_name=None, lazy=False, retry_connection_errors=False)
    try:
        handle = client.enqueue({"workflow_name": "echo", "queue_name": "work"}, "via the engine's URL")
        assert handle.get_result(polling_interval_sec=0.05)["args"] == ("via the engine's URL",)
    finally:
        client.destroy()
        sa_engine.dispose()


def test_an_application_database_url_implies_the_system_database(empty_db_url: str) -> None:
    implied = empty_db_url
    if sqlite_path(empty_db_url) is None:
        parsed = DatabaseURL.parse(empty_db_url)
        implied = parsed.with_database(f"{parsed.database}_dbos_sys").render()
    client = DBOSClient(empty_db_url)
    try:
        client.enqueue({"workflow_name": "echo", "queue_name": "work", "workflow_id": "implied"})
        assert migration_version(implied) == latest_version()
    finally:
        client.destroy()
        drop_database(implied)


def test_latest_version_of_a_database_no_app_used_is_an_error(sys_db_url: str) -> None:
    client = DBOSClient(system_database_url=sys_db_url)
    try:
        assert client.list_application_versions() == []
        with pytest.raises(DBOSException, match="No application versions"):
            client.get_latest_application_version()
        client.set_latest_application_version("never-registered")  # nothing to change
    finally:
        client.destroy()


# ----------------------------------------------------------------------
# The methods of spec section 10
# ----------------------------------------------------------------------


def test_wait_first_returns_the_first_workflow_to_finish(client: DBOSClient) -> None:
    slow = client.enqueue({"workflow_name": "inbox", "queue_name": "work", "workflow_id": "slow"})
    fast = client.enqueue({"workflow_name": "echo", "queue_name": "work", "workflow_id": "fast"}, 1)
    assert client.wait_first([slow, fast], polling_interval_sec=0.05) is fast
    with pytest.raises(ValueError, match="at least one handle"):
        client.wait_first([])
    with pytest.raises(ValueError, match="same workflow twice"):
        client.wait_first([fast, client.retrieve_workflow("fast")])

    async def first_async() -> str:
        handles = [await client.retrieve_workflow_async(w) for w in ("slow", "fast")]
        return (await client.wait_first_async(handles, polling_interval_sec=0.05)).workflow_id

    assert asyncio.run(first_async()) == "fast"
    assert client.get_workflow_status("slow").status == "PENDING"  # type: ignore[union-attr]
    client.send("slow", "bye", "mail")
    assert slow.get_result(polling_interval_sec=0.05) == "bye"


def start_inboxes(client: DBOSClient, ids: List[str]) -> List[Any]:
    handles = [client.enqueue({"workflow_name": "inbox", "queue_name": "work", "workflow_id": i}) for i in ids]
    for workflow_id in ids:
        assert client.get_event(workflow_id, "ready", timeout_seconds=WAIT_S) is True
    return handles


def test_send_bulk_is_all_or_nothing(client: DBOSClient) -> None:
    first, second = start_inboxes(client, ["b1", "b2"])
    with pytest.raises(DBOSNonExistentWorkflowError):
        client.send_bulk([SendMessage("b1", "lost", "mail"), SendMessage("no-such", "lost", "mail")])
    with pytest.raises(DBOSException, match="same idempotency key twice"):
        client.send_bulk([SendMessage("b1", "x", "mail", "k"), SendMessage("b2", "y", "mail", "k")])
    client.send_bulk([SendMessage("b1", "one", "mail")])
    asyncio.run(client.send_bulk_async([SendMessage("b2", "two", "mail")]))
    assert (first.get_result(polling_interval_sec=0.05), second.get_result(polling_interval_sec=0.05)) == (
        "one", "two")


def test_send_to_forks_and_serialization_type(client: DBOSClient) -> None:
    (original,) = start_inboxes(client, ["root"])
    fork = client.fork_workflow("root", 2)  # keeps set_event, waits in recv again
    with pytest.raises(DBOSException, match="Invalid serialization_type 'bogus'"):
        client.send("root", "never", "mail", serialization_type="bogus")
    client.send("root", "to all", "mail", "once", serialization_type="native", send_to_forks=True)
    assert original.get_result(polling_interval_sec=0.05) == "to all"
    assert fork.get_result(polling_interval_sec=0.05) == "to all"
    asyncio.run(client.send_async("root", "late", "mail", "once", send_to_forks=True))  # same key: dropped
    assert [s["output"] for s in client.list_workflow_steps(fork.workflow_id)
            if s["function_name"] == "DBOS.recv"] == ["to all"]


def test_read_stream_times_out_and_reads_single_offsets(client: DBOSClient, app: Dict[str, Any]) -> None:
    with SetWorkflowID("open"):
        handle = DBOS.start_workflow(app["open_streamer"])
    assert client.read_stream_offset("open", "log", 1, timeout_seconds=WAIT_S) == "b"
    values = []
    with pytest.raises(DBOSStreamTimeoutError, match="within 0.2 seconds"):
        for value in client.read_stream("open", "log", timeout_seconds=0.2, polling_interval_sec=0.05):
            values.append(value)
    assert values == ["a", "b"]
    with pytest.raises(DBOSStreamTimeoutError):
        client.read_stream_offset("open", "log", 2, timeout_seconds=0.2)
    with pytest.raises(ValueError, match="polling_interval_sec"):
        list(client.read_stream("open", "log", polling_interval_sec=0))
    with pytest.raises(ValueError, match="timeout_seconds"):
        client.read_stream_offset("open", "log", 0, timeout_seconds=-1)
    with pytest.raises(DBOSNonExistentWorkflowError):
        client.read_stream_offset("no-such", "log", 0)

    async def read_async() -> Any:
        got = []
        with pytest.raises(DBOSStreamTimeoutError):
            async for value in client.read_stream_async("open", "log", offset=1, timeout_seconds=0.2):
                got.append(value)
        return got, await client.read_stream_offset_async("open", "log", 0)

    assert asyncio.run(read_async()) == (["b"], "a")
    client.send("open", "stop", "done")
    assert handle.get_result() == "stop"
    assert list(client.read_stream("open", "log", timeout_seconds=WAIT_S)) == ["a", "b"]  # ended: no timeout
    with pytest.raises(DBOSStreamTimeoutError, match="before the stream ended"):
        client.read_stream_offset("open", "log", 2)


def test_read_stream_offset_past_a_closed_stream(client: DBOSClient, app: Dict[str, Any]) -> None:
    with SetWorkflowID("closed"):
        handle = DBOS.start_workflow(app["streamer"])
    assert client.read_stream_offset("closed", "log", 0) == "a"
    with pytest.raises(DBOSStreamTimeoutError, match="before the stream ended"):
        client.read_stream_offset("closed", "log", 1)  # the close marker
    client.send("closed", "stop", "done")
    assert handle.get_result() == "stop"


def delayed_inboxes(client: DBOSClient, ids: List[str]) -> None:
    # Not yet running when cancelled: a running execution would notice its
    # cancellation only at its next poll, and a resume before then would run
    # it twice at once.
    for workflow_id in ids:
        client.enqueue({"workflow_name": "inbox", "queue_name": "work", "workflow_id": workflow_id,
                        "delay_seconds": 3600})


def test_plural_management_and_listing(client: DBOSClient) -> None:
    delayed_inboxes(client, ["m1", "m2"])
    queued = {w.workflow_id for w in client.list_queued_workflows(queue_name="work")}
    assert queued == {"m1", "m2"}
    client.cancel_workflows(["m1", "m2"])
    assert {w.status for w in client.list_workflows(workflow_ids=["m1", "m2"])} == {"CANCELLED"}
    resumed = client.resume_workflows(["m1", "m2"])
    for workflow_id in ("m1", "m2"):
        assert client.get_event(workflow_id, "ready", timeout_seconds=WAIT_S) is True
    client.send_bulk([SendMessage("m1", "M1", "mail"), SendMessage("m2", "M2", "mail")])
    assert [h.get_result(polling_interval_sec=0.05) for h in resumed] == ["M1", "M2"]
    steps = client.list_workflow_steps("m1")
    assert len(steps) >= 2
    assert client.list_workflow_steps("m1", limit=1, offset=1) == steps[1:2]
    client.delete_workflows(["m1", "m2"])
    assert client.list_workflows(workflow_ids=["m1", "m2"]) == []


def test_async_management(client: DBOSClient) -> None:
    delayed_inboxes(client, ["a1"])

    async def scenario() -> Any:
        assert [w.workflow_id for w in await client.list_queued_workflows_async()] == ["a1"]
        await client.cancel_workflow_async("a1")
        await client.cancel_workflows_async(["a1"])  # already cancelled: nothing changes
        (resumed,) = await client.resume_workflows_async(["a1"])
        assert await client.get_event_async("a1", "ready", WAIT_S) is True
        await client.send_async("a1", "first", "mail")
        result = await resumed.get_result(polling_interval_sec=0.05)
        forked = await client.fork_workflow_async("a1", 2, application_version=DBOS.application_version)
        await client.send_async(forked.workflow_id, "second", "mail")
        fork_result = await forked.get_result(polling_interval_sec=0.05)
        again = await client.resume_workflow_async("a1")  # finished: stays as it is
        await client.delete_workflows_async([forked.workflow_id])
        steps = await client.list_workflow_steps_async("a1", limit=1, offset=1)
        return result, fork_result, (await again.get_status()).status, [s["function_id"] for s in steps]

    assert asyncio.run(scenario()) == ("first", "second", "SUCCESS", [2])
    assert client.list_workflows(forked_from="a1") == []


def next_millisecond(after: int) -> None:
    # Versions are ordered by a millisecond stamp: make the next one later.
    while now_ms() <= after:
        pass


def test_application_versions(client: DBOSClient) -> None:
    launched = DBOS.application_version
    assert [v.version_name for v in client.list_application_versions()] == [launched]
    stamp = client.get_latest_application_version().version_timestamp
    next_millisecond(stamp)
    engine().sysdb.register_application_version("v-next", "test-app")
    assert client.get_latest_application_version().version_name == "v-next"
    next_millisecond(now_ms())
    client.set_latest_application_version(launched)
    assert [v.version_name for v in client.list_application_versions()] == [launched, "v-next"]

    async def scenario() -> Any:
        next_millisecond(now_ms())
        await client.set_latest_application_version_async("v-next", application_name="test-app")
        latest = await client.get_latest_application_version_async()
        return latest.version_name, [v.version_name for v in await client.list_application_versions_async()]

    assert asyncio.run(scenario()) == ("v-next", ["v-next", launched])


# ----------------------------------------------------------------------
# Renaming an application: its rows move to the new name
# ----------------------------------------------------------------------

OWNERS = ("old-app", "other-app", None)
STATUSES = ("PENDING", "ENQUEUED", "DELAYED", "SUCCESS", "ERROR", "CANCELLED", "SUCCESS", "SUCCESS")
ACTIVE_PER_OWNER, STEPS_PER_WORKFLOW = 3, 2
OWNERSHIP_TABLES = ("queues", "workflow_schedules", "application_versions", "workflow_status",
                    "operation_outputs")
Owners = Dict[str, Dict[str, Any]]


def owned_sql(sysdb: SystemDatabase, sql: str, params: Sequence[Any] = ()) -> List[Any]:
    text = sql.format_map({t: sysdb.backend.qualified(t) for t in OWNERSHIP_TABLES})
    text = text.replace("?", sysdb.backend.placeholder)

    def work() -> List[Any]:
        cursor = sysdb.execute(text, list(params))
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []

    return sysdb.run(work)


def seed_owners(sysdb: SystemDatabase) -> None:
    """A queue, a version and workflows of every status with their steps, for each owner.
    Workflow IDs interleave the owners, so each owner's ID ranges hold others' rows."""
    for owner in OWNERS:
        tag = owner or "unclaimed"
        owned_sql(sysdb, "INSERT INTO {queues} (queue_id, name, application_name) VALUES (?, ?, ?)",
                  (f"q-{tag}", f"q-{tag}", owner))
        owned_sql(sysdb, "INSERT INTO {workflow_schedules} (schedule_id, schedule_name, workflow_name, schedule, "
                  "context, application_name) VALUES (?, ?, 'wf', '* * * * *', 'null', ?)",
                  (f"s-{tag}", f"s-{tag}", owner))
        owned_sql(sysdb, "INSERT INTO {application_versions} (version_id, version_name, application_name) "
                  "VALUES (?, ?, ?)", (f"v-{tag}", f"v-{tag}", owner))
        for n, status in enumerate(STATUSES):
            workflow_id = f"{n:02d}-{tag}"
            owned_sql(sysdb, "INSERT INTO {workflow_status} (workflow_uuid, status, name, application_name) "
                      "VALUES (?, ?, 'wf', ?)", (workflow_id, status, owner))
            for function_id in range(1, STEPS_PER_WORKFLOW + 1):
                owned_sql(sysdb, "INSERT INTO {operation_outputs} (workflow_uuid, function_id, function_name, "
                          "application_name) VALUES (?, ?, 'step', ?)", (workflow_id, function_id, owner))


def owners_of_rows(sysdb: SystemDatabase) -> Owners:
    """Each table's rows, by key, with the application that owns them."""
    keys = {"queues": "name", "workflow_schedules": "schedule_name", "application_versions": "version_name",
            "workflow_status": "workflow_uuid",
            "operation_outputs": "workflow_uuid || ':' || CAST(function_id AS TEXT)"}
    return {table: dict(owned_sql(sysdb, f"SELECT {key}, application_name FROM {{{table}}}"))
            for table, key in keys.items()}


def renamed(before: Owners, sources: Sequence[Optional[str]], new_name: str) -> Owners:
    return {table: {key: new_name if owner in sources else owner for key, owner in rows.items()}
            for table, rows in before.items()}


def counts_for(sources: int) -> Dict[str, int]:
    return {"queues": sources, "schedules": sources, "versions": sources, "workflows": sources * len(STATUSES),
            "steps": sources * len(STATUSES) * STEPS_PER_WORKFLOW}


@pytest.fixture
def seeded(sysdb: SystemDatabase, sys_db_url: str) -> Iterator[Tuple[DBOSClient, SystemDatabase]]:
    """A client, with no application launched, of a database holding three owners' rows."""
    seed_owners(sysdb)
    client = DBOSClient(system_database_url=sys_db_url)
    yield client, sysdb
    client.destroy()


@pytest.mark.parametrize("batch_size", [1, 3, 10_000, None])
def test_rename_application_moves_only_the_old_names_rows(
        seeded: Tuple[DBOSClient, SystemDatabase], batch_size: Optional[int]) -> None:
    client, sysdb = seeded
    before = owners_of_rows(sysdb)
    counts = client.rename_application("old-app", "new-app", batch_size=batch_size)
    assert counts == counts_for(1)
    assert owners_of_rows(sysdb) == renamed(before, ["old-app"], "new-app")
    # Nothing is left under the old name: a second rename finds nothing to move.
    assert client.rename_application("old-app", "new-app", batch_size=batch_size) == counts_for(0)


def test_rename_application_adopts_unclaimed_rows_only_when_asked(
        seeded: Tuple[DBOSClient, SystemDatabase]) -> None:
    client, sysdb = seeded
    before = owners_of_rows(sysdb)
    assert client.rename_application(None, "adopter", adopt_unclaimed_rows=True, batch_size=2) == counts_for(1)
    after_adoption = renamed(before, [None], "adopter")
    assert owners_of_rows(sysdb) == after_adoption
    assert client.rename_application("adopter", "other-app-2") == counts_for(1)
    assert owners_of_rows(sysdb) == renamed(after_adoption, ["adopter"], "other-app-2")


def test_rename_application_async_takes_the_old_names_and_the_unclaimed_rows(seeded: Tuple[DBOSClient, SystemDatabase]) -> None:
    client, sysdb = seeded
    before = owners_of_rows(sysdb)
    counts = asyncio.run(client.rename_application_async("old-app", "new-app", batch_size=4,
                                                         adopt_unclaimed_rows=True))
    assert counts == counts_for(2)
    assert owners_of_rows(sysdb) == renamed(before, ["old-app", None], "new-app")


def test_rename_application_moves_active_workflows_with_queues_and_versions(
        seeded: Tuple[DBOSClient, SystemDatabase]) -> None:
    client, sysdb = seeded
    client.rename_application("other-app", "moved-app")
    rows = owned_sql(sysdb, "SELECT status, application_name FROM {workflow_status} WHERE workflow_uuid LIKE ?",
                     ("%-other-app",))
    assert sorted(rows) == sorted((status, "moved-app") for status in STATUSES)
    assert [q["application_name"] for q in sysdb.list_queues() if q["name"] == "q-other-app"] == ["moved-app"]
    assert client.get_schedule("s-other-app")["application_name"] == "moved-app"  # type: ignore[index]
    assert {v.version_name: v.application_name for v in client.list_application_versions()} == {
        "v-old-app": "old-app", "v-other-app": "moved-app", "v-unclaimed": None}


@pytest.mark.parametrize("old_name, new_name, options, argument", [
    (None, "new-app", {}, "old_name"),
    ("", "new-app", {"adopt_unclaimed_rows": True}, "old_name"),
    ("old-app", "New-App", {}, "new_name"),
    ("old-app", "ab", {}, "new_name"),
    ("old-app", "a" * 31, {}, "new_name"),
    ("old-app", "new app", {}, "new_name"),
    ("old-app", "new-app\n", {}, "new_name"),
    ("old-app", "old-app", {}, "new_name"),
    ("old-app", "new-app", {"batch_size": 0}, "batch_size"),
    ("old-app", "new-app", {"batch_size": -5}, "batch_size"),
    ("old-app", "new-app", {"batch_size": 2.5}, "batch_size"),
    ("old-app", "new-app", {"adopt_unclaimed_rows": "yes"}, "adopt_unclaimed_rows"),
])
def test_rename_application_refuses_bad_arguments_and_writes_nothing(
        seeded: Tuple[DBOSClient, SystemDatabase], old_name: Optional[str], new_name: str,
        options: Dict[str, Any], argument: str) -> None:
    client, sysdb = seeded
    before = owners_of_rows(sysdb)
    with pytest.raises(DBOSInvalidArgumentError) as caught:
        client.rename_application(old_name, new_name, **options)
    assert caught.value.argument == argument and isinstance(caught.value, DBOSException)
    assert argument in str(caught.value)
    with pytest.raises(DBOSInvalidArgumentError):
        asyncio.run(client.rename_application_async(old_name, new_name, **options))
    assert owners_of_rows(sysdb) == before


def test_rename_application_checks_arguments_before_making_the_database(sys_db_url: str) -> None:
    client = DBOSClient(system_database_url=sys_db_url)
    try:
        with pytest.raises(DBOSInvalidArgumentError, match="new_name"):
            client.rename_application("old-app", "Bad Name")
        assert not database_exists(sys_db_url)
        assert client.rename_application("old-app", "new-app") == counts_for(0)  # made now, and empty
        assert database_exists(sys_db_url)
    finally:
        client.destroy()
