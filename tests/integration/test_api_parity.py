"""The rest of DBOS Transact 2.31.1's API, on the chosen backend: asyncio_wait,
send to forks, read_stream_offset, registration, alert handlers, the
application-version twins, the client's writes in the caller's transaction,
and what an operator reads in the log.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from contextlib import closing
from typing import Any, Dict, Iterator, List

import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from dbos import (
    DBOS,
    DBOSClient,
    DBOSConfig,
    DBOSConfiguredInstance,
    DefaultSerializer,
    EnqueueOptions,
    Queue,
    SendMessage,
    SetWorkflowID,
)
from dbos._engine.engine import peek_engine
from dbos._engine.recovery import recover_pending
from dbos.error import (
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSStreamNondeterminismError,
    DBOSStreamTimeoutError,
)
from tests.probe import execute, qualified, sqlite_path

WAIT_S = 30.0


@pytest.fixture
def app(config: DBOSConfig) -> Iterator[Dict[str, Any]]:
    Queue("parity-q")
    release = threading.Event()

    @DBOS.workflow(name="listener")
    def listener() -> Any:
        DBOS.set_event("listening", True)
        return DBOS.recv("go", timeout_seconds=WAIT_S)

    @DBOS.workflow(name="job")
    def job(x: int) -> int:
        return x * 2

    @DBOS.workflow(name="writer")
    def writer() -> str:
        DBOS.write_stream("log", "a")
        DBOS.write_stream("log", "b")
        DBOS.close_stream("log")
        DBOS.write_stream("log", "after close")  # not prevented; readers stop at the close
        return "done"

    @DBOS.workflow(name="offset_reader")
    def offset_reader(workflow_id: str) -> Any:
        return DBOS.read_stream_offset(workflow_id, "log", 1)

    @DBOS.workflow(name="two_readers")
    def two_readers(workflow_id: str) -> Any:
        first = DBOS.read_stream(workflow_id, "log")
        next(first)
        return next(DBOS.read_stream(workflow_id, "log"))

    @DBOS.workflow(name="fails_in_background")
    def fails_in_background() -> None:
        raise ValueError("card declined")

    @DBOS.workflow(name="blocked")
    def blocked() -> str:
        release.wait(WAIT_S)
        return "released"

    DBOS(config=config)
    DBOS.launch()
    yield {"listener": listener, "job": job, "writer": writer, "offset_reader": offset_reader,
           "two_readers": two_readers, "fails_in_background": fails_in_background, "blocked": blocked,
           "release": release}
    release.set()


@pytest.fixture
def client(app: Dict[str, Any], sys_db_url: str) -> Iterator[DBOSClient]:
    client = DBOSClient(system_database_url=sys_db_url)
    yield client
    client.destroy()


def start_listener(app: Dict[str, Any], workflow_id: str) -> Any:
    with SetWorkflowID(workflow_id):
        handle = DBOS.start_workflow(app["listener"])
    assert DBOS.get_event(workflow_id, "listening", timeout_seconds=WAIT_S) is True
    return handle


# ----------------------------------------------------------------------
# send_to_forks, send_bulk
# ----------------------------------------------------------------------


def test_send_to_forks_reaches_the_forks_only_when_asked(app: Dict[str, Any]) -> None:
    original = start_listener(app, "root")
    fork = DBOS.fork_workflow("root", 2)  # replays set_event, waits in recv again
    assert fork.get_status().status in ("ENQUEUED", "PENDING")
    DBOS.send("root", "root only", "go")
    assert original.get_result() == "root only"
    DBOS.send("root", "to every fork", "go", send_to_forks=True)
    # FIFO per topic: had "root only" reached the fork, it would have received that first.
    assert fork.get_result() == "to every fork"


def test_send_bulk_to_forks_and_its_async_twin(app: Dict[str, Any]) -> None:
    first, second = start_listener(app, "b1"), start_listener(app, "b2")
    fork = DBOS.fork_workflow("b1", 2)
    DBOS.send_bulk([SendMessage("b1", "one", "go")], send_to_forks=True)
    asyncio.run(DBOS.send_bulk_async([SendMessage("b2", "two", "go")], send_to_forks=False))
    assert (first.get_result(), second.get_result(), fork.get_result()) == ("one", "two", "one")
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.send("no-such", "x", send_to_forks=True)


def test_send_to_forks_from_a_workflow_is_one_checkpointed_step(app: Dict[str, Any]) -> None:
    original = start_listener(app, "wf-root")
    fork = DBOS.fork_workflow("wf-root", 2)

    @DBOS.workflow(name="forwarder")
    def forwarder() -> None:
        DBOS.send("wf-root", "from a workflow", "go", send_to_forks=True)

    with SetWorkflowID("fwd"):
        forwarder()
    assert (original.get_result(), fork.get_result()) == ("from a workflow", "from a workflow")
    assert [s["function_name"] for s in DBOS.list_workflow_steps("fwd")] == ["DBOS.send"]


# ----------------------------------------------------------------------
# Streams
# ----------------------------------------------------------------------


def test_read_stream_offset_outside_and_inside_a_workflow(app: Dict[str, Any]) -> None:
    with SetWorkflowID("w"):
        assert app["writer"]() == "done"
    assert DBOS.read_stream_offset("w", "log", 0) == "a"
    assert asyncio.run(DBOS.read_stream_offset_async("w", "log", 1)) == "b"
    with pytest.raises(DBOSStreamTimeoutError, match="before the stream ended"):
        DBOS.read_stream_offset("w", "log", 2)
    with SetWorkflowID("r"):
        assert app["offset_reader"]("w") == "b"
    steps = DBOS.list_workflow_steps("r")
    assert [s["function_name"] for s in steps] == ["DBOS.readStreamOffset"]


def test_streams_end_at_the_close_marker_for_every_reader(app: Dict[str, Any], client: DBOSClient) -> None:
    with SetWorkflowID("w"):
        app["writer"]()

    async def read_async(source: Any) -> List[Any]:
        return [v async for v in source.read_stream_async("w", "log")]

    for source in (DBOS, client):
        assert list(source.read_stream("w", "log")) == ["a", "b"]
        assert asyncio.run(read_async(source)) == ["a", "b"]
    with pytest.raises(DBOSStreamTimeoutError):
        client.read_stream_offset("w", "log", 2)


def test_a_stream_closed_as_dbos_transact_closes_it_ends_there(app: Dict[str, Any], client: DBOSClient,
                                                              sys_db_url: str) -> None:
    """DBOS Transact writes the close marker as portable JSON whatever the serializer:
    readers must stop there, not fail to decode it or hand it out as a value."""
    handle = start_listener(app, "open-writer")  # still running: only the marker can end the stream
    table = qualified(sys_db_url, "streams")
    insert = f'INSERT INTO {table} (workflow_uuid, key, value, "offset", function_id) VALUES (%s, %s, %s, %s, %s)'
    execute(sys_db_url, insert, ("open-writer", "log", DefaultSerializer().serialize("a"), 0, 1))
    execute(sys_db_url, insert, ("open-writer", "log", '"__DBOS_STREAM_CLOSED__"', 1, 2))
    assert list(client.read_stream("open-writer", "log")) == ["a"]
    assert list(DBOS.read_stream("open-writer", "log")) == ["a"]
    assert handle.get_status().status == "PENDING"
    DBOS.send("open-writer", "done", "go")
    assert handle.get_result() == "done"


def test_two_stream_reads_in_progress_at_once_in_a_workflow_are_refused(app: Dict[str, Any]) -> None:
    with SetWorkflowID("w"):
        app["writer"]()
    with SetWorkflowID("two"), pytest.raises(DBOSStreamNondeterminismError, match="another of its stream reads"):
        app["two_readers"]("w")


# ----------------------------------------------------------------------
# asyncio_wait
# ----------------------------------------------------------------------


def test_asyncio_wait_is_replayed_with_the_partition_first_recorded(app: Dict[str, Any]) -> None:
    slow_done = {"gate": False}

    async def value(name: str, gate: "asyncio.Event | None") -> str:
        if gate is not None:
            await gate.wait()
        return name

    @DBOS.workflow(name="race")
    async def race() -> List[str]:
        gate = None if slow_done["gate"] else asyncio.Event()
        done, pending = await DBOS.asyncio_wait([value("fast", None), value("slow", gate)],
                                                return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return sorted(t.result() for t in done)

    with SetWorkflowID("race-1"):
        assert asyncio.run(race()) == ["fast"]
    assert [s["output"] for s in DBOS.list_workflow_steps("race-1")] == [[0]]
    slow_done["gate"] = True  # now both finish at once; the replay still sees only the first
    fork = DBOS.fork_workflow("race-1", 2)
    assert fork.get_result() == ["fast"]

    async def plain() -> int:  # outside a workflow: plain asyncio.wait
        done, _ = await DBOS.asyncio_wait([value("a", None), value("b", None)])
        return len(done)

    assert asyncio.run(plain()) == 2


# ----------------------------------------------------------------------
# Registration and alert handlers
# ----------------------------------------------------------------------


def test_register_instance_names_the_object_recovery_runs_on(config: DBOSConfig) -> None:
    @DBOS.dbos_class("Ledger")
    class Ledger:
        def __init__(self, config_name: str) -> None:
            self.config_name = config_name

        @DBOS.workflow()
        def total(self, x: int) -> str:
            return f"{self.config_name}:{x}"

    ledger = Ledger("eu")
    DBOS.register_instance(ledger)
    DBOS.register_instance(ledger)  # the same object again: fine
    with pytest.raises(DBOSException, match="Another instance is already registered"):
        DBOS.register_instance(Ledger("eu"))
    with pytest.raises(DBOSException, match="needs a config_name"):
        DBOS.register_instance(object())
    DBOS(config=config)
    DBOS.launch()
    with SetWorkflowID("ledger-1"):
        assert ledger.total(3) == "eu:3"
    status = DBOS.get_workflow_status("ledger-1")
    assert status is not None and (status.class_name, status.config_name) == ("Ledger", "eu")


def test_alert_handler_one_per_process_before_launch(config: DBOSConfig) -> None:
    def handler(name: str, message: str, metadata: Dict[str, str]) -> None: ...

    with pytest.raises(DBOSException, match="constructed first"):
        DBOS.alert_handler(handler)
    DBOS(config=config)
    assert DBOS.alert_handler(handler) is handler
    with pytest.raises(DBOSException, match="already defined"):
        DBOS.alert_handler(handler)
    DBOS.launch()
    DBOS.destroy()
    DBOS(config=config)
    DBOS.launch()
    with pytest.raises(DBOSException, match="before DBOS.launch"):
        DBOS.alert_handler(handler)


def test_configured_instance_registers_through_the_same_path(config: DBOSConfig) -> None:
    @DBOS.dbos_class("Shop")
    class Shop(DBOSConfiguredInstance):
        pass

    Shop("a")
    with pytest.raises(DBOSException, match="Another instance is already registered as 'Shop/a'"):
        Shop("a")


# ----------------------------------------------------------------------
# Application versions
# ----------------------------------------------------------------------


def test_application_version_calls_have_async_twins(app: Dict[str, Any]) -> None:
    versions = DBOS.list_application_versions()
    assert asyncio.run(DBOS.list_application_versions_async()) == versions
    latest = asyncio.run(DBOS.get_latest_application_version_async())
    assert latest == DBOS.get_latest_application_version() and latest["version_name"] == DBOS.application_version
    DBOS.set_latest_application_version(latest.version_name, application_name="test-app")
    asyncio.run(DBOS.set_latest_application_version_async(latest.version_name))
    assert DBOS.get_latest_application_version().version_name == latest.version_name


# ----------------------------------------------------------------------
# DBOSClient: writes inside the caller's transaction
# ----------------------------------------------------------------------


def sqlalchemy_engine(url: str) -> sa.Engine:
    path = sqlite_path(url)
    return sa.create_engine(f"sqlite:///{path}" if path is not None else url.replace(
        "postgresql://", "postgresql+psycopg://"))


def test_send_in_transaction_delivers_on_commit_only(app: Dict[str, Any], client: DBOSClient,
                                                     sys_db_url: str) -> None:
    handle = start_listener(app, "inbox")
    engine = sqlalchemy_engine(sys_db_url)
    try:
        with engine.connect() as conn:
            with conn.begin() as transaction:
                client.send_in_transaction(conn, "inbox", "rolled back", "go")
                transaction.rollback()
            with conn.begin():
                client.send_bulk_in_transaction(conn, [SendMessage("inbox", "committed", "go")])
        assert handle.get_result() == "committed"
        with engine.begin() as conn, pytest.raises(DBOSNonExistentWorkflowError):
            client.send_in_transaction(conn, "no-such", "x")
    finally:
        engine.dispose()


def test_enqueue_in_transaction_on_a_connection_or_a_session(app: Dict[str, Any], client: DBOSClient,
                                                             sys_db_url: str) -> None:
    engine = sqlalchemy_engine(sys_db_url)
    options = EnqueueOptions(queue_name="parity-q", workflow_name="job")
    try:
        with engine.connect() as conn, conn.begin() as transaction:
            dropped = client.enqueue_in_transaction(conn, EnqueueOptions(queue_name="parity-q", workflow_name="job", workflow_id="dropped"), 1)
            transaction.rollback()
        with Session(engine) as session:
            kept = client.enqueue_in_transaction(session, EnqueueOptions(queue_name="parity-q", workflow_name="job", workflow_id="kept"), 21)
            session.commit()
        assert kept.get_result() == 42
        assert DBOS.get_workflow_status(dropped.workflow_id) is None
        with engine.begin() as conn, pytest.raises(DBOSException, match="return-existing"):
            client.enqueue_in_transaction(conn, EnqueueOptions(
                queue_name="parity-q", workflow_name="job", duplication_policy="return-existing",
                deduplication_id="d"), 1)
    finally:
        engine.dispose()
    with pytest.raises(DBOSException, match="SQLAlchemy Connection or Session, or a DB-API connection"):
        client.enqueue_in_transaction("not a connection", options, 1)


def test_in_transaction_writes_on_a_plain_driver_connection(app: Dict[str, Any], client: DBOSClient,
                                                            sys_db_url: str) -> None:
    handle = start_listener(app, "plain")
    path = sqlite_path(sys_db_url)
    conn: Any = sqlite3.connect(path) if path is not None else psycopg2.connect(sys_db_url)
    with closing(conn):
        enqueued = client.enqueue_in_transaction(conn, EnqueueOptions(queue_name="parity-q", workflow_name="job"), 5)
        client.send_in_transaction(conn, "plain", "over DB-API", "go")
        conn.commit()
    assert (enqueued.get_result(), handle.get_result()) == (10, "over DB-API")


# ----------------------------------------------------------------------
# What an operator reads in the log
# ----------------------------------------------------------------------


def test_a_background_workflow_that_fails_logs_one_line(app: Dict[str, Any],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="dbos"):
        with SetWorkflowID("bg-fail"):
            handle = DBOS.start_workflow(app["fails_in_background"])
        with pytest.raises(ValueError):
            handle.get_result()
        with SetWorkflowID("direct-fail"), pytest.raises(ValueError):
            app["fails_in_background"]()  # its caller gets the error: nothing logged
    lines = [r.getMessage() for r in caplog.records if "failed:" in r.getMessage()]
    assert lines == ["Workflow bg-fail (fails_in_background) failed: ValueError: card declined"]


def test_recovery_logs_its_start_and_its_end_with_counts(app: Dict[str, Any], sys_db_url: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    for n in range(3):
        with SetWorkflowID(f"done-{n}"):
            app["job"](n)
    table = qualified(sys_db_url, "workflow_status")
    execute(sys_db_url, f"UPDATE {table} SET status = 'PENDING', output = NULL WHERE workflow_uuid LIKE %s",
            ("done-%",))
    engine = peek_engine()
    assert engine is not None
    finished = FinishedLine()
    logging.getLogger("dbos").addHandler(finished)
    try:
        with caplog.at_level(logging.INFO, logger="dbos"):
            handles = recover_pending(engine)  # finds the three PENDING ones
            assert sorted(h.get_result() for h in handles) == [0, 2, 4]
            # Written by whichever thread ends last, after the results are in: wait for it.
            assert finished.wait(WAIT_S)
    finally:
        logging.getLogger("dbos").removeHandler(finished)
    assert "Recovering 3 pending workflow(s)" in [r.getMessage() for r in caplog.records]
    # Read from the handler that saw it: caplog's handler (on the root logger)
    # may not have it yet, since the line is written on another thread.
    assert finished.message == "Recovery finished: 3 of 3 pending workflow(s) resumed here (3 succeeded, 0 failed or stopped)"


class FinishedLine(logging.Handler):
    """Sets an event when recovery's last line is logged."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen = threading.Event()
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Recovery finished"):
            self.message = record.getMessage()
            self.seen.set()

    def wait(self, timeout: float) -> bool:
        return self.seen.wait(timeout)
