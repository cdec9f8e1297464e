"""The 2.x datasource API, the same on every ORM: ``create(...)``, ``@ds.transaction()``,
``run_tx_step`` and ``sql_session()``, against the real database of ``--backend``.

Each test runs on SQLAlchemy (sync and async), Peewee and plain DB-API
datasources (Django's is in test_django.py). A "crash" between a
transaction's commit and its step checkpoint is made by deleting the
checkpoint and recovering the workflow; the tests with real SIGKILLs are in
tests/acceptance.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest
import sqlalchemy as sa

from dbos import (
    DBOS,
    AsyncSQLAlchemyDatasource,
    DBAPIDatasource,
    DBOSConfig,
    PeeweeDatasource,
    Serializer,
    SetWorkflowID,
    SQLAlchemyDatasource,
)
from dbos.error import DBOSException, DBOSInvalidArgumentError
from tests.conftest import postgres_url
from tests.integration.sysdb_sql import delete_step, recover, step_rows, wait_for_launch_recovery
from tests.integration.test_transactions import observe
from tests.probe import drop_database

KINDS = ["sqlalchemy", "async_sqlalchemy", "peewee", "dbapi"]


class Refused(Exception):
    """Raised by a transaction function; module level, so it pickles."""


@pytest.fixture
def app_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """An application database that does not exist yet: ``create`` makes it."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'app.sqlite'}"
        return
    url = postgres_url(f"dbos_app_{uuid.uuid4().hex[:12]}")
    yield url
    drop_database(url)


def create(kind: str, url: str, **options: Any) -> Any:
    if kind == "sqlalchemy":
        return SQLAlchemyDatasource.create(url, **options)
    if kind == "async_sqlalchemy":
        return asyncio.run(AsyncSQLAlchemyDatasource.create(url, **options))
    if kind == "peewee":
        return PeeweeDatasource.create(url, **options)
    return DBAPIDatasource.create(url, **options)


@dataclass
class Kit:
    """A datasource of one kind, with an ``items`` table, and ways to use it alike."""

    kind: str
    url: str
    ds: Any
    calls: List[str] = field(default_factory=list)

    @property
    def sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    def insert_sql(self) -> str:
        return "INSERT INTO items (name) VALUES ({})".format("?" if self.sqlite else "%s")

    def body(self, fail: bool = False) -> Callable[..., Any]:
        """An undecorated transaction function: insert ``name``, count the call, return a value."""
        kit = self

        def finish(name: str) -> str:
            kit.calls.append(name)
            if fail:
                raise Refused(f"no {name}")
            return f"added-{name}"

        if self.kind == "async_sqlalchemy":
            async def insert_async(name: str) -> str:
                await kit.ds.sql_session().execute(sa.text("INSERT INTO items (name) VALUES (:n)"), {"n": name})
                return finish(name)

            return insert_async

        def insert(name: str) -> str:
            session = kit.ds.sql_session()
            if kit.kind == "sqlalchemy":
                session.execute(sa.text("INSERT INTO items (name) VALUES (:n)"), {"n": name})
            elif kit.kind == "peewee":
                session.execute_sql(kit.insert_sql(), (name,))
            else:
                session.cursor().execute(kit.insert_sql(), (name,))
            return finish(name)

        return insert

    def workflow(self, step: Callable[..., Any]) -> Callable[..., Any]:
        """A workflow that calls ``step(name)`` once and returns what it returned."""
        if self.kind == "async_sqlalchemy":
            async def run_async(name: str) -> Any:
                return await step(name)

            return DBOS.workflow(name=f"wf_{uuid.uuid4().hex[:8]}")(run_async)

        def run(name: str) -> Any:
            return step(name)

        return DBOS.workflow(name=f"wf_{uuid.uuid4().hex[:8]}")(run)

    def call(self, func: Callable[..., Any], *args: Any) -> Any:
        result = func(*args)
        return asyncio.run(result) if asyncio.iscoroutine(result) else result

    def items(self) -> List[str]:
        return [str(r[0]) for r in observe(self.url, "SELECT name FROM items ORDER BY name")]

    def outputs(self, workflow_id: str) -> List[tuple[Any, ...]]:
        table = "datasource_outputs" if self.sqlite else "dbos.datasource_outputs"
        return observe(self.url, f"SELECT step_id, output IS NOT NULL, error IS NOT NULL, serialization "
                                 f"FROM {table} WHERE workflow_id = ? ORDER BY step_id".replace(
                                     "?", "?" if self.sqlite else "%s"), (workflow_id,))


@pytest.fixture(params=KINDS)
def kit(request: pytest.FixtureRequest, app_url: str, migrated_sys_db_url: str) -> Iterator[Kit]:
    ds = create(request.param, app_url)
    observe(app_url, "CREATE TABLE items (name TEXT PRIMARY KEY)")
    DBOS(config=DBOSConfig(name="ds-test", system_database_url=migrated_sys_db_url))
    DBOS.launch()
    wait_for_launch_recovery()
    yield Kit(request.param, app_url, ds)
    DBOS.destroy(destroy_registry=True)
    result = ds.close()
    if asyncio.iscoroutine(result):
        asyncio.run(result)


def run(workflow: Callable[..., Any], workflow_id: str, *args: Any) -> Any:
    with SetWorkflowID(workflow_id):
        handle = DBOS.start_workflow(workflow, *args)
    return handle.get_result()


# ----------------------------------------------------------------------
# create()
# ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_create_makes_the_database_and_datasource_outputs_and_can_be_repeated(kind: str, app_url: str) -> None:
    for _ in range(2):
        ds = create(kind, app_url)
        result = ds.close()
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    if app_url.startswith("sqlite"):
        columns = [r[1] for r in observe(app_url, "PRAGMA table_info(datasource_outputs)")]
    else:
        columns = [r[0] for r in observe(
            app_url, "SELECT column_name FROM information_schema.columns WHERE table_schema = 'dbos' "
                     "AND table_name = 'datasource_outputs' ORDER BY ordinal_position")]
    assert columns == ["workflow_id", "step_id", "output", "error", "serialization", "created_at"]


def test_create_puts_the_table_in_the_schema_asked_for(backend: str, app_url: str) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has no schemas")
    SQLAlchemyDatasource.create(app_url, schema="shop_outputs").close()
    assert observe(app_url, "SELECT count(*) FROM shop_outputs.datasource_outputs") == [(0,)]


def test_create_on_the_users_engine_leaves_the_engine_to_them(app_url: str) -> None:
    own = SQLAlchemyDatasource.create(app_url)
    borrowed = SQLAlchemyDatasource.create(app_url, engine=own.engine)
    assert own.created_engine and not borrowed.created_engine
    assert borrowed.engine is own.engine
    own.close()


# ----------------------------------------------------------------------
# In a workflow: exactly once
# ----------------------------------------------------------------------


def test_the_effect_and_the_output_commit_together_and_the_step_is_recorded(kit: Kit) -> None:
    add = kit.ds.transaction()(kit.body())
    workflow_id = f"wf-{uuid.uuid4().hex[:8]}"
    assert run(kit.workflow(add), workflow_id, "pear") == "added-pear"
    assert kit.items() == ["pear"]
    assert kit.outputs(workflow_id) == [(1, True, False, "py_pickle")]
    steps = DBOS.list_workflow_steps(workflow_id)
    assert [(s["function_id"], s["function_name"], s["output"]) for s in steps] == [
        (1, add.__qualname__, "added-pear")]


def test_a_replay_after_the_commit_returns_the_recorded_output_without_running_again(kit: Kit) -> None:
    add = kit.ds.transaction(name="add_item")(kit.body())
    workflow_id = f"wf-{uuid.uuid4().hex[:8]}"
    run(kit.workflow(add), workflow_id, "plum")
    delete_step(workflow_id, 1)  # as if the process died between the commit and the checkpoint
    assert recover(workflow_id) == "added-plum"
    assert kit.calls == ["plum"]
    assert kit.items() == ["plum"]
    assert [r[1] for r in step_rows(workflow_id)] == ["add_item"]


def test_a_failure_rolls_back_is_recorded_in_both_databases_and_replays(kit: Kit) -> None:
    refuse = kit.ds.transaction(name="refuse")(kit.body(fail=True))
    workflow_id = f"wf-{uuid.uuid4().hex[:8]}"
    with pytest.raises(Refused, match="no fig"):
        run(kit.workflow(refuse), workflow_id, "fig")
    assert kit.items() == []
    assert kit.outputs(workflow_id) == [(1, False, True, "py_pickle")]
    delete_step(workflow_id, 1)
    with pytest.raises(Refused, match="no fig"):
        recover(workflow_id)
    assert kit.calls == ["fig"]


def test_run_tx_step_runs_an_undecorated_function_under_the_name_given(kit: Kit) -> None:
    body = kit.body()
    if kit.kind == "async_sqlalchemy":
        async def step(name: str) -> Any:
            return await kit.ds.run_tx_step_async({"name": "inline", "isolation_level": "READ COMMITTED"},
                                                  body, name)
    else:
        def step(name: str) -> Any:  # type: ignore[misc]
            return kit.ds.run_tx_step({"name": "inline"}, body, name)
    workflow_id = f"wf-{uuid.uuid4().hex[:8]}"
    assert run(kit.workflow(step), workflow_id, "kiwi") == "added-kiwi"
    assert [r[1] for r in step_rows(workflow_id)] == ["inline"]
    assert kit.outputs(workflow_id) == [(1, True, False, "py_pickle")]


def test_inside_a_step_a_transaction_is_part_of_the_step(kit: Kit) -> None:
    add = kit.ds.transaction()(kit.body())
    if kit.kind == "async_sqlalchemy":
        async def outer_async(name: str) -> Any:
            return await add(name)

        outer = DBOS.step(name="outer")(outer_async)
    else:
        outer = DBOS.step(name="outer")(lambda name: add(name))
    workflow_id = f"wf-{uuid.uuid4().hex[:8]}"
    assert run(kit.workflow(outer), workflow_id, "lime") == "added-lime"
    assert [r[1] for r in step_rows(workflow_id)] == ["outer"]
    assert kit.outputs(workflow_id) == []


# ----------------------------------------------------------------------
# Outside a workflow, and sql_session()
# ----------------------------------------------------------------------


def test_outside_a_workflow_it_is_a_plain_transaction_that_records_nothing(kit: Kit) -> None:
    add = kit.ds.transaction()(kit.body())
    assert kit.call(add, "date") == "added-date"
    assert kit.items() == ["date"]
    table = "datasource_outputs" if kit.sqlite else "dbos.datasource_outputs"
    assert observe(kit.url, f"SELECT count(*) FROM {table}") == [(0,)]
    with pytest.raises(Refused):
        kit.call(kit.ds.transaction()(kit.body(fail=True)), "fig")
    assert kit.items() == ["date"]


def test_sql_session_outside_a_transaction_is_a_programming_error(kit: Kit) -> None:
    with pytest.raises(AssertionError, match="sql_session"):
        kit.ds.sql_session()


def test_sql_session_of_another_datasource_is_refused_inside_a_transaction(kit: Kit, tmp_path: Path) -> None:
    other = SQLAlchemyDatasource.create(f"sqlite:///{tmp_path / 'other.sqlite'}")
    seen: List[str] = []

    def peek() -> None:
        try:
            other.sql_session()
        except AssertionError:
            seen.append("refused")

    if kit.kind == "async_sqlalchemy":
        async def peek_async() -> None:
            peek()

        asyncio.run(kit.ds.transaction()(peek_async)())
    else:
        kit.ds.transaction()(peek)()
    assert seen == ["refused"]
    other.close()


# ----------------------------------------------------------------------
# A serializer of one's own
# ----------------------------------------------------------------------


class JSONSerializer(Serializer):
    def serialize(self, data: Any) -> str:
        return json.dumps(data)

    def deserialize(self, serialized_data: str) -> Any:
        return json.loads(serialized_data)

    def name(self) -> str:
        return "test_json"


def test_outputs_are_recorded_with_the_datasources_serializer(app_url: str, sys_db_url: str) -> None:
    ds = SQLAlchemyDatasource.create(app_url, serializer=JSONSerializer())
    observe(app_url, "CREATE TABLE items (name TEXT PRIMARY KEY)")
    DBOS(config=DBOSConfig(name="ds-test", system_database_url=sys_db_url))
    DBOS.launch()
    kit = Kit("sqlalchemy", app_url, ds)
    add = ds.transaction()(kit.body())
    workflow_id = f"wf-{uuid.uuid4().hex[:8]}"
    assert run(kit.workflow(add), workflow_id, "yuzu") == "added-yuzu"
    table = "datasource_outputs" if kit.sqlite else "dbos.datasource_outputs"
    assert observe(app_url, f"SELECT output, serialization FROM {table}") == [('"added-yuzu"', "test_json")]
    delete_step(workflow_id, 1)
    assert recover(workflow_id) == "added-yuzu"
    assert kit.calls == ["yuzu"]
    ds.close()


# ----------------------------------------------------------------------
# Bad input: a clear error, and nothing written
# ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_an_unknown_isolation_level_is_refused_at_decoration(kind: str, app_url: str) -> None:
    ds = create(kind, app_url)
    with pytest.raises(DBOSInvalidArgumentError, match="isolation_level 'READ UNCOMMITTED'"):
        ds.transaction(isolation_level="READ UNCOMMITTED")
    with pytest.raises(DBOSInvalidArgumentError, match="isolation_level 'dirty'"):
        if kind == "async_sqlalchemy":
            async def nothing() -> None: ...

            asyncio.run(ds.run_tx_step_async({"isolation_level": "dirty"}, nothing))
        else:
            ds.run_tx_step({"isolation_level": "dirty"}, lambda: None)


@pytest.mark.parametrize("kind", KINDS)
def test_a_url_of_another_database_is_refused_without_its_password(kind: str) -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="database_url") as caught:
        create(kind, "mysql://shop:hunter2@localhost/shop")
    assert "hunter2" not in str(caught.value)


def test_a_missing_driver_is_named_before_anything_is_written(backend: str, app_url: str) -> None:
    scheme = "sqlite+nosuchdriver" if backend == "sqlite" else "postgresql+nosuchdriver"
    url = scheme + ":" + app_url.partition(":")[2]
    with pytest.raises(DBOSInvalidArgumentError, match="driver is not installed"):
        SQLAlchemyDatasource.create(url)
    if backend == "sqlite":
        assert not Path(app_url.removeprefix("sqlite:///")).exists()
    else:
        name = app_url.rsplit("/", 1)[1]
        assert observe(postgres_url("postgres"), "SELECT 1 FROM pg_database WHERE datname = %s", (name,)) == []


def test_the_wrong_kind_of_function_is_refused_at_decoration(app_url: str) -> None:
    sync_ds = SQLAlchemyDatasource.create(app_url)
    async_ds = asyncio.run(AsyncSQLAlchemyDatasource.create(app_url))

    async def coroutine() -> None: ...

    def plain() -> None: ...

    with pytest.raises(DBOSException, match="needs a regular function"):
        sync_ds.transaction()(coroutine)
    with pytest.raises(DBOSException, match="needs a coroutine function"):
        async_ds.transaction()(plain)
    with pytest.raises(DBOSInvalidArgumentError, match="ds.begin"):
        sync_ds.transaction("SERIALIZABLE")  # type: ignore[arg-type]
    with pytest.raises(DBOSException, match="run_tx_step_async"):
        async_ds.run_tx_step(None, coroutine)
    sync_ds.close()
    asyncio.run(async_ds.close())


def test_dbapi_create_needs_a_url_or_a_connect_function_and_its_dialect() -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="database_url"):
        DBAPIDatasource.create()
    with pytest.raises(DBOSInvalidArgumentError, match="dialect"):
        DBAPIDatasource.create(connect=lambda: None)


