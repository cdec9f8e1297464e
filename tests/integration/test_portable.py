"""Portable JSON workflows, messages and events, on the backend chosen with ``--backend``;
on PostgreSQL, enqueueing and sending from plain SQL (``dbos.enqueue_workflow``,
``dbos.send_message``) in a ``psql`` transaction that a worker here completes.

Rows are read back through the test's own connections (``tests.probe``), as
plain JSON text: what a person with ``psql`` or another language would see.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import subprocess
import threading
import uuid
from decimal import Decimal
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from dbos import (
    DBOS,
    DBOSClient,
    DBOSConfig,
    Debouncer,
    EnqueueOptions,
    PortableWorkflowError,
    Queue,
    SetWorkflowID,
    WorkflowSerializationFormat,
)
from dbos._engine.engine import peek_engine
from dbos._engine.recovery import recover_one
from dbos.error import DBOSInvalidArgumentError
from tests.probe import execute, qualified, query

PORTABLE = WorkflowSerializationFormat.PORTABLE
WAIT_S = 20.0


@pytest.fixture
def app(config: DBOSConfig) -> Iterator[Dict[str, Any]]:
    """Portable and native workflows on a launched DBOS; ``gate`` holds ``waiter`` until set."""
    found: Dict[str, Any] = {"queue": Queue("portable-q"), "gate": threading.Event()}

    @DBOS.workflow(serialization_type=PORTABLE)
    def plan(day: datetime.date, amount: Decimal, pair: Tuple[int, int], *, note: str = "") -> Dict[str, Any]:
        DBOS.set_event("seen", {"day": day, "note": note})
        return {"day": day, "amount": amount, "pair": pair, "child": child(note)}

    @DBOS.workflow()
    def child(note: str) -> List[str]:
        DBOS.set_event("inherited", [note])
        return [note]

    @DBOS.workflow(serialization_type=PORTABLE)
    def fails(code: int) -> None:
        raise PermissionError(f"denied {code}")

    @DBOS.workflow(serialization_type=PORTABLE)
    def returns_an_object() -> object:
        return object()

    @DBOS.workflow()
    def waiter(topic: str) -> Any:
        return DBOS.recv(topic, timeout_seconds=WAIT_S)

    @DBOS.workflow(serialization_type=PORTABLE)
    def portable_waiter(topic: str) -> Any:
        got = DBOS.recv(topic, timeout_seconds=WAIT_S)
        DBOS.send(DBOS.workflow_id or "", {"echo": got}, "self")  # DEFAULT: this workflow's format
        return got

    @DBOS.workflow()
    def native_sender(destination: str, value: Any) -> None:
        DBOS.send(destination, value, "mail", serialization_type=PORTABLE)
        DBOS.set_event("shared", value, serialization_type=PORTABLE)
        DBOS.set_event("private", value)

    @DBOS.workflow()
    def when(day: datetime.date, at: datetime.datetime, text: str) -> List[str]:
        return [type(day).__name__, type(at).__name__, type(text).__name__, at.isoformat()]

    @DBOS.workflow()
    async def async_sender(destination: str) -> None:
        await DBOS.send_async(destination, {"from": "async"}, "mail", serialization_type=PORTABLE)
        await DBOS.set_event_async("shared", [1], serialization_type=PORTABLE)
        await DBOS.write_stream_async("log", {"line": 1}, serialization_type=PORTABLE)
        DBOS.write_stream("log", ("pickled", 2))
        DBOS.close_stream("log")

    found.update(plan=plan, fails=fails, returns_an_object=returns_an_object, waiter=waiter, portable_waiter=portable_waiter,
                 native_sender=native_sender, when=when, async_sender=async_sender)
    DBOS(config=config)
    DBOS.launch()
    yield found
    DBOS.destroy(destroy_registry=True)


def row(url: str, table: str, columns: str, where: str, params: Tuple[Any, ...]) -> Tuple[Any, ...]:
    found = query(url, f"SELECT {columns} FROM {qualified(url, table)} WHERE {where}", params)
    assert len(found) == 1, f"expected one {table} row where {where} {params}, found {found}"
    return found[0]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------
# Workflows
# ----------------------------------------------------------------------


def test_portable_workflow_stores_plain_json(app: Dict[str, Any], sys_db_url: str) -> None:
    day = datetime.date(2024, 2, 29)
    with SetWorkflowID("plan-1"):
        result = app["plan"](day, Decimal("12.50"), (1, 2), note="hi")
    # The caller gets the body's own value; what is stored is JSON.
    assert result == {"day": day, "amount": Decimal("12.50"), "pair": (1, 2), "child": ["hi"]}
    serialization, inputs, output = row(sys_db_url, "workflow_status", "serialization, inputs, output",
                                        "workflow_uuid = %s", ("plan-1",))
    assert serialization == "portable_json"
    assert json.loads(inputs) == {"positionalArgs": ["2024-02-29", "12.50", [1, 2]], "namedArgs": {"note": "hi"}}
    assert json.loads(output) == {"day": "2024-02-29", "amount": "12.50", "pair": [1, 2], "child": ["hi"]}
    # Read back, it is what JSON carries.
    assert DBOS.retrieve_workflow("plan-1").get_result() == json.loads(output)
    status = DBOS.get_workflow_status("plan-1")
    assert status is not None and status.input == {"args": ("2024-02-29", "12.50", [1, 2]), "kwargs": {"note": "hi"}}


def test_events_and_children_follow_the_workflows_format(app: Dict[str, Any], sys_db_url: str) -> None:
    with SetWorkflowID("plan-2"):
        app["plan"](datetime.date(2024, 1, 1), Decimal(1), (3, 4), note="kid")
    value, serialization = row(sys_db_url, "workflow_events", "value, serialization",
                               "workflow_uuid = %s AND key = %s", ("plan-2", "seen"))
    assert (json.loads(value), serialization) == ({"day": "2024-01-01", "note": "kid"}, "portable_json")
    assert DBOS.get_event("plan-2", "seen", timeout_seconds=0) == {"day": "2024-01-01", "note": "kid"}
    # The child has no format of its own: it inherits its parent's.
    (child_id,) = [r[0] for r in query(sys_db_url, f"SELECT workflow_uuid FROM {qualified(sys_db_url, 'workflow_status')} "
                                                   "WHERE parent_workflow_id = %s", ("plan-2",))]
    assert row(sys_db_url, "workflow_status", "serialization, output", "workflow_uuid = %s",
               (child_id,)) == ("portable_json", '["kid"]')
    assert DBOS.get_all_events(child_id) == {"inherited": ["kid"]}


def test_a_fork_of_a_portable_workflow_stays_portable(app: Dict[str, Any], sys_db_url: str) -> None:
    with SetWorkflowID("plan-3"):
        app["plan"](datetime.date(2024, 3, 1), Decimal("0.1"), (5, 6))
    fork = DBOS.fork_workflow("plan-3", 2)  # keeps the event, runs the child's start again
    expected = {"day": "2024-03-01", "amount": "0.1", "pair": [5, 6], "child": [""]}
    assert fork.get_result() == expected
    assert row(sys_db_url, "workflow_status", "serialization", "workflow_uuid = %s",
               (fork.workflow_id,)) == ("portable_json",)


def test_a_debounced_portable_workflow_keeps_its_inputs_portable(app: Dict[str, Any], sys_db_url: str) -> None:
    debouncer = Debouncer.create(app["plan"], queue="portable-q")
    first = debouncer.debounce("k", 60, datetime.date(2024, 1, 1), Decimal(1), (1, 1))
    bounced = debouncer.debounce("k", 60, datetime.date(2024, 1, 2), Decimal(2), (2, 2), note="last")
    assert bounced.workflow_id == first.workflow_id  # the second call pushed the first back
    serialization, inputs = row(sys_db_url, "workflow_status", "serialization, inputs", "workflow_uuid = %s",
                                (first.workflow_id,))
    assert serialization == "portable_json"
    assert json.loads(inputs) == {"positionalArgs": ["2024-01-02", "2", [2, 2]], "namedArgs": {"note": "last"}}
    DBOS.cancel_workflow(first.workflow_id)


def test_a_database_schedule_starts_a_portable_workflow_portably(app: Dict[str, Any], sys_db_url: str) -> None:
    @DBOS.workflow(serialization_type=PORTABLE)
    def nightly(scheduled_time: datetime.datetime, context: Any) -> str:
        return f"{scheduled_time.isoformat()} {context}"

    DBOS.create_schedule(schedule_name="portable-nightly", workflow_fn=nightly, schedule="0 3 * * *",
                         context={"shard": 7})
    handle = DBOS.trigger_schedule("portable-nightly")
    assert handle.get_result().endswith(" {'shard': 7}")
    serialization, inputs = row(sys_db_url, "workflow_status", "serialization, inputs", "workflow_uuid = %s",
                                (handle.workflow_id,))
    assert serialization == "portable_json"
    assert json.loads(inputs)["positionalArgs"][1] == {"shard": 7}


def test_a_scheduled_decorator_starts_a_portable_workflow_portably(app: Dict[str, Any], sys_db_url: str) -> None:
    ticked = threading.Event()

    @DBOS.scheduled("* * * * * *")
    @DBOS.workflow(serialization_type=PORTABLE)
    def every_second(scheduled_time: datetime.datetime, actual_time: datetime.datetime) -> None:
        ticked.set()

    assert ticked.wait(WAIT_S)
    formats = query(sys_db_url, f"SELECT DISTINCT serialization FROM {qualified(sys_db_url, 'workflow_status')} "
                    "WHERE name = %s", (every_second.dbos_function_name,))
    assert formats == [("portable_json",)]


def test_portable_error_is_json_and_comes_back_as_portable_workflow_error(
        app: Dict[str, Any], sys_db_url: str) -> None:
    with SetWorkflowID("fails-1"), pytest.raises(PermissionError, match="denied 7"):
        app["fails"](7)
    (error,) = row(sys_db_url, "workflow_status", "error", "workflow_uuid = %s", ("fails-1",))
    assert json.loads(error) == {"name": "PermissionError", "message": "denied 7", "code": None}
    with pytest.raises(PortableWorkflowError) as raised:
        DBOS.retrieve_workflow("fails-1").get_result()
    assert (raised.value.name, raised.value.message, str(raised.value)) == ("PermissionError", "denied 7", "denied 7")


def test_a_result_json_cannot_carry_fails_the_workflow_with_a_portable_error(
        app: Dict[str, Any], sys_db_url: str) -> None:
    with SetWorkflowID("object-1"), pytest.raises(PortableWorkflowError, match="the output of workflow"):
        app["returns_an_object"]()
    status, error = row(sys_db_url, "workflow_status", "status, error", "workflow_uuid = %s", ("object-1",))
    assert status == "ERROR" and json.loads(error)["name"] == "TypeError"


@pytest.mark.parametrize("args, kwargs, named", [
    ((object(), Decimal(1), (1, 2)), {}, "argument 1"),
    ((datetime.date.today(), Decimal(1), (1, 2)), {"note": {1: "int key"}}, "keyword argument 'note'"),
    ((datetime.date.today(), float("nan"), (1, 2)), {}, "argument 2"),
])
def test_a_value_json_cannot_carry_is_refused_naming_the_argument(
        app: Dict[str, Any], sys_db_url: str, args: Tuple[Any, ...], kwargs: Dict[str, Any], named: str) -> None:
    workflow_id = new_id("refused")
    with SetWorkflowID(workflow_id), pytest.raises(PortableWorkflowError, match=f"{named} of workflow") as raised:
        app["plan"](*args, **kwargs)
    assert "portable JSON" in str(raised.value)
    # Refused before anything was written.
    where = "workflow_uuid = %s"
    assert query(sys_db_url, f"SELECT 1 FROM {qualified(sys_db_url, 'workflow_status')} WHERE {where}",
                 (workflow_id,)) == []


def test_an_unknown_serialization_type_is_refused(app: Dict[str, Any]) -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="Invalid serialization_type 'xml'"):
        DBOS.workflow(serialization_type="xml")  # type: ignore[arg-type]
    with pytest.raises(DBOSInvalidArgumentError, match="serialization_type"):
        DBOS.send("anyone", 1, serialization_type="yaml")  # type: ignore[arg-type]


# ----------------------------------------------------------------------
# Messages, and replay from recorded steps
# ----------------------------------------------------------------------


def test_portable_send_and_events_from_a_native_workflow(app: Dict[str, Any], sys_db_url: str) -> None:
    receiver = DBOS.start_workflow(app["waiter"], "mail")
    with SetWorkflowID("sender-1"):
        app["native_sender"](receiver.workflow_id, {"n": [1, 2]})
    assert receiver.get_result() == {"n": [1, 2]}
    message, serialization = row(sys_db_url, "notifications", "message, serialization",
                                 "destination_uuid = %s", (receiver.workflow_id,))
    assert (json.loads(message), serialization) == ({"n": [1, 2]}, "portable_json")
    events = query(sys_db_url, f"SELECT key, serialization FROM {qualified(sys_db_url, 'workflow_events')} "
                               "WHERE workflow_uuid = %s ORDER BY key", ("sender-1",))
    assert events == [("private", None), ("shared", "portable_json")]
    assert DBOS.get_all_events("sender-1") == {"private": {"n": [1, 2]}, "shared": {"n": [1, 2]}}


def test_async_twins_and_streams_take_serialization_type(app: Dict[str, Any], sys_db_url: str) -> None:
    receiver = DBOS.start_workflow(app["waiter"], "mail")
    with SetWorkflowID("async-1"):
        asyncio.run(app["async_sender"](receiver.workflow_id))
    assert receiver.get_result() == {"from": "async"}
    assert row(sys_db_url, "workflow_events", "value, serialization", "workflow_uuid = %s",
               ("async-1",)) == ("[1]", "portable_json")
    stored = query(sys_db_url, f'SELECT value, serialization FROM {qualified(sys_db_url, "streams")} '
                               'WHERE workflow_uuid = %s ORDER BY "offset"', ("async-1",))
    assert stored[0] == ('{"line":1}', "portable_json") and stored[1][1] is None  # the second one pickled
    # Each value is read in its own format; the stream ends at its close marker.
    assert list(DBOS.read_stream("async-1", "log")) == [{"line": 1}, ("pickled", 2)]


def test_a_received_portable_message_replays_after_recovery(app: Dict[str, Any], sys_db_url: str) -> None:
    handle = DBOS.start_workflow(app["portable_waiter"], "in")
    DBOS.send(handle.workflow_id, ["from", "outside"], "in", serialization_type=PORTABLE)
    assert handle.get_result() == ["from", "outside"]
    # The receive recorded the message as it came, with its format beside it.
    output, serialization = row(sys_db_url, "operation_outputs", "output, serialization",
                                "workflow_uuid = %s AND function_name = %s", (handle.workflow_id, "DBOS.recv"))
    assert (json.loads(output), serialization) == (["from", "outside"], "portable_json")
    table = qualified(sys_db_url, "workflow_status")
    execute(sys_db_url, f"UPDATE {table} SET status = 'PENDING', output = NULL WHERE workflow_uuid = %s",
            (handle.workflow_id,))
    launched = peek_engine()
    assert launched is not None
    assert recover_one(launched, handle.workflow_id).get_result() == ["from", "outside"]
    steps = DBOS.list_workflow_steps(handle.workflow_id)
    assert [s["output"] for s in steps if s["function_name"] == "DBOS.recv"] == [["from", "outside"]]


# ----------------------------------------------------------------------
# Enqueued by a client, run by this process
# ----------------------------------------------------------------------


def test_client_enqueues_portably_and_dates_come_back_by_their_hints(app: Dict[str, Any], sys_db_url: str) -> None:
    client = DBOSClient(system_database_url=sys_db_url)
    try:
        options: EnqueueOptions = {"workflow_name": app["when"].dbos_function_name, "queue_name": "portable-q",
                                   "serialization_type": PORTABLE}
        at = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=datetime.timezone.utc)
        handle = client.enqueue(options, datetime.date(2024, 5, 6), at, "2024-05-06")
        serialization, inputs = row(sys_db_url, "workflow_status", "serialization, inputs", "workflow_uuid = %s",
                                    (handle.workflow_id,))
        assert serialization == "portable_json"
        assert json.loads(inputs)["positionalArgs"] == ["2024-05-06", "2024-05-06T07:08:09.123Z", "2024-05-06"]
        # The worker gave the body dates where its hints ask for them, and left the string a string.
        assert handle.get_result(polling_interval_sec=0.05) == ["date", "datetime", "str", at.isoformat()]
    finally:
        client.destroy()


# ----------------------------------------------------------------------
# From plain SQL (PostgreSQL): psql enqueues and sends, a worker here runs
# ----------------------------------------------------------------------


@pytest.fixture
def postgres_only(backend: str) -> None:
    if backend != "postgres":
        pytest.skip("the SQL functions exist on PostgreSQL only")


def psql(url: str, script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in ``psql``, stopping at the first error, as an operator would."""
    return subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url], input=script,
                          capture_output=True, text=True, timeout=WAIT_S)


def enqueue_sql(name: str, workflow_id: str, *, extra: str = "") -> str:
    args = "ARRAY['\"2024-05-06\"'::json, '\"2024-05-06T07:08:09.123Z\"'::json, '\"2024-05-06\"'::json]"
    return (f"SELECT dbos.enqueue_workflow('{name}', 'portable-q', {args}, "
            f"workflow_id => '{workflow_id}'{extra});\n")


def exists(url: str, workflow_id: str) -> bool:
    sql = f"SELECT 1 FROM {qualified(url, 'workflow_status')} WHERE workflow_uuid = %s"
    return bool(query(url, sql, (workflow_id,)))


def test_a_psql_transaction_enqueues_a_workflow_a_worker_completes(
        postgres_only: None, app: Dict[str, Any], sys_db_url: str) -> None:
    name = app["when"].dbos_function_name
    # The application's own write and the enqueue commit together (the outbox pattern)...
    done = psql(sys_db_url, "BEGIN;\nCREATE TABLE orders (id TEXT PRIMARY KEY);\n"
                            "INSERT INTO orders VALUES ('o-1');\n" + enqueue_sql(name, "sql-1") + "COMMIT;\n")
    assert done.returncode == 0, done.stderr
    # ... or not at all.
    undone = psql(sys_db_url, "BEGIN;\n" + enqueue_sql(name, "sql-rolled-back") + "ROLLBACK;\n")
    assert undone.returncode == 0, undone.stderr
    assert DBOS.retrieve_workflow("sql-1").get_result() == [
        "date", "datetime", "str", "2024-05-06T07:08:09.123000+00:00"]
    assert row(sys_db_url, "workflow_status", "status, serialization, queue_name", "workflow_uuid = %s",
               ("sql-1",)) == ("SUCCESS", "portable_json", "portable-q")
    assert not exists(sys_db_url, "sql-rolled-back")


def test_sql_enqueue_refuses_bad_input_and_duplicates(
        postgres_only: None, app: Dict[str, Any], sys_db_url: str) -> None:
    name = app["when"].dbos_function_name
    empty = psql(sys_db_url, "SELECT dbos.enqueue_workflow('', 'portable-q');\n")
    assert empty.returncode != 0 and "Workflow name cannot be null or empty" in empty.stderr
    named = psql(sys_db_url, f"SELECT dbos.enqueue_workflow('{name}', 'portable-q', named_args => '[1]');\n")
    assert named.returncode != 0 and "Named args must be a JSON object" in named.stderr
    dedup = ", deduplication_id => 'once'"
    twice = psql(sys_db_url, "BEGIN;\n" + enqueue_sql(name, "dup-1", extra=dedup)
                 + enqueue_sql(name, "dup-2", extra=dedup) + "COMMIT;\n")
    assert twice.returncode != 0 and "DBOS queue duplicated" in twice.stderr
    assert not exists(sys_db_url, "dup-1") and not exists(sys_db_url, "dup-2")


def test_the_sql_functions_live_in_a_configured_schema(postgres_only: None, fresh_config: DBOSConfig) -> None:
    url = fresh_config["system_database_url"]
    assert url is not None

    @DBOS.workflow()
    def greet(name: str) -> str:
        return f"hello {name}"

    Queue("schema-q")
    DBOS(config={**fresh_config, "dbos_system_schema": "app_sys"})
    DBOS.launch()
    script = (f"SELECT app_sys.enqueue_workflow('{getattr(greet, 'dbos_function_name')}', 'schema-q', "
              "ARRAY['\"ann\"'::json], workflow_id => 'schema-1');\n")
    done = psql(url, script)
    assert done.returncode == 0, done.stderr
    assert DBOS.retrieve_workflow("schema-1").get_result() == "hello ann"
    assert query(url, "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                      "WHERE n.nspname = 'dbos' AND p.proname = 'enqueue_workflow'") == []


def test_sql_send_message_reaches_a_waiting_recv(postgres_only: None, app: Dict[str, Any], sys_db_url: str) -> None:
    receiver = DBOS.start_workflow(app["waiter"], "sql")
    sent = psql(sys_db_url, f"BEGIN;\nSELECT dbos.send_message('{receiver.workflow_id}', "
                            "'{\"a\": [1, true, null]}'::json, 'sql', 'key-1');\nCOMMIT;\n")
    assert sent.returncode == 0, sent.stderr
    assert receiver.get_result() == {"a": [1, True, None]}
    (serialization,) = row(sys_db_url, "notifications", "serialization", "message_uuid = %s", ("key-1",))
    assert serialization == "portable_json"
    missing = psql(sys_db_url, "SELECT dbos.send_message('nobody', '1'::json);\n")
    assert missing.returncode != 0 and "DBOS non-existent workflow" in missing.stderr


def test_rows_in_another_languages_format_are_listed_raw(app: Dict[str, Any], sys_db_url: str) -> None:
    receiver = DBOS.start_workflow(app["waiter"], "mail")
    DBOS.send(receiver.workflow_id, "hi", "mail", serialization_type=PORTABLE)
    receiver.get_result()
    # As a TypeScript SDK would have marked them: Python cannot read that format.
    for table in ("workflow_status", "operation_outputs"):
        execute(sys_db_url, f"UPDATE {qualified(sys_db_url, table)} SET serialization = 'js_superjson' "
                            "WHERE workflow_uuid = %s", (receiver.workflow_id,))
    (stored,) = row(sys_db_url, "workflow_status", "output", "workflow_uuid = %s", (receiver.workflow_id,))
    status = DBOS.get_workflow_status(receiver.workflow_id)
    assert status is not None and status.output == stored  # the stored text, with a warning
    steps = DBOS.list_workflow_steps(receiver.workflow_id)
    assert [s["output"] for s in steps if s["function_name"] == "DBOS.recv"] == ['"hi"']
