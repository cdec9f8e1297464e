"""``DjangoDatasource`` and the Django settings, on a real Django and a real database.

Django's settings can be configured once per process, so the checks run in
one child process per backend: ``python -m tests.integration.test_django
BACKEND LOCATION`` configures Django on a fresh database, launches DBOS and
runs every ``check_*`` function below, printing one ``CHECK <name> <outcome>``
line each. The pytest side runs that child once (a module fixture) and turns
each line into a test of its own. How settings map to a system database URL
needs no configured Django and is tested in this process.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sqlite3
import sys
import threading
import traceback
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

from dbos._sysdb.backend import backend_for
from dbos._sysdb.url import DatabaseURL
from tests.probe import drop_database

ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 120


class Boom(Exception):
    """Raised by test transactions; module level, so it pickles."""


# ======================================================================
# The pytest side
# ======================================================================


@pytest.fixture(scope="module")
def outcomes(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, str]]:
    """Run the child once on a fresh database; each check's outcome by name."""
    if backend == "sqlite":
        location = str(tmp_path_factory.mktemp("django") / "django.sqlite3")
        yield _run_child(backend, location)
        return
    from tests.conftest import postgres_url

    url = postgres_url(f"dbos_django_{uuid.uuid4().hex[:12]}")
    database = backend_for(DatabaseURL.parse(url))
    database.create_database()
    try:
        yield _run_child(backend, url)
    finally:
        drop_database(url)


def _run_child(backend: str, location: str) -> Dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.integration.test_django", backend, location],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
    )
    assert proc.returncode == 0, f"the Django child failed:\n{proc.stdout}\n{proc.stderr}"
    found: Dict[str, str] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("CHECK "):
            _, name, outcome = line.split(" ", 2)
            found[name] = json.loads(outcome)
    return found


# Settings -> system database URL (pure functions: no configured Django needed)


def test_a_sqlite_file_becomes_an_absolute_sqlite_url() -> None:
    from dbos.contrib.django.conf import system_database_url

    databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "rel/db.sqlite3"}}
    url = DatabaseURL.parse(system_database_url(databases, "default"))
    assert url.is_sqlite and url.sqlite_path == os.path.abspath("rel/db.sqlite3")


def test_postgres_settings_keep_credentials_port_socket_and_ssl_options() -> None:
    from dbos.contrib.django.conf import system_database_url

    entry = {"ENGINE": "django.db.backends.postgresql", "NAME": "shop", "USER": "app",
             "PASSWORD": "p@ss:w/rd", "HOST": "db.internal", "PORT": "6543",
             "OPTIONS": {"sslmode": "require", "isolation_level": 3}}
    url = DatabaseURL.parse(system_database_url({"default": entry}, "default"))
    assert (url.database, url.user, url.password, url.host, url.port) == (
        "shop", "app", "p@ss:w/rd", "db.internal", 6543)
    assert url.query == {"sslmode": "require"}  # only libpq's own options
    socket = {**entry, "HOST": "/var/run/postgresql", "PORT": ""}
    url = DatabaseURL.parse(system_database_url({"default": socket}, "default"))
    assert (url.host, url.port, url.query["host"]) == (None, None, "/var/run/postgresql")


@pytest.mark.parametrize("entry, expected", [
    ({"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}, "in-memory"),
    ({"ENGINE": "django.db.backends.sqlite3",
      "NAME": "file:memorydb_default?mode=memory&cache=shared"}, "['TEST']['NAME']"),
    ({"ENGINE": "django.db.backends.mysql", "NAME": "shop"}, "set system_database_url"),
])
def test_databases_dbos_cannot_share_ask_for_a_system_database_url(
    entry: Dict[str, Any], expected: str
) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from dbos.contrib.django.conf import system_database_url

    with pytest.raises(ImproperlyConfigured, match=r"DATABASES\['default'\]") as info:
        system_database_url({"default": entry}, "default")
    assert expected in str(info.value)


# ======================================================================
# The child: Django configured on the database named on the command line
# ======================================================================


def configure_django(backend: str, location: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["dbos.contrib.django"],
        DATABASES={"default": _database(backend, location)},
        DBOS={"name": "django-integration"},
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()


def _database(backend: str, location: str) -> Dict[str, Any]:
    if backend == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": location}
    url = DatabaseURL.parse(location)
    return {"ENGINE": "django.db.backends.postgresql", "NAME": url.database, "USER": url.user or "",
            "PASSWORD": url.password or "", "HOST": url.host or "", "PORT": str(url.port or "")}


def define_app(backend: str, location: str) -> SimpleNamespace:
    """A model with its table, and the DBOS functions the checks call."""
    from django.db import connection, connections, models, transaction

    from dbos import DBOS

    class Item(models.Model):  # type: ignore[misc]  # Django ships no type hints
        name = models.CharField(max_length=50, unique=True)
        n = models.IntegerField(default=0)

        class Meta:
            app_label = "dbos"  # the only installed app; the table is dbos_item

    with connection.schema_editor() as editor:
        editor.create_model(Item)

    sessions: List[Any] = []

    @DBOS.transaction()
    def add(name: str, n: int) -> bool:
        Item.objects.create(name=name, n=n)
        sessions.append(DBOS.sql_session)
        return DBOS.sql_session is connections["default"]

    @DBOS.workflow()
    def add_wf(name: str, n: int) -> bool:
        return add(name, n)

    @DBOS.transaction()
    def add_then_fail(name: str) -> None:
        Item.objects.create(name=name)
        raise Boom(f"no {name}")

    @DBOS.workflow()
    def fail_wf(name: str) -> None:
        add_then_fail(name)

    @DBOS.transaction()
    def partial() -> List[str]:
        Item.objects.create(name="kept")
        try:
            with transaction.atomic():  # a savepoint inside our transaction
                Item.objects.create(name="dropped")
                raise Boom("undo the savepoint only")
        except Boom:
            pass
        return sorted(Item.objects.filter(name__in=["kept", "dropped"]).values_list("name", flat=True))

    @DBOS.workflow()
    def partial_wf() -> List[str]:
        return partial()

    def level_reader(level: Any) -> Callable[[], str]:
        @DBOS.transaction(isolation_level=level, name=f"show_{level}")
        def show() -> str:
            with DBOS.sql_session.cursor() as cursor:
                cursor.execute("SHOW transaction_isolation")
                return str(cursor.fetchone()[0])

        return show

    levels = {level: level_reader(level) for level in ("SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED")}

    @DBOS.workflow()
    def level_wf(level: str) -> str:
        return levels[level]()

    @DBOS.transaction()
    def probe_write_lock() -> str:
        # Another connection asks for the write lock without waiting.
        other = sqlite3.connect(location, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            return "free"
        except sqlite3.OperationalError as exc:
            return str(exc)
        finally:
            other.close()

    @DBOS.workflow()
    def lock_wf() -> str:
        return probe_write_lock()

    attempts: Dict[str, int] = {}
    both_read = threading.Barrier(2)

    @DBOS.transaction()
    def bump(key: str) -> int:
        attempts[key] = attempts.get(key, 0) + 1
        current = Item.objects.get(name="counter").n
        if backend == "postgres" and attempts[key] == 1:
            # Both first attempts read 0 before either writes: one must lose.
            # (SQLite's write lock at BEGIN serializes them instead.)
            both_read.wait(timeout=10)
        Item.objects.filter(name="counter").update(n=current + 1)
        return current + 1

    @DBOS.workflow()
    def bump_wf(key: str) -> int:
        return bump(key)

    @DBOS.workflow()
    async def async_direct_wf() -> bool:
        return add("async-direct", 1)

    @DBOS.workflow()
    async def async_in_thread_wf() -> bool:
        return await asyncio.to_thread(add, "async-in-thread", 1)

    return SimpleNamespace(**locals())


def run_checks(backend: str, location: str) -> None:
    from dbos import DBOS
    from dbos.contrib.django import launch

    first = "ready_constructs_without_launching"
    _report(first, _run_one(check_ready_constructs_without_launching, SimpleNamespace(backend=backend)))
    app = define_app(backend, location)  # registers the functions before launch, as apps do
    launch()
    for name in all_check_names():
        if name != first:
            _report(name, _run_one(globals()[f"check_{name}"], app))
    DBOS.destroy()


def _run_one(check: Callable[[Any], Optional[str]], app: Any) -> str:
    try:
        skipped = check(app)
    except BaseException:
        return "FAIL " + traceback.format_exc()
    return f"SKIP {skipped}" if skipped else "OK"


def _report(name: str, outcome: str) -> None:
    print(f"CHECK {name} {json.dumps(outcome)}", flush=True)


# ----------------------------------------------------------------------
# The checks: each raises on failure, or returns why it does not apply
# ----------------------------------------------------------------------


def _outputs_table() -> str:
    from dbos.contrib.django import DjangoDatasource

    return DjangoDatasource().sql.table


def _sql(sql: str, params: tuple[Any, ...] = ()) -> List[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()]


def check_ready_constructs_without_launching(app: Any) -> None:
    from dbos import DBOS

    # Django is set up (ready() ran), DBOS is not launched yet.
    assert DBOS.config is not None and DBOS.config["name"] == "django-integration"
    assert not [t.name for t in threading.enumerate() if t.name.startswith("dbos-")]
    if app.backend == "sqlite":
        assert not _sql("SELECT name FROM sqlite_master WHERE name = 'workflow_status'")
    else:
        assert _sql("SELECT to_regclass('dbos.workflow_status')") == [(None,)]


def check_system_tables_live_in_the_django_database(app: Any) -> None:
    if app.backend == "sqlite":
        names = {row[0] for row in _sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"workflow_status", "transaction_outputs", "dbos_item"} <= names, names
        return
    found = _sql("SELECT to_regclass('dbos.workflow_status') IS NOT NULL, "
                 "to_regclass('dbos.transaction_outputs') IS NOT NULL, current_database()")
    assert found == [(True, True, DatabaseURL.parse(app.location).database)], found


def check_datasource_speaks_the_backends_dialect_with_percent_s(app: Any) -> None:
    from dbos import DBOS
    from dbos.contrib.django import DjangoDatasource

    source = DBOS.app_datasource
    assert isinstance(source, DjangoDatasource) and source.using == "default"
    assert source.dialect == ("sqlite" if app.backend == "sqlite" else "postgresql")
    assert source.marker == "%s"


def check_orm_writes_and_the_output_commit_together(app: Any) -> None:
    from dbos import SetWorkflowID

    workflow_id = f"add-{uuid.uuid4().hex[:8]}"
    with SetWorkflowID(workflow_id):
        same_session = app.add_wf("together", 7)
    assert same_session is True, "DBOS.sql_session is not this thread's Django connection"
    assert list(app.Item.objects.filter(name="together").values_list("n", flat=True)) == [7]
    recorded = _sql(f"SELECT function_name, output, error FROM {_outputs_table()} "
                    "WHERE workflow_uuid = %s", (workflow_id,))
    assert len(recorded) == 1 and recorded[0][0].endswith("add") and recorded[0][2] is None, recorded


def check_transactions_on_dbos_threads_close_their_connections(app: Any) -> None:
    from dbos import DBOS

    del app.sessions[:]
    handles = [DBOS.start_workflow(app.add_wf, f"threaded-{i}", i) for i in range(4)]
    # Each ran on its DBOS thread's own connection...
    assert [h.get_result() for h in handles] == [True] * 4
    assert app.Item.objects.filter(name__startswith="threaded-").count() == 4
    # ...closed when its transaction ended, as at the end of a request
    # (CONN_MAX_AGE is 0): nothing else would close it on DBOS's threads.
    # (PostgreSQL may retry one of the concurrent inserts: an attempt each.)
    assert len(app.sessions) >= 4 and all(s.connection is None for s in app.sessions)


def check_a_failed_transaction_rolls_back_its_orm_writes(app: Any) -> None:
    from dbos import DBOS, SetWorkflowID

    workflow_id = f"fail-{uuid.uuid4().hex[:8]}"
    try:
        with SetWorkflowID(workflow_id):
            app.fail_wf("doomed")
        raise AssertionError("the transaction's exception did not propagate")
    except Boom:
        pass
    assert not app.Item.objects.filter(name="doomed").exists()
    status = DBOS.get_workflow_status(workflow_id)
    assert status is not None and status.status == "ERROR" and isinstance(status.error, Boom)
    errors = _sql(f"SELECT error FROM {_outputs_table()} WHERE workflow_uuid = %s", (workflow_id,))
    assert len(errors) == 1 and errors[0][0] is not None, errors


def check_a_transaction_inside_an_open_atomic_block_is_refused(app: Any) -> None:
    from django.db import connection, transaction

    from dbos.error import DBOSException

    message = ""
    with transaction.atomic():
        try:
            app.add_wf("inside-atomic", 1)
        except DBOSException as exc:
            message = str(exc)
    assert "transaction.atomic() block already open" in message, message
    assert not app.Item.objects.filter(name="inside-atomic").exists()
    assert not connection.in_atomic_block and connection.get_autocommit()


def check_a_transaction_with_autocommit_off_is_refused_and_leaves_pending_work_alone(
    app: Any,
) -> None:
    from django.db import transaction

    from dbos.contrib.django import DjangoDatasource
    from dbos.error import DBOSException

    transaction.set_autocommit(False)
    try:
        app.Item.objects.create(name="pending")
        try:
            with DjangoDatasource().begin("SERIALIZABLE"):
                raise AssertionError("the transaction started")
        except DBOSException as exc:
            assert "autocommit" in str(exc), str(exc)
        assert app.Item.objects.filter(name="pending").exists()  # not closed away
    finally:
        transaction.rollback()
        transaction.set_autocommit(True)


def check_a_user_atomic_block_inside_a_transaction_is_a_savepoint(app: Any) -> None:
    assert app.partial_wf() == ["kept"]
    assert app.Item.objects.filter(name="kept").exists()
    assert not app.Item.objects.filter(name="dropped").exists()


def check_the_requested_isolation_level_is_used(app: Any) -> Optional[str]:
    if app.backend == "sqlite":
        return "SQLite transactions are always serializable"
    shown = {level: app.level_wf(level) for level in ("SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED")}
    assert shown == {"SERIALIZABLE": "serializable", "REPEATABLE READ": "repeatable read",
                     "READ COMMITTED": "read committed"}, shown
    return None


def check_sqlite_takes_the_write_lock_at_begin(app: Any) -> Optional[str]:
    if app.backend != "sqlite":
        return "PostgreSQL has no database write lock"
    assert app.lock_wf() == "database is locked"
    return None


def check_concurrent_conflicting_transactions_both_commit(app: Any) -> None:
    from dbos import DBOS

    app.Item.objects.create(name="counter", n=0)
    handles = [DBOS.start_workflow(app.bump_wf, key) for key in ("a", "b")]
    assert sorted(h.get_result() for h in handles) == [1, 2]
    assert app.Item.objects.get(name="counter").n == 2
    if app.backend == "postgres":
        # The loser's serialization failure came wrapped in Django's
        # OperationalError, and was retried.
        assert sum(app.attempts.values()) == 3, app.attempts


def check_is_retryable_sees_through_djangos_error_wrappers(app: Any) -> None:
    from django.db import IntegrityError, OperationalError, connection

    from dbos.contrib.django import DjangoDatasource

    source = DjangoDatasource()
    conflict = _django_conflict_error(app)
    assert isinstance(conflict, OperationalError), repr(conflict)
    assert source.is_retryable(conflict), repr(conflict.__cause__)
    app.Item.objects.create(name="unique-once")
    try:
        app.Item.objects.create(name="unique-once")
        raise AssertionError("the duplicate was accepted")
    except IntegrityError as duplicate:
        assert not source.is_retryable(duplicate)
    connection.close()


def _django_conflict_error(app: Any) -> BaseException:
    """A real driver error of lock contention, as Django raises it."""
    from django.db import DatabaseError, connection

    if app.backend == "postgres":
        try:
            _sql("DO $$ BEGIN RAISE EXCEPTION 'lost a race' USING ERRCODE = '40001'; END $$")
        except DatabaseError as exc:
            return exc
        raise AssertionError("no serialization failure")
    holder = sqlite3.connect(app.location, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        _sql("PRAGMA busy_timeout = 0")
        app.Item.objects.create(name="blocked")
    except DatabaseError as exc:
        return exc
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        connection.close()  # drop the busy_timeout change
    raise AssertionError("the write was not blocked")


def check_async_workflows_run_transactions_through_to_thread(app: Any) -> None:
    from dbos.error import DBOSException

    try:
        asyncio.run(app.async_direct_wf())
        raise AssertionError("a transaction ran on the event loop's thread")
    except DBOSException as exc:
        assert "asyncio.to_thread" in str(exc), str(exc)
    assert asyncio.run(app.async_in_thread_wf()) is True
    assert app.Item.objects.filter(name__startswith="async-").count() == 1


def check_bad_settings_raise_improperly_configured_naming_the_field(app: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from dbos.contrib.django.conf import dbos_config

    def problem(value: Any) -> str:
        with override_settings(DBOS=value):
            try:
                dbos_config()
            except ImproperlyConfigured as exc:
                return str(exc)
        raise AssertionError(f"settings.DBOS = {value!r} was accepted")

    assert problem({"name": "shop", "sys_db_pool_size": "many"}).startswith(
        "settings.DBOS is invalid at 'sys_db_pool_size': must be")
    assert "'name'" in problem({"nmae": "typo"})
    assert "settings.DBOS is missing" in problem(None)


def check_explicit_database_settings_are_kept(app: Any) -> None:
    from django.test import override_settings

    from dbos.contrib.django.conf import dbos_config

    given = {"name": "shop", "system_database_url": "sqlite:///elsewhere.sqlite",
             "application_database_url": "sqlite:///app.sqlite"}
    with override_settings(DBOS=given):
        config = dbos_config()
    assert config == given and config is not given


def check_a_created_datasource_runs_orm_writes_exactly_once(app: Any) -> None:
    from django.db import connections

    from dbos import DBOS, SetWorkflowID
    from dbos.contrib.django import DjangoDatasource
    from tests.integration.sysdb_sql import delete_step, recover

    ds = DjangoDatasource.create()
    calls: List[str] = []

    @ds.transaction(isolation_level="READ COMMITTED")
    def add_created(name: str) -> bool:
        app.Item.objects.create(name=name, n=2)
        calls.append(name)
        return ds.sql_session() is connections["default"]

    @DBOS.workflow()
    def created_wf(name: str) -> bool:
        return add_created(name)

    workflow_id = f"created-{uuid.uuid4().hex[:8]}"
    with SetWorkflowID(workflow_id):
        assert created_wf("created") is True
    delete_step(workflow_id, 1)  # as if killed between the commit and the checkpoint
    assert recover(workflow_id) is True
    assert calls == ["created"]
    assert app.Item.objects.filter(name="created").count() == 1
    table = "datasource_outputs" if app.backend == "sqlite" else "dbos.datasource_outputs"
    assert _sql(f"SELECT step_id, serialization FROM {table} WHERE workflow_id = %s",
                (workflow_id,)) == [(1, "py_pickle")]


# ======================================================================
# One test per check (after the checks, so that they are all defined)
# ======================================================================


def all_check_names() -> List[str]:
    return [name[len("check_"):] for name in globals() if name.startswith("check_")]


@pytest.mark.parametrize("name", all_check_names())
def test_django(outcomes: Dict[str, str], name: str) -> None:
    assert name in outcomes, f"the child reported nothing for {name}"
    outcome = outcomes[name]
    if outcome.startswith("SKIP "):
        pytest.skip(outcome[len("SKIP "):])
    assert outcome == "OK", outcome


if __name__ == "__main__":
    configure_django(sys.argv[1], sys.argv[2])
    run_checks(sys.argv[1], sys.argv[2])
