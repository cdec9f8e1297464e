"""The storage layer against real databases, on the chosen backend.

Connections are borrowed per operation and always returned, a connection
the server dropped is replaced, failures surface as DBOSSystemDatabaseError
without the password, and truncate/drop do exactly what they say. SQLite
runs in WAL mode with IMMEDIATE write transactions.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any, Callable, Dict, List, Tuple

import psycopg2
import pytest

from dbos.error import DBOSSystemDatabaseError
from dbos._sysdb import SystemDatabase, latest_version

THREADS = 32
OPERATIONS_PER_THREAD = 4


# ----------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------


def pool(sysdb: SystemDatabase) -> Any:
    """The pooled Peewee database behind ``sysdb`` (white box: its bookkeeping)."""
    return sysdb.models.dbos_migrations._meta.database


def admin_connection(sysdb: SystemDatabase) -> Any:
    """An autocommit psycopg2 connection to the maintenance database, outside the pool."""
    conn = psycopg2.connect(**{**sysdb.url.connect_kwargs(), "dbname": "postgres"})
    conn.autocommit = True
    return conn


def admin_query(sysdb: SystemDatabase, sql: str) -> List[Any]:
    conn = admin_connection(sysdb)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, {"db": sysdb.url.database})
            return list(cur.fetchall())
    finally:
        conn.close()


def server_connections(sysdb: SystemDatabase) -> int:
    rows = admin_query(sysdb, "SELECT count(*) FROM pg_stat_activity WHERE datname = %(db)s")
    return int(rows[0][0])


def terminate_backends(sysdb: SystemDatabase) -> int:
    rows = admin_query(
        sysdb,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %(db)s AND pid <> pg_backend_pid()",
    )
    return sum(1 for (done,) in rows if done)


def sql(sysdb: SystemDatabase, statement: str) -> List[Any]:
    """Rows of ``statement``, run on a connection borrowed from ``sysdb``'s pool."""
    return sysdb.run(lambda: list(pool(sysdb).execute_sql(statement).fetchall()))


def count_rows(sysdb: SystemDatabase) -> Dict[str, int]:
    models = sysdb.models.by_table
    return sysdb.run(lambda: {name: m.select().count() for name, m in models.items()})


def require_postgres(backend: str) -> None:
    if backend != "postgres":
        pytest.skip("a SQLite file has no server connection to lose or count")


def require_sqlite(backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite pragmas and locking only")


def fill_every_table(sysdb: SystemDatabase) -> None:
    m = sysdb.models
    wf = dict(workflow_uuid="wf-1")

    def work() -> None:
        m.workflow_status.insert(**wf, status="PENDING", created_at=1, updated_at=1).execute()
        m.operation_outputs.insert(**wf, function_id=1, output="o").execute()
        m.notifications.insert(
            message_uuid="n-1", destination_uuid="wf-1", message="hi", created_at_epoch_ms=1
        ).execute()
        m.workflow_events.insert(**wf, key="k", value="v").execute()
        m.workflow_events_history.insert(**wf, function_id=1, key="k", value="v").execute()
        m.streams.insert(**wf, key="k", value="v", offset=0).execute()
        m.queues.insert(queue_id="q-1", name="q", created_at=1, updated_at=1).execute()
        m.workflow_schedules.insert(schedule_id="s-1", schedule_name="s", workflow_name="wf",
                                    schedule="* * * * *", context="c").execute()

    sysdb.run(work)
    sysdb.register_application_version("v1", "app")
    sysdb.record_heartbeat("exec-1", "v1", "app", "host", 1)


def hold_connection(
    sysdb: SystemDatabase, transaction: bool
) -> Tuple[threading.Event, threading.Thread]:
    """A thread keeping a pooled connection (in a transaction) until the event is set."""
    holding, release = threading.Event(), threading.Event()

    def work() -> None:
        holding.set()
        release.wait()

    thread = threading.Thread(target=lambda: sysdb.run(work, transaction=transaction))
    thread.start()
    assert holding.wait(timeout=30)
    return release, thread


# ----------------------------------------------------------------------
# 6. Thread safety
# ----------------------------------------------------------------------


def run_threads(count: int, body: Callable[[int], None]) -> List[BaseException]:
    """Run ``body(i)`` in ``count`` threads released together; return their errors."""
    start, errors = threading.Barrier(count), []

    def thread(i: int) -> None:
        try:
            start.wait()
            body(i)
        except BaseException as exc:  # reported to the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.parametrize("pool_size", [4, 20])
def test_many_threads_share_the_pool(backend: str, sys_db_url: str, pool_size: int) -> None:
    sysdb = SystemDatabase(sys_db_url, pool_size=pool_size)
    sysdb.migrate()
    seen: List[int] = []

    def body(i: int) -> None:
        for n in range(OPERATIONS_PER_THREAD):
            sysdb.register_application_version(f"v-{i}-{n}", "app")
            sysdb.register_application_version("shared", "app")
            seen.append(len(sysdb.list_application_versions()))

    try:
        assert run_threads(THREADS, body) == []
        names = {v.version_name for v in sysdb.list_application_versions()}
        per_thread = {f"v-{i}-{n}" for i in range(THREADS) for n in range(OPERATIONS_PER_THREAD)}
        assert names == per_thread | {"shared"}
        assert len(seen) == THREADS * OPERATIONS_PER_THREAD and min(seen) >= 2
        assert pool(sysdb)._in_use == {}
        if backend == "postgres":
            assert 1 <= server_connections(sysdb) <= pool_size
    finally:
        sysdb.close()


def test_a_thread_that_ends_returns_its_connection(sysdb: SystemDatabase) -> None:
    done = threading.Event()

    def body() -> None:
        sysdb.register_application_version("from-thread", "app")
        done.set()

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert done.is_set()
    assert pool(sysdb)._in_use == {}
    assert [v.version_name for v in sysdb.list_application_versions()] == ["from-thread"]


def test_nested_runs_share_one_connection(sysdb: SystemDatabase) -> None:
    def outer() -> List[int]:
        inner_ids = [id(pool(sysdb).connection())]
        sysdb.run(lambda: inner_ids.append(id(pool(sysdb).connection())))
        assert len(pool(sysdb)._in_use) == 1
        return inner_ids

    ids = sysdb.run(outer)
    assert ids[0] == ids[1]
    assert pool(sysdb)._in_use == {}


def test_exhausted_pool_raises_system_database_error(sys_db_url: str) -> None:
    sysdb = SystemDatabase(sys_db_url, pool_size=1, pool_timeout=0.05)
    sysdb.migrate()
    release, holder = hold_connection(sysdb, transaction=False)
    try:
        with pytest.raises(DBOSSystemDatabaseError, match="no free connection"):
            sysdb.list_application_versions()
    finally:
        release.set()
        holder.join()
    assert sysdb.list_application_versions() == []
    sysdb.close()


# ----------------------------------------------------------------------
# 7. Lost connections and unreachable servers
# ----------------------------------------------------------------------


def test_terminated_connections_are_reopened(backend: str, sysdb: SystemDatabase) -> None:
    require_postgres(backend)
    sysdb.register_application_version("before", "app")
    assert terminate_backends(sysdb) >= 1
    sysdb.register_application_version("after", "app")
    assert {v.version_name for v in sysdb.list_application_versions()} == {"before", "after"}
    assert pool(sysdb)._in_use == {}


@pytest.mark.parametrize("transaction", [True, False])
def test_connection_lost_mid_operation_is_retried(
    backend: str, sysdb: SystemDatabase, transaction: bool
) -> None:
    require_postgres(backend)
    admin = admin_connection(sysdb)
    attempts: List[int] = []

    def work() -> int:
        pid = pool(sysdb).execute_sql("SELECT pg_backend_pid()").fetchone()[0]
        attempts.append(pid)
        if len(attempts) == 1:
            with admin.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        row = pool(sysdb).execute_sql("SELECT count(*) FROM dbos.dbos_migrations").fetchone()
        return int(row[0])

    try:
        assert sysdb.run(work, transaction=transaction) == 1
    finally:
        admin.close()
    assert len(attempts) == 2 and attempts[0] != attempts[1]
    assert pool(sysdb)._in_use == {}


def test_unusable_database_error_names_the_url_without_password(
    backend: str, tmp_path: Any
) -> None:
    if backend == "postgres":
        url = "postgresql://postgres:s3cret-pw@127.0.0.1:1/dbos_unreachable"
        shown = "postgresql://postgres:***@127.0.0.1:1/dbos_unreachable"
    else:
        (tmp_path / "a-file").write_text("not a directory")
        url = shown = f"sqlite:///{tmp_path}/a-file/system.sqlite"
    sysdb = SystemDatabase(url, pool_size=1)
    operations: List[Callable[[], Any]] = [sysdb.migrate, sysdb.list_application_versions]
    if backend == "postgres":
        operations.append(sysdb.exists)  # on SQLite, a missing file is a plain False
    for operation in operations:
        with pytest.raises(DBOSSystemDatabaseError) as caught:
            operation()
        assert shown in str(caught.value)
        assert "s3cret-pw" not in str(caught.value)
    sysdb.close()


# ----------------------------------------------------------------------
# 8. truncate and drop
# ----------------------------------------------------------------------


def test_truncate_empties_tables_but_keeps_schema_and_version(sysdb: SystemDatabase) -> None:
    fill_every_table(sysdb)
    tables = sysdb.table_names()
    assert all(n >= 1 for n in count_rows(sysdb).values())
    sysdb.truncate()
    counts = count_rows(sysdb)
    assert counts.pop("dbos_migrations") == 1
    assert counts == {name: 0 for name in counts}
    assert sysdb.table_names() == tables
    assert sysdb.schema_version() == latest_version()
    fill_every_table(sysdb)  # the schema still takes rows
    assert sysdb.migrate() == []


def test_drop_removes_the_database_and_migrate_recreates_it(
    backend: str, sysdb: SystemDatabase
) -> None:
    sysdb.register_application_version("v1", "app")
    sysdb.drop()
    assert not sysdb.exists()
    if backend == "postgres":
        assert admin_query(sysdb, "SELECT 1 FROM pg_database WHERE datname = %(db)s") == []
    else:
        path = sysdb.url.sqlite_path
        assert [p for p in (path, path + "-wal", path + "-shm") if os.path.exists(p)] == []
    assert sysdb.migrate() == list(range(1, latest_version() + 1))
    assert sysdb.exists()
    assert sysdb.list_application_versions() == []
    sysdb.close()
    # Closing after a drop and re-use still closes every pooled connection.
    assert pool(sysdb)._in_use == {} and pool(sysdb)._connections == []


def test_drop_of_a_missing_database_is_harmless(sys_db_url: str) -> None:
    sysdb = SystemDatabase(sys_db_url, pool_size=1)
    sysdb.drop()
    assert not sysdb.exists()


# ----------------------------------------------------------------------
# Integrity and SQLite specifics
# ----------------------------------------------------------------------


def test_foreign_keys_are_enforced(sysdb: SystemDatabase) -> None:
    steps = sysdb.models.operation_outputs
    with pytest.raises(DBOSSystemDatabaseError) as caught:
        sysdb.run(lambda: steps.insert(workflow_uuid="missing", function_id=1).execute())
    assert "foreign key" in str(caught.value).lower()
    assert count_rows(sysdb)["operation_outputs"] == 0


def test_failed_transaction_rolls_back_and_frees_the_connection(sysdb: SystemDatabase) -> None:
    versions = sysdb.models.application_versions

    def work() -> None:
        for version_id in ("a", "b"):  # the second repeats the unique version_name
            row = dict(version_id=version_id, version_name="x", version_timestamp=1, created_at=1)
            versions.insert(**row).execute()

    with pytest.raises(DBOSSystemDatabaseError, match="(?i)unique"):
        sysdb.run(work)
    assert sysdb.list_application_versions() == []
    assert pool(sysdb)._in_use == {}


def test_sqlite_pragmas(backend: str, sysdb: SystemDatabase) -> None:
    require_sqlite(backend)
    with sqlite3.connect(sysdb.url.sqlite_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert sql(sysdb, "PRAGMA busy_timeout") == [(30000,)]
    assert sql(sysdb, "PRAGMA foreign_keys") == [(1,)]
    assert sql(sysdb, "PRAGMA journal_mode") == [("wal",)]


def test_sqlite_transactions_take_the_write_lock_at_begin(
    backend: str, sysdb: SystemDatabase
) -> None:
    require_sqlite(backend)
    other = sqlite3.connect(sysdb.url.sqlite_path, timeout=0.05, isolation_level=None)

    def inside_transaction() -> None:
        # Nothing written yet: only BEGIN IMMEDIATE holds the lock here.
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        # Readers are not blocked (WAL).
        assert other.execute("SELECT count(*) FROM dbos_migrations").fetchone() == (1,)

    try:
        sysdb.run(inside_transaction)
        other.execute("BEGIN IMMEDIATE")  # free again once the transaction ended
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_sqlite_writer_waits_for_the_lock_instead_of_failing(
    backend: str, sysdb: SystemDatabase
) -> None:
    require_sqlite(backend)
    written = threading.Event()

    def write() -> None:
        sysdb.register_application_version("waited", "app")
        written.set()

    release, holder = hold_connection(sysdb, transaction=True)  # BEGIN IMMEDIATE
    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert not written.wait(timeout=0.2)  # blocked on the lock, not failed
    finally:
        release.set()
        holder.join()
        writer.join()
    assert written.is_set()
    assert [v.version_name for v in sysdb.list_application_versions()] == ["waited"]


# ----------------------------------------------------------------------
# 8. Single statements (``SystemDatabase.statement``, the workflow hot path)
# ----------------------------------------------------------------------


def first_row(cursor: Any) -> Any:
    return cursor.fetchone()


def versions_table(sysdb: SystemDatabase) -> str:
    return sysdb.backend.qualified("dbos_migrations")


def test_a_statement_returns_its_connection(sysdb: SystemDatabase) -> None:
    row = sysdb.statement(f"SELECT count(*) FROM {versions_table(sysdb)}", [], first_row)
    assert row[0] == 1
    assert pool(sysdb)._in_use == {}
    assert pool(sysdb).is_closed()  # no connection left attached to this thread


def test_a_statement_inside_run_joins_its_transaction(sysdb: SystemDatabase) -> None:
    p = sysdb.backend.placeholder
    insert = (f"INSERT INTO {sysdb.backend.qualified('application_versions')} "
              f"(version_id, version_name, version_timestamp, created_at, application_name) "
              f"VALUES ({p}, {p}, 1, 1, 'app')")

    def work() -> None:
        sysdb.statement(insert, ["id-1", "rolled-back"], lambda cursor: None)
        assert len(pool(sysdb)._in_use) == 1  # the run's own connection, not another
        raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        sysdb.run(work)
    assert sysdb.list_application_versions() == []
    assert pool(sysdb)._in_use == {}


def test_a_failed_statement_raises_and_frees_its_connection(sysdb: SystemDatabase) -> None:
    with pytest.raises(DBOSSystemDatabaseError, match="no_such_table"):
        sysdb.statement("SELECT * FROM no_such_table", [], first_row)
    assert pool(sysdb)._in_use == {}
    assert sysdb.statement(f"SELECT count(*) FROM {versions_table(sysdb)}", [], first_row)[0] == 1


def test_a_statement_waits_for_a_free_connection_then_gives_up(sys_db_url: str) -> None:
    sysdb = SystemDatabase(sys_db_url, pool_size=1, pool_timeout=0.05)
    sysdb.migrate()
    release, holder = hold_connection(sysdb, transaction=False)
    try:
        with pytest.raises(DBOSSystemDatabaseError, match="no free connection"):
            sysdb.statement(f"SELECT count(*) FROM {versions_table(sysdb)}", [], first_row)
    finally:
        release.set()
        holder.join()
    assert sysdb.statement(f"SELECT count(*) FROM {versions_table(sysdb)}", [], first_row)[0] == 1
    sysdb.close()


def test_a_statement_on_a_terminated_connection_is_retried(
    backend: str, sysdb: SystemDatabase
) -> None:
    require_postgres(backend)
    before = sysdb.statement("SELECT pg_backend_pid()", [], first_row)[0]
    assert terminate_backends(sysdb) >= 1
    after = sysdb.statement("SELECT pg_backend_pid()", [], first_row)[0]
    assert after != before
    assert pool(sysdb)._in_use == {}


def test_dead_letter_many_moves_only_the_pending_workflows_it_names(sysdb: SystemDatabase) -> None:
    statuses = {"a": "PENDING", "b": "PENDING", "done": "SUCCESS", "other": "PENDING"}
    table = sysdb.models.workflow_status

    def work() -> None:
        for workflow_id, status in statuses.items():
            table.insert(workflow_uuid=workflow_id, status=status, created_at=1, updated_at=1,
                         queue_name="q", deduplication_id=f"d-{workflow_id}").execute()

    sysdb.run(work)
    assert sysdb.dead_letter_many([]) == 0
    assert sysdb.dead_letter_many(["a", "b", "done", "missing"]) == 2
    rows = sysdb.run(lambda: {r.workflow_uuid: (r.status, r.queue_name, r.deduplication_id)
                              for r in table.select()})
    assert rows == {
        "a": ("MAX_RECOVERY_ATTEMPTS_EXCEEDED", None, None),
        "b": ("MAX_RECOVERY_ATTEMPTS_EXCEEDED", None, None),
        "done": ("SUCCESS", "q", "d-done"),
        "other": ("PENDING", "q", "d-other"),
    }
