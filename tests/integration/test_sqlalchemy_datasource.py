"""SQLAlchemyDatasource against real databases, on the backend chosen with ``--backend``.

The adapter contract tests of test_datasource.py and the @DBOS.transaction
tests of test_transactions.py are imported and run here once more on
SQLAlchemy: pytest collects every ``test_*`` function in this module's
namespace, and resolves their fixtures (``bare``, ``h``, ``app``) to the ones
defined below. What follows them is specific to SQLAlchemy: the ORM, the
engines it owns or borrows, SQLite's BEGIN IMMEDIATE, retries of real
driver errors wrapped by SQLAlchemy.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Dict, Iterator, List, Sequence, Tuple, cast

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dbos import DBOS, DBOSConfig, SetWorkflowID, SQLAlchemyDatasource
from dbos.error import DBOSException
from dbos._sysdb.backend import backend_for
from dbos._sysdb.url import DatabaseURL
from tests.integration.sysdb_sql import (
    delete_step,
    loaded_error,
    loaded_output,
    recover,
    step_rows,
    wait_for_launch_recovery,
)
from tests.integration.test_datasource import (  # noqa: F401  (collected here, on SQLAlchemy)
    Boom,
    Harness,
    add_item_and_record,
    assert_no_open_transaction,
    item_names,
    observe,
    output_rows,
    test_a_deadlock_is_retryable,
    test_a_lost_connection_is_retryable_and_replaced,
    test_a_serialization_failure_is_retryable,
    test_an_exception_rolls_back_both_and_is_reraised,
    test_commit_writes_the_user_row_and_the_output_together,
    test_concurrent_transactions_leave_no_connection_checked_out,
    test_created_at_has_a_default_in_milliseconds,
    test_ensure_schema_creates_the_table_in_place_and_is_idempotent,
    test_ensure_schema_keeps_rows_and_adds_function_name_to_an_old_table,
    test_other_errors_are_not_retryable,
    test_recorded_output_returns_what_was_recorded_and_none_otherwise,
    test_sqlite_transactions_take_the_write_lock_at_begin,
    test_the_isolation_level_is_applied_on_postgres,
    test_unknown_isolation_level_is_refused,
)
from tests.integration.test_transactions import (  # noqa: F401  (collected here, on SQLAlchemy)
    App,
    FatalError,
    items,
    recorded,
    test_error_fails_a_workflow_that_does_not_catch_it,
    test_error_rolls_back_the_writes_and_is_recorded,
    test_isolation_level_is_applied,
    test_replay_from_transaction_outputs_does_not_run_again,
    test_serialization_failure_is_retried_until_it_commits,
    test_sql_session_only_inside_a_transaction,
    test_transaction_called_inside_a_step_raises,
    test_transaction_in_an_async_workflow,
    test_transaction_outside_a_workflow_runs_as_a_temp_workflow,
    test_unserializable_output_rolls_back_the_writes,
    test_writes_and_output_commit_together,
)


Row = Tuple[Any, ...]
WAIT_S = 30


def named_params(sql: str, params: Sequence[Any]) -> Tuple[str, Dict[str, Any]]:
    """``?``-marked SQL as ``text()`` wants it: ``:p0``, ``:p1``..."""
    first, *rest = sql.split("?")
    text = first + "".join(f":p{i}{part}" for i, part in enumerate(rest))
    return text, {f"p{i}": value for i, value in enumerate(params)}


def run_text(session: Session, sql: str, params: Sequence[Any] = ()) -> List[Row]:
    """What a DBOS Transact program does: ``session.execute(text(...))``."""
    text, bound = named_params(sql, params)
    result = cast("sa.CursorResult[Any]", session.execute(sa.text(text), bound))
    return [tuple(row) for row in result.fetchall()] if result.returns_rows else []


# ----------------------------------------------------------------------
# The adapter on its own (the fixtures of the imported contract tests)
# ----------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class ItemRow(Base):
    """test_datasource's ``items`` table, declared the SQLAlchemy way."""

    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text, unique=True)


class SQLAlchemyHarness(Harness):
    kind = "sqlalchemy"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.sqlalchemy = SQLAlchemyDatasource.from_url(url)
        self.ds = self.sqlalchemy
        Base.metadata.create_all(self.sqlalchemy.engine)

    def execute(self, session: Any, sql: str, params: Sequence[Any] = ()) -> List[Row]:
        return run_text(session, sql, params)

    def add_item(self, session: Any, name: str) -> None:
        session.add(ItemRow(name=name))  # flushed by the datasource, in its transaction


@pytest.fixture
def bare(empty_db_url: str) -> Iterator[SQLAlchemyHarness]:
    """The adapter on an engine of its own; ``transaction_outputs`` does not exist yet."""
    harness = SQLAlchemyHarness(empty_db_url)
    yield harness
    harness.close()


@pytest.fixture
def h(bare: SQLAlchemyHarness) -> SQLAlchemyHarness:
    bare.ds.ensure_schema()
    return bare


def plain_engine(url: str, **kwargs: Any) -> sa.Engine:
    """An engine as a user would make one (not through from_url)."""
    parsed = DatabaseURL.parse(url)
    if parsed.is_sqlite:
        return sa.create_engine(f"sqlite:///{parsed.sqlite_path}", **kwargs)
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1), **kwargs)


def test_sql_session_is_an_orm_session_on_the_transactions_connection(h: SQLAlchemyHarness) -> None:
    with h.ds.begin("SERIALIZABLE") as session:
        assert isinstance(session, Session)
        h.add_item(session, "orm")
        # The ORM, a text query and the recorded output all see one transaction.
        assert session.scalars(sa.select(ItemRow.name)).all() == ["orm"]
        assert run_text(session, "SELECT COUNT(*) FROM items") == [(1,)]
        h.ds.record_output(session, dict(workflow_id="wf", step_id=1, name="f", output="out", error=None, executor_id=None))
        assert h.ds.recorded_output(session, "wf", 1) == ("out", None)
    assert item_names(h.url) == ["orm"]
    assert h.sqlalchemy.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_pending_orm_objects_are_flushed_before_the_commit(h: SQLAlchemyHarness) -> None:
    with h.ds.begin("READ COMMITTED") as session:
        session.add(ItemRow(name="never queried"))  # nothing reads it, yet it is written
    assert item_names(h.url) == ["never queried"]


def test_a_failing_flush_rolls_back_everything(h: SQLAlchemyHarness) -> None:
    add_item_and_record(h, "fig")
    with pytest.raises(sa.exc.IntegrityError) as info:
        with h.ds.begin("SERIALIZABLE") as session:
            h.ds.record_output(session, dict(workflow_id="wf-dup", step_id=1, name="f", output="out", error=None, executor_id=None))
            session.add(ItemRow(name="fig"))  # duplicate name, found at the final flush
    assert not h.ds.is_retryable(info.value)
    assert item_names(h.url) == ["fig"] and [r[0] for r in output_rows(h.url)] == ["wf-fig"]
    assert_no_open_transaction(h.url)


def test_a_user_commit_only_flushes_and_the_datasource_commits(h: SQLAlchemyHarness) -> None:
    with pytest.raises(Boom):
        with h.ds.begin("SERIALIZABLE") as session:
            h.add_item(session, "committed too early?")
            session.commit()
            raise Boom()
    assert item_names(h.url) == []  # the user's commit() did not split the transaction
    assert_no_open_transaction(h.url)


def test_a_user_rollback_refuses_to_record_the_output_alone(h: SQLAlchemyHarness) -> None:
    with pytest.raises(DBOSException, match="rolled back"):
        with h.ds.begin("SERIALIZABLE") as session:
            h.add_item(session, "undone")
            session.flush()  # the session now works in our transaction...
            session.rollback()  # ...and so ends it
            h.ds.record_output(session, dict(workflow_id="wf", step_id=1, name="f", output="out", error=None, executor_id=None))
    assert item_names(h.url) == [] and output_rows(h.url) == []
    assert_no_open_transaction(h.url)


def test_delete_outputs_forgets_only_those_workflows(h: SQLAlchemyHarness) -> None:
    with h.ds.begin("SERIALIZABLE") as session:
        for workflow_id in ("wf-a", "wf-b", "wf-c"):
            h.ds.record_output(session, dict(workflow_id=workflow_id, step_id=1, name="f", output="out", error=None, executor_id=None))
            h.ds.record_output(session, dict(workflow_id=workflow_id, step_id=2, name="f", output="out", error=None, executor_id=None))
    h.ds.delete_outputs([])
    h.ds.delete_outputs(["wf-a", "wf-c", "wf-unknown"])
    assert [(r[0], r[1]) for r in output_rows(h.url)] == [("wf-b", 1), ("wf-b", 2)]
    assert_no_open_transaction(h.url)


def test_sqlite_busy_wrapped_by_sqlalchemy_is_retryable(h: SQLAlchemyHarness, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite only")
    impatient = SQLAlchemyDatasource.from_url(h.url, connect_args={"timeout": 0})
    try:
        with h.ds.begin("SERIALIZABLE"):
            with pytest.raises(sa.exc.OperationalError, match="database is locked") as info:
                with impatient.begin("SERIALIZABLE"):
                    pass
    finally:
        impatient.close()
    assert isinstance(info.value.orig, sqlite3.OperationalError)
    assert h.ds.is_retryable(info.value)
    assert_no_open_transaction(h.url)


def test_from_url_makes_an_engine_that_close_disposes(empty_db_url: str) -> None:
    ds = SQLAlchemyDatasource.from_url(empty_db_url, pool_size=3)  # the database does not exist yet
    engine = ds.engine
    expected = "sqlite+pysqlite" if empty_db_url.startswith("sqlite") else "postgresql+psycopg2"
    assert engine.url.drivername == expected and ds.dialect == engine.dialect.name
    assert engine.pool.size() == 3  # type: ignore[attr-defined]
    ds.ensure_schema()
    pool = engine.pool
    assert pool.checkedin() == 1  # type: ignore[attr-defined]
    ds.close()
    assert engine.pool is not pool and engine.pool.checkedin() == 0  # type: ignore[attr-defined]


def test_close_leaves_the_users_engine_alone(h: SQLAlchemyHarness) -> None:
    engine = plain_engine(h.url)
    try:
        ds = SQLAlchemyDatasource(engine)
        add_item_and_record_on(ds, "mine")
        pool = engine.pool
        ds.close()
        assert engine.pool is pool and pool.checkedin() == 1  # type: ignore[attr-defined]
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT name FROM items")).scalars().all() == ["mine"]
    finally:
        engine.dispose()


def add_item_and_record_on(ds: SQLAlchemyDatasource, name: str) -> None:
    with ds.begin("SERIALIZABLE") as session:
        session.add(ItemRow(name=name))
        ds.record_output(session, dict(workflow_id=f"wf-{name}", step_id=1, name="add_item", output="out", error=None, executor_id=None))


def test_sqlite_users_engine_gets_begin_immediate_and_its_setting_back(h: SQLAlchemyHarness, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite only")
    engine = plain_engine(h.url, poolclass=sa.pool.StaticPool)  # one connection, so we see it again
    try:
        ds = SQLAlchemyDatasource(engine)
        with ds.begin("READ COMMITTED"):
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                assert_no_open_transaction(h.url)  # the write lock is held from BEGIN
        add_item_and_record_on(ds, "borrowed")
        with engine.connect() as conn:
            # pysqlite's own transaction handling is back for the user's code.
            assert conn.connection.driver_connection.isolation_level == ""  # type: ignore[union-attr]
            conn.execute(sa.text("INSERT INTO items (name) VALUES ('by the user')"))
            conn.rollback()
        assert item_names(h.url) == ["borrowed"]
    finally:
        engine.dispose()


def test_only_sqlite_and_postgres_engines_are_accepted() -> None:
    with pytest.raises(DBOSException, match="SQLite and PostgreSQL"):
        # module=: any DB-API module will do, as nothing connects.
        SQLAlchemyDatasource(sa.create_engine("mysql+pymysql://localhost/app", module=sqlite3))
    with pytest.raises(TypeError, match="Engine"):
        SQLAlchemyDatasource("sqlite:///app.sqlite")  # type: ignore[arg-type]


# ----------------------------------------------------------------------
# @DBOS.transaction on SQLAlchemy (the fixture of the imported DBOS tests)
# ----------------------------------------------------------------------


class SQLAlchemyApp(App):
    def sql(self, sql: str, params: Sequence[Any] = ()) -> List[Row]:
        return run_text(DBOS.sql_session, sql, params)


class Entry(Base):
    """test_transactions' ``items`` table."""

    __tablename__ = "entries"
    name: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    n: Mapped[int]


@pytest.fixture
def app_db_url(empty_db_url: str) -> str:
    """As in test_transactions: the database created, with an ``items (name, n)`` table."""
    backend_for(DatabaseURL.parse(empty_db_url)).create_database()
    observe(empty_db_url, "CREATE TABLE items (name TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    return empty_db_url


@pytest.fixture(params=["url", "engine"])
def app(request: pytest.FixtureRequest, config: DBOSConfig, app_db_url: str) -> Iterator[App]:
    """DBOS with SQLAlchemy: from application_database_url alone, as a DBOS
    Transact program configures it, or over the application's own engine."""
    engine = None
    if request.param == "url":
        config["application_database_url"] = app_db_url
    else:
        engine = plain_engine(app_db_url)
        config["application_datasource"] = SQLAlchemyDatasource(engine)
    DBOS(config=config)
    DBOS.launch()
    wait_for_launch_recovery()
    assert isinstance(DBOS.app_datasource, SQLAlchemyDatasource)
    yield SQLAlchemyApp(str(request.param), app_db_url)
    DBOS.destroy(destroy_registry=True)
    if engine is not None:
        engine.dispose()  # the application's own: DBOS leaves it open


def test_orm_models_and_text_write_in_one_transaction(app: App) -> None:
    Base.metadata.create_all(DBOS.app_datasource.engine, tables=[Entry.__table__])  # type: ignore[list-item]

    @DBOS.transaction()
    def add(name: str, fail: bool) -> int:
        session: Session = DBOS.sql_session
        session.add(Entry(name=name, n=len(name)))
        session.execute(sa.text("INSERT INTO items (name, n) VALUES (:name, 0)"), {"name": name})
        if fail:
            raise FatalError(name)
        return len(session.scalars(sa.select(Entry)).all())

    @DBOS.workflow()
    def wf() -> int:
        try:
            add("dropped", True)
        except FatalError:
            pass
        return add("kept", False)

    with SetWorkflowID("orm-wf"):
        assert wf() == 1
    assert items(app.url) == [("kept", 0)]
    assert observe(app.url, "SELECT name, n FROM entries") == [("kept", 4)]
    [(fid1, _, output1, error1), (fid2, _, output2, error2)] = recorded(app.url, "orm-wf")
    assert (fid1, fid2) == (1, 2)
    assert output1 is None and isinstance(loaded_error(error1), FatalError)
    assert error2 is None and loaded_output(output2) == 1

    delete_step("orm-wf", 2)  # as if killed between the commit and the checkpoint
    assert recover("orm-wf") == 1
    assert observe(app.url, "SELECT COUNT(*) FROM entries") == [(1,)]  # not applied twice
    assert loaded_output(step_rows("orm-wf")[1][2]) == 1


def test_deleting_a_workflow_deletes_its_recorded_outputs(app: App) -> None:
    @DBOS.transaction()
    def insert(name: str) -> None:
        app.sql("INSERT INTO items (name, n) VALUES (?, 1)", (name,))

    @DBOS.workflow()
    def wf(name: str) -> None:
        insert(name)

    for name in ("gone", "kept"):
        with SetWorkflowID(f"wf-{name}"):
            wf(name)
    DBOS.delete_workflow("wf-gone")
    assert recorded(app.url, "wf-gone") == [] and len(recorded(app.url, "wf-kept")) == 1


def test_a_lost_connection_is_retried_on_a_fresh_one(app: App) -> None:
    if app.sqlite:
        pytest.skip("PostgreSQL only")
    attempts: List[int] = []

    @DBOS.transaction()
    def insert() -> int:
        attempts.append(1)
        app.sql("INSERT INTO items (name, n) VALUES (?, ?)", ("survivor", len(attempts)))
        if len(attempts) == 1:
            app.sql("SELECT pg_terminate_backend(pg_backend_pid())")  # as a server restart would
        return len(attempts)

    @DBOS.workflow()
    def wf() -> int:
        return insert()

    assert wf() == 2
    assert items(app.url) == [("survivor", 2)]


def test_sqlite_busy_is_retried_until_it_commits(config: DBOSConfig, app_db_url: str) -> None:
    if not app_db_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    # No busy timeout: a held write lock fails our BEGIN IMMEDIATE at once.
    ds = SQLAlchemyDatasource.from_url(app_db_url, connect_args={"timeout": 0})
    failures: List[BaseException] = []
    retryable = ds.is_retryable
    holder = sqlite3.connect(DatabaseURL.parse(app_db_url).sqlite_path, isolation_level=None,
                             check_same_thread=False)

    def release_then_judge(exc: BaseException) -> bool:
        # Asked only after a failed attempt: free the lock for the next one (no sleeps).
        failures.append(exc)
        if holder.in_transaction:
            holder.execute("COMMIT")
        return retryable(exc)

    ds.is_retryable = release_then_judge  # type: ignore[method-assign]
    runs: List[int] = []

    @DBOS.transaction()
    def insert() -> str:
        runs.append(1)
        DBOS.sql_session.execute(sa.text("INSERT INTO items (name, n) VALUES ('late', 1)"))
        return "committed"

    @DBOS.workflow()
    def wf() -> str:
        return insert()

    config["application_datasource"] = ds
    DBOS(config=config)
    DBOS.launch()
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
        assert wf() == "committed"
    finally:
        DBOS.destroy(destroy_registry=True)
        ds.close()
        holder.close()
    [failure] = failures
    assert isinstance(failure, sa.exc.OperationalError) and "database is locked" in str(failure)
    assert runs == [1]  # the failed attempt never reached the function
    assert items(app_db_url) == [("late", 1)]


def test_concurrent_workflows_leave_no_connection_checked_out(app: App) -> None:
    @DBOS.transaction("READ COMMITTED")
    def insert(name: str) -> None:
        app.sql("INSERT INTO items (name, n) VALUES (?, 1)", (name,))

    @DBOS.workflow()
    def wf(name: str) -> None:
        insert(name)

    handles = [DBOS.start_workflow(wf, f"t{i}") for i in range(8)]
    for handle in handles:
        handle.get_result()
    assert len(items(app.url)) == 8
    assert DBOS.app_datasource.engine.pool.checkedout() == 0
