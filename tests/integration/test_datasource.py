"""The application-database datasources against real databases.

Every test runs for both adapters (Peewee and plain DB-API) on the backend
chosen with ``--backend``. The user's rows and ``transaction_outputs`` must
commit or vanish together; failures worth retrying must be recognised as
such; no connection may stay checked out or in a transaction afterwards.
What was committed is always checked through a separate plain connection.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import peewee as pw
import psycopg2
import pytest

from tests.probe import driver_connection

from dbos._datasource import DBAPIDatasource, Datasource, PeeweeDatasource, is_retryable_error
from dbos.error import DBOSException
from dbos._sysdb.backend import backend_for
from dbos._sysdb.url import DatabaseURL

Row = Tuple[Any, ...]
WAIT_S = 30  # upper bound for thread hand-offs; reached only when a test is already failing
THREADS = 8
TRANSACTIONS_PER_THREAD = 5


# ----------------------------------------------------------------------
# The databases under test, and a plain observer of what is committed
# ----------------------------------------------------------------------


def raw_connect(url: str) -> Any:
    return driver_connection(url, WAIT_S)


def qmark(url: str, sql: str) -> str:
    """Test SQL is written with ``?``; psycopg2 wants ``%s``."""
    return sql if url.startswith("sqlite") else sql.replace("?", "%s")


def observe(url: str, sql: str, params: Sequence[Any] = ()) -> List[Row]:
    conn = raw_connect(url)
    try:
        cursor = conn.cursor()
        if params:
            cursor.execute(qmark(url, sql), tuple(params))
        else:
            cursor.execute(sql)  # psycopg2 then leaves any % alone
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []
    finally:
        conn.close()


def item_names(url: str) -> List[str]:
    return [r[0] for r in observe(url, "SELECT name FROM items ORDER BY name")]


def outputs_table(url: str) -> str:
    return "transaction_outputs" if url.startswith("sqlite") else "dbos.transaction_outputs"


def output_rows(url: str) -> List[Row]:
    return observe(
        url,
        "SELECT workflow_uuid, function_id, function_name, output, error, executor_id, "
        f"txn_id, txn_snapshot FROM {outputs_table(url)} ORDER BY workflow_uuid, function_id",
    )


def assert_no_open_transaction(url: str) -> None:
    """Nobody holds a transaction: the server lists none, or SQLite's write lock is free."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(DatabaseURL.parse(url).sqlite_path, timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")  # "database is locked" at once if anyone writes
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    rows = observe(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = ? AND state LIKE 'idle in transaction%%'",
        (DatabaseURL.parse(url).database,),
    )
    assert rows == [(0,)]


# ----------------------------------------------------------------------
# The two adapters, each with a user table written the way its users would
# ----------------------------------------------------------------------


class Item(pw.Model):
    name = pw.TextField(unique=True)

    class Meta:
        table_name = "items"


class Harness:
    """One adapter over the app database, and how user code writes through it."""

    kind: str
    ds: Datasource

    def __init__(self, url: str) -> None:
        self.url = url

    def execute(self, session: Any, sql: str, params: Sequence[Any] = ()) -> List[Row]:
        raise NotImplementedError

    def add_item(self, session: Any, name: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.ds.close()


class PeeweeHarness(Harness):
    kind = "peewee"

    def __init__(self, url: str, ds: Optional[PeeweeDatasource] = None) -> None:
        """Over ``ds``, or else over a pooled database opened from ``url`` with the items table."""
        super().__init__(url)
        self.peewee = ds or PeeweeDatasource.from_url(url)
        self.ds = self.peewee
        if ds is None:
            Item.bind(self.peewee.database)
            with self.peewee.database.connection_context():
                Item.create_table()

    def pool(self) -> Any:
        return self.peewee.database

    def execute(self, session: Any, sql: str, params: Sequence[Any] = ()) -> List[Row]:
        cursor = session.execute_sql(qmark(self.url, sql), tuple(params))
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []

    def add_item(self, session: Any, name: str) -> None:
        assert session is Item._meta.database  # the models' own database is the session
        Item.create(name=name)


class DBAPIHarness(Harness):
    kind = "dbapi"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        parsed = DatabaseURL.parse(url)
        backend_for(parsed).create_database()
        self.connects = 0
        self._count_lock = threading.Lock()
        self.dbapi = DBAPIDatasource(self.connect, dialect=parsed.backend)
        self.ds = self.dbapi
        key = "INTEGER PRIMARY KEY" if parsed.is_sqlite else "SERIAL PRIMARY KEY"
        observe(url, f"CREATE TABLE items (id {key}, name TEXT NOT NULL UNIQUE)")

    def connect(self) -> Any:
        with self._count_lock:
            self.connects += 1
        parsed = DatabaseURL.parse(self.url)
        if parsed.is_sqlite:
            # Default check_same_thread: the datasource must keep connections per thread.
            return sqlite3.connect(parsed.sqlite_path, timeout=WAIT_S)
        return psycopg2.connect(dbname=parsed.database, **parsed.connect_kwargs())

    def execute(self, session: Any, sql: str, params: Sequence[Any] = ()) -> List[Row]:
        cursor = session.cursor()
        cursor.execute(qmark(self.url, sql), tuple(params))
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []

    def add_item(self, session: Any, name: str) -> None:
        self.execute(session, "INSERT INTO items (name) VALUES (?)", (name,))


def make_harness(kind: str, url: str) -> Harness:
    return PeeweeHarness(url) if kind == "peewee" else DBAPIHarness(url)


@pytest.fixture(params=["peewee", "dbapi"])
def bare(request: pytest.FixtureRequest, empty_db_url: str) -> Iterator[Harness]:
    """An adapter whose ``transaction_outputs`` does not exist yet."""
    harness = make_harness(str(request.param), empty_db_url)
    yield harness
    harness.close()


@pytest.fixture
def h(bare: Harness) -> Harness:
    """An adapter with ``transaction_outputs`` in place."""
    bare.ds.ensure_schema()
    return bare


def add_item_and_record(h: Harness, name: str, function_id: int = 1) -> None:
    with h.ds.begin("SERIALIZABLE") as session:
        h.add_item(session, name)
        h.ds.record_output(session, dict(workflow_id=f"wf-{name}", step_id=function_id, name="add_item", output=f"out-{name}", error=None, executor_id="exec-1"))


class Boom(Exception):
    pass


# ----------------------------------------------------------------------
# ensure_schema
# ----------------------------------------------------------------------

EXPECTED_COLUMNS = [
    "workflow_uuid", "function_id", "output", "error", "txn_id",
    "txn_snapshot", "executor_id", "function_name", "created_at",
]  # fmt: skip


def table_layout(url: str) -> Tuple[List[str], List[str], List[str]]:
    """(schemas holding the table, its columns, its index names)."""
    if url.startswith("sqlite"):
        tables = observe(url, "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'transaction_outputs'")
        columns = [r[1] for r in observe(url, "PRAGMA table_info(transaction_outputs)")]
        indexes = observe(url, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'transaction_outputs'")
        return ["main"] * len(tables), columns, sorted(r[0] for r in indexes)
    schemas = observe(url, "SELECT table_schema FROM information_schema.tables WHERE table_name = 'transaction_outputs'")
    columns = observe(
        url,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'dbos' "
        "AND table_name = 'transaction_outputs' ORDER BY ordinal_position",
    )
    indexes = observe(url, "SELECT indexname FROM pg_indexes WHERE schemaname = 'dbos' AND tablename = 'transaction_outputs'")
    return [r[0] for r in schemas], [r[0] for r in columns], sorted(r[0] for r in indexes)


def test_ensure_schema_creates_the_table_in_place_and_is_idempotent(bare: Harness) -> None:
    bare.ds.ensure_schema()
    bare.ds.ensure_schema()
    schemas, columns, indexes = table_layout(bare.url)
    assert schemas == (["main"] if bare.url.startswith("sqlite") else ["dbos"])
    assert columns == EXPECTED_COLUMNS
    assert "transaction_outputs_created_at_index" in indexes
    assert_no_open_transaction(bare.url)


def test_ensure_schema_keeps_rows_and_adds_function_name_to_an_old_table(bare: Harness) -> None:
    table = outputs_table(bare.url)
    if not bare.url.startswith("sqlite"):
        observe(bare.url, "CREATE SCHEMA dbos")
    observe(
        bare.url,
        f"CREATE TABLE {table} (workflow_uuid TEXT, function_id INTEGER, output TEXT, error TEXT, "
        "txn_id TEXT, txn_snapshot TEXT, executor_id TEXT, created_at BIGINT NOT NULL, "
        "PRIMARY KEY (workflow_uuid, function_id))",
    )
    observe(bare.url, f"INSERT INTO {table} (workflow_uuid, function_id, output, created_at) VALUES ('old', 1, 'x', 0)")
    bare.ds.ensure_schema()
    assert sorted(table_layout(bare.url)[1]) == sorted(EXPECTED_COLUMNS)  # added last
    with bare.ds.begin("READ COMMITTED") as session:
        assert bare.ds.recorded_output(session, "old", 1) == ("x", None)
    assert observe(bare.url, f"SELECT function_name FROM {table}") == [("",)]


def test_created_at_has_a_default_in_milliseconds(h: Harness) -> None:
    table = outputs_table(h.url)
    observe(h.url, f"INSERT INTO {table} (workflow_uuid, function_id) VALUES ('wf', 1)")
    with h.ds.begin("SERIALIZABLE") as session:
        h.ds.record_output(session, dict(workflow_id="wf", step_id=2, name="f", output=None, error=None, executor_id=None))
    defaulted, recorded = [r[0] for r in observe(h.url, f"SELECT created_at FROM {table} ORDER BY function_id")]
    assert abs(defaulted - recorded) < 60_000 and recorded > 1_600_000_000_000


# ----------------------------------------------------------------------
# Atomicity and the recorded output
# ----------------------------------------------------------------------


def test_commit_writes_the_user_row_and_the_output_together(h: Harness) -> None:
    add_item_and_record(h, "apple")
    assert item_names(h.url) == ["apple"]
    assert output_rows(h.url) == [("wf-apple", 1, "add_item", "out-apple", None, "exec-1", "", "")]
    assert_no_open_transaction(h.url)


def test_an_exception_rolls_back_both_and_is_reraised(h: Harness) -> None:
    raised = Boom("user code failed")
    with pytest.raises(Boom) as info:
        with h.ds.begin("SERIALIZABLE") as session:
            h.add_item(session, "pear")
            h.ds.record_output(session, dict(workflow_id="wf-pear", step_id=1, name="add_item", output="out", error=None, executor_id="exec-1"))
            raise raised
    assert info.value is raised
    assert item_names(h.url) == [] and output_rows(h.url) == []
    assert_no_open_transaction(h.url)
    add_item_and_record(h, "pear")  # the datasource is usable afterwards
    assert item_names(h.url) == ["pear"]


def test_recorded_output_returns_what_was_recorded_and_none_otherwise(h: Harness) -> None:
    with h.ds.begin("SERIALIZABLE") as session:
        assert h.ds.recorded_output(session, "wf", 1) is None
        h.ds.record_output(session, dict(workflow_id="wf", step_id=1, name="ok_fn", output="result", error=None, executor_id="exec-1"))
        h.ds.record_output(session, dict(workflow_id="wf", step_id=2, name="bad_fn", output=None, error="error text", executor_id=None))
        assert h.ds.recorded_output(session, "wf", 1) == ("result", None)  # visible in its own transaction
    with h.ds.begin("READ COMMITTED") as session:
        assert h.ds.recorded_output(session, "wf", 1) == ("result", None)
        assert h.ds.recorded_output(session, "wf", 2) == (None, "error text")
        assert h.ds.recorded_output(session, "wf", 3) is None
        assert h.ds.recorded_output(session, "other-wf", 1) is None


def test_a_duplicate_record_raises_and_rolls_the_transaction_back(h: Harness) -> None:
    add_item_and_record(h, "fig")
    with pytest.raises(Exception) as info:
        with h.ds.begin("SERIALIZABLE") as session:
            h.add_item(session, "plum")
            h.ds.record_output(session, dict(workflow_id="wf-plum", step_id=1, name="add_item", output="first", error=None, executor_id=None))
            h.ds.record_output(session, dict(workflow_id="wf-plum", step_id=1, name="add_item", output="second", error=None, executor_id=None))
    error = info.value
    integrity = (pw.IntegrityError, sqlite3.IntegrityError, psycopg2.IntegrityError)
    assert isinstance(error, integrity), repr(error)
    assert not h.ds.is_retryable(error)
    assert item_names(h.url) == ["fig"]
    assert [r[0] for r in output_rows(h.url)] == ["wf-fig"]
    assert_no_open_transaction(h.url)


def test_unknown_isolation_level_is_refused(h: Harness) -> None:
    with pytest.raises(ValueError, match="isolation_level"):
        with h.ds.begin("READ UNCOMMITTED"):  # type: ignore[arg-type]
            pass


# ----------------------------------------------------------------------
# Isolation and locking
# ----------------------------------------------------------------------


@pytest.mark.parametrize("level", ["SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED"])
def test_the_isolation_level_is_applied_on_postgres(h: Harness, backend: str, level: Any) -> None:
    if backend != "postgres":
        pytest.skip("SQLite transactions are always serializable")
    with h.ds.begin(level) as session:
        assert h.execute(session, "SHOW transaction_isolation") == [(level.lower(),)]


def test_sqlite_transactions_take_the_write_lock_at_begin(h: Harness, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite only")
    with h.ds.begin("READ COMMITTED"):
        # Nothing written yet, yet another writer is already shut out (BEGIN IMMEDIATE).
        with pytest.raises(sqlite3.OperationalError, match="locked") as info:
            assert_no_open_transaction(h.url)
    assert is_retryable_error(info.value)


# ----------------------------------------------------------------------
# is_retryable, on failures provoked for real
# ----------------------------------------------------------------------


def run_in_thread(work: Callable[[], None]) -> Tuple[threading.Thread, List[BaseException]]:
    errors: List[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, errors


def seed_items(h: Harness, *names: str) -> None:
    with h.ds.begin("READ COMMITTED") as session:
        for name in names:
            h.add_item(session, name)


def test_a_serialization_failure_is_retryable(h: Harness, backend: str) -> None:
    if backend != "postgres":
        pytest.skip("PostgreSQL only")
    seed_items(h, "shared")
    both_read, first_committed = threading.Barrier(2, timeout=WAIT_S), threading.Event()
    read = "SELECT name FROM items WHERE name = 'shared'"
    update = "UPDATE items SET name = ? WHERE name = 'shared'"

    def first() -> None:
        with h.ds.begin("SERIALIZABLE") as session:
            h.execute(session, read)
            both_read.wait()
            h.execute(session, update, ("first",))
        first_committed.set()

    thread, errors = run_in_thread(first)
    failure: Optional[BaseException] = None
    try:
        with h.ds.begin("SERIALIZABLE") as session:
            h.execute(session, read)  # the snapshot predates the first one's commit
            both_read.wait()
            assert first_committed.wait(WAIT_S)
            h.execute(session, update, ("second",))
    except Exception as exc:
        failure = exc
    thread.join(WAIT_S)
    assert errors == []
    assert failure is not None and not isinstance(failure, AssertionError), repr(failure)
    assert "could not serialize" in str(failure)
    if h.kind == "peewee":
        assert isinstance(failure, pw.OperationalError)  # Peewee's wrapper around the driver's error
    assert h.ds.is_retryable(failure)
    assert item_names(h.url) == ["first"]
    assert_no_open_transaction(h.url)


def test_a_deadlock_is_retryable(h: Harness, backend: str) -> None:
    if backend != "postgres":
        pytest.skip("PostgreSQL only")
    seed_items(h, "a", "b")
    both_locked = threading.Barrier(2, timeout=WAIT_S)

    def lock_in_order(first: str, second: str) -> Callable[[], None]:
        def work() -> None:
            with h.ds.begin("READ COMMITTED") as session:
                h.execute(session, "SET LOCAL deadlock_timeout = '50ms'")  # detect it quickly
                h.execute(session, "UPDATE items SET name = name WHERE name = ?", (first,))
                both_locked.wait()
                h.execute(session, "UPDATE items SET name = name WHERE name = ?", (second,))

        return work

    one, errors_one = run_in_thread(lock_in_order("a", "b"))
    two, errors_two = run_in_thread(lock_in_order("b", "a"))
    one.join(WAIT_S)
    two.join(WAIT_S)
    failures = errors_one + errors_two
    assert len(failures) == 1, failures  # the server aborts exactly one of them
    assert "deadlock detected" in str(failures[0])
    assert h.ds.is_retryable(failures[0])
    assert_no_open_transaction(h.url)


def test_sqlite_database_is_locked_is_retryable(h: Harness, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite only")
    path = DatabaseURL.parse(h.url).sqlite_path
    impatient: Datasource
    if h.kind == "peewee":
        impatient = PeeweeDatasource(pw.SqliteDatabase(path, timeout=0))
    else:
        impatient = DBAPIDatasource(lambda: sqlite3.connect(path, timeout=0), dialect="sqlite")
    try:
        with h.ds.begin("SERIALIZABLE"):
            with pytest.raises(Exception, match="database is locked") as info:
                with impatient.begin("SERIALIZABLE"):
                    pass
    finally:
        impatient.close()
    assert h.ds.is_retryable(info.value)
    assert_no_open_transaction(h.url)


def test_other_errors_are_not_retryable(h: Harness) -> None:
    assert not h.ds.is_retryable(Boom("user code failed"))
    assert not h.ds.is_retryable(ValueError("database is locked"))  # words alone are not enough
    with pytest.raises(Exception) as info:
        with h.ds.begin("READ COMMITTED") as session:
            h.execute(session, "SELECT * FROM no_such_table")
    assert not h.ds.is_retryable(info.value)


def test_a_lost_connection_is_retryable_and_replaced(h: Harness, backend: str) -> None:
    if backend != "postgres":
        pytest.skip("PostgreSQL only")
    with pytest.raises(Exception) as info:
        with h.ds.begin("SERIALIZABLE") as session:
            h.add_item(session, "lost")
            pid = h.execute(session, "SELECT pg_backend_pid()")[0][0]
            # The two-argument form waits until the backend has exited.
            assert observe(h.url, "SELECT pg_terminate_backend(?, 10000)", (pid,)) == [(True,)]
            h.execute(session, "SELECT 1")
    lost = info.value
    assert h.ds.is_retryable(lost), repr(lost)
    # The statement's own error, not the failed ROLLBACK's ("connection already closed").
    assert "server closed the connection unexpectedly" in str(lost), repr(lost)
    add_item_and_record(h, "found")  # a fresh connection, not the dead one
    assert item_names(h.url) == ["found"]
    if isinstance(h, PeeweeHarness):
        assert h.pool()._in_use == {}


# ----------------------------------------------------------------------
# Connections under concurrency
# ----------------------------------------------------------------------


def test_concurrent_transactions_leave_no_connection_checked_out(h: Harness) -> None:
    start = threading.Barrier(THREADS, timeout=WAIT_S)

    def worker(index: int) -> Callable[[], None]:
        def work() -> None:
            start.wait()
            for n in range(TRANSACTIONS_PER_THREAD):
                add_item_and_record(h, f"item-{index}-{n}")

        return work

    runs = [run_in_thread(worker(i)) for i in range(THREADS)]
    for thread, _ in runs:
        thread.join(WAIT_S)
    assert [e for _, errors in runs for e in errors] == []
    assert len(item_names(h.url)) == len(output_rows(h.url)) == THREADS * TRANSACTIONS_PER_THREAD
    if isinstance(h, PeeweeHarness):
        assert h.pool()._in_use == {}
    if isinstance(h, DBAPIHarness):
        assert h.connects == THREADS + 1  # one per thread, reused (+1: the test's own thread)
    assert_no_open_transaction(h.url)


ENSURE_SCHEMA_AFTER_GO = """
import os, sqlite3, sys
import psycopg2
from dbos._datasource import DBAPIDatasource, PeeweeDatasource
from dbos._sysdb.url import DatabaseURL

url, kind, go = sys.argv[1], sys.argv[2], int(sys.argv[3])
parsed = DatabaseURL.parse(url)
if kind == "peewee":
    ds = PeeweeDatasource.from_url(url)
elif parsed.is_sqlite:
    ds = DBAPIDatasource(lambda: sqlite3.connect(parsed.sqlite_path, timeout=30), dialect="sqlite")
else:
    ds = DBAPIDatasource(lambda: psycopg2.connect(dbname=parsed.database, **parsed.connect_kwargs()), dialect="postgresql")
with ds.begin("READ COMMITTED"):
    pass  # connected, so the race below is only about the schema
print("ready", flush=True)
os.read(go, 1)  # returns at EOF, when the parent closes the pipe for all at once
ds.ensure_schema()
ds.close()
print("done", flush=True)
"""


def test_processes_racing_to_ensure_the_schema_all_succeed(bare: Harness, tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ENSURE_SCHEMA_AFTER_GO, bare.url, bare.kind, str(read_end)],
            pass_fds=(read_end,),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for _ in range(4)
    ]
    os.close(read_end)
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    finally:
        os.close(write_end)
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "done", err
    assert table_layout(bare.url)[1] == EXPECTED_COLUMNS


# ----------------------------------------------------------------------
# Peewee specifics: the user's own database, its connection and atomic()
# ----------------------------------------------------------------------


def user_database(url: str) -> pw.Database:
    """A plain (unpooled) Peewee database, as a user would declare one."""
    parsed = DatabaseURL.parse(url)
    if parsed.is_sqlite:
        return pw.SqliteDatabase(parsed.sqlite_path, pragmas={"busy_timeout": WAIT_S * 1000})
    return pw.PostgresqlDatabase(parsed.database, **parsed.connect_kwargs())


@pytest.fixture
def peewee_h(h: Harness) -> PeeweeHarness:
    if not isinstance(h, PeeweeHarness):
        pytest.skip("Peewee adapter only")
    return h


def test_peewee_user_atomic_blocks_nest_as_savepoints(peewee_h: PeeweeHarness) -> None:
    ds = peewee_h.peewee
    with ds.begin("SERIALIZABLE") as db:
        Item.create(name="kept")
        with pytest.raises(Boom):
            with db.atomic():
                Item.create(name="undone")
                raise Boom()
        ds.record_output(db, dict(workflow_id="wf", step_id=1, name="f", output="out", error=None, executor_id=None))
        assert db.in_transaction()  # the savepoint's end did not commit ours
    assert item_names(peewee_h.url) == ["kept"]
    assert len(output_rows(peewee_h.url)) == 1


def test_peewee_refuses_to_run_inside_an_open_transaction(peewee_h: PeeweeHarness) -> None:
    db = peewee_h.peewee.database
    with db.connection_context(), db.atomic():
        with pytest.raises(DBOSException, match="already open"):
            with peewee_h.peewee.begin("SERIALIZABLE"):
                pass
    assert peewee_h.pool()._in_use == {}


def test_peewee_on_the_users_own_database(peewee_h: PeeweeHarness) -> None:
    db = user_database(peewee_h.url)
    ds = PeeweeDatasource(db)
    with Item.bind_ctx(db):
        # Not connected: the transaction opens a connection and closes it after.
        add_item_and_record(PeeweeHarness(peewee_h.url, ds), "first")
        assert db.is_closed()
        # Connected by the user (a web request, say): used, and left open for them.
        db.connect()
        add_item_and_record(PeeweeHarness(peewee_h.url, ds), "second")
        assert not db.is_closed() and not db.in_transaction()
        db.close()
    ds.close()  # not ours to close: a no-op
    assert item_names(peewee_h.url) == ["first", "second"]


def test_peewee_through_a_database_proxy(peewee_h: PeeweeHarness) -> None:
    proxy = pw.DatabaseProxy()
    ds = PeeweeDatasource(proxy)
    with pytest.raises(DBOSException, match="not initialized"):
        ds.begin("SERIALIZABLE").__enter__()
    db = user_database(peewee_h.url)
    proxy.initialize(db)
    assert ds.database is db
    with Item.bind_ctx(db):
        add_item_and_record(PeeweeHarness(peewee_h.url, ds), "proxied")
    assert item_names(peewee_h.url) == ["proxied"]


def test_peewee_from_url_creates_a_missing_database(empty_db_url: str) -> None:
    ds = PeeweeDatasource.from_url(empty_db_url)  # the fixture's database does not exist yet
    try:
        ds.ensure_schema()
        assert table_layout(empty_db_url)[1] == EXPECTED_COLUMNS
    finally:
        ds.close()


def test_peewee_refuses_other_databases() -> None:
    with pytest.raises(DBOSException, match="SQLite and PostgreSQL"):
        PeeweeDatasource(pw.MySQLDatabase("app"))


# ----------------------------------------------------------------------
# DB-API specifics
# ----------------------------------------------------------------------


@pytest.fixture
def dbapi_h(h: Harness) -> DBAPIHarness:
    if not isinstance(h, DBAPIHarness):
        pytest.skip("DB-API adapter only")
    return h


def test_dbapi_reuses_the_threads_connection_and_replaces_a_closed_one(dbapi_h: DBAPIHarness) -> None:
    before = dbapi_h.connects
    with dbapi_h.ds.begin("READ COMMITTED") as first:
        pass
    with dbapi_h.ds.begin("READ COMMITTED") as second:
        pass
    assert first is second and dbapi_h.connects == before
    if dbapi_h.url.startswith("sqlite"):
        dbapi_h.dbapi.close()  # sqlite3 connections do not say they are closed: start over
    else:
        second.close()  # psycopg2 does: noticed and replaced
    add_item_and_record(dbapi_h, "after")
    assert dbapi_h.connects == before + 1
    assert item_names(dbapi_h.url) == ["after"]


def test_dbapi_refuses_unknown_dialects() -> None:
    with pytest.raises(ValueError, match="dialect"):
        DBAPIDatasource(lambda: None, dialect="mysql")  # type: ignore[arg-type]
