"""Fixtures shared by every test.

``--backend sqlite|postgres`` (or DBOS_TEST_BACKEND) picks the system database
for integration tests. PostgreSQL tests each get a fresh database on the
server at DBOS_TEST_POSTGRES_URL, dropped afterwards.

``sys_db_url`` names a system database that does not exist yet; ``config``,
``dbos`` and ``sysdb`` put a database already migrated to the latest version
at that same URL (copied from a template migrated once per session: see
tests/migrated.py). A test about creating or migrating the database takes
``sys_db_url`` alone, or ``fresh_config``.
"""

from __future__ import annotations

import faulthandler
import os
import queue
import sys
import threading
import uuid
from typing import Iterator, Optional

import pytest

from dbos import DBOS, DBOSConfig
from dbos._sysdb import DatabaseURL, SystemDatabase
from tests.migrated import PostgresSupplier, copy_sqlite, migrate_once
from tests.probe import drop_database

POSTGRES_SERVER = os.environ.get("DBOS_TEST_POSTGRES_URL", "postgresql://postgres@localhost:5432/postgres")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=["sqlite", "postgres"],
        default=os.environ.get("DBOS_TEST_BACKEND", "sqlite"),
        help="system database backend for integration tests",
    )


EXIT_GRACE_S = 60.0


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """If a thread a test left running (a workflow blocked forever) keeps the
    interpreter from exiting, say which after a grace period and exit with the
    run's status: CI gets the verdict and the stacks, not a stall until its limit."""
    if _dropper is not None:
        _dropper.finish()
    def guard() -> None:
        sys.stderr.write(f"\npytest had not exited {EXIT_GRACE_S:g} s after the session; threads still running:\n")
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(int(exitstatus))

    timer = threading.Timer(EXIT_GRACE_S, guard)
    timer.daemon = True
    timer.start()


def pytest_report_header(config: pytest.Config) -> str:
    return f"dbos backend: {config.getoption('--backend')}"


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--backend"))


def postgres_url(database: str) -> str:
    return DatabaseURL.parse(POSTGRES_SERVER).with_database(database).render()


class _Dropper:
    """Drops the tests' PostgreSQL databases on a thread of its own: a DROP
    DATABASE costs 0.1 to 0.4 s, which the next test need not wait for (its
    database has a name of its own). The session waits for the last drops."""

    def __init__(self) -> None:
        self.pending: "queue.Queue[Optional[str]]" = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="test-db-dropper", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (url := self.pending.get()) is not None:
            try:
                drop_database(url)
            except Exception as exc:  # a leftover database is not worth failing a test for
                sys.stderr.write(f"\ncould not drop the test database {url}: {exc}\n")
            finally:
                self.pending.task_done()

    def finish(self) -> None:
        self.pending.put(None)
        self.thread.join(timeout=120)


_dropper: Optional[_Dropper] = None


def drop_later(url: str) -> None:
    """Drop the test database ``url`` soon, on the dropper's thread."""
    global _dropper
    if _dropper is None:
        _dropper = _Dropper()
    _dropper.pending.put(url)


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A URL naming a PostgreSQL database that does not exist yet."""
    url = postgres_url(f"dbos_test_{uuid.uuid4().hex[:12]}")
    yield url
    drop_later(url)


@pytest.fixture
def fresh_sqlite_url(tmp_path: "os.PathLike[str]") -> str:
    return f"sqlite:///{os.path.join(str(tmp_path), 'system.sqlite')}"


@pytest.fixture
def empty_db_url(backend: str, tmp_path: "os.PathLike[str]") -> Iterator[str]:
    """An application database URL on the chosen backend; the database does not
    exist yet, and is dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{os.path.join(str(tmp_path), 'app.sqlite')}"
        return
    url = postgres_url(f"dbos_app_{uuid.uuid4().hex[:12]}")
    yield url
    drop_later(url)


@pytest.fixture
def sys_db_url(backend: str, request: pytest.FixtureRequest) -> str:
    """A system database URL on the chosen backend; the database does not exist yet."""
    name = "fresh_postgres_url" if backend == "postgres" else "fresh_sqlite_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite system database file migrated to the latest version, to copy."""
    url = f"sqlite:///{tmp_path_factory.mktemp('template') / 'system.sqlite'}"
    migrate_once(url)
    return url


@pytest.fixture(scope="session")
def postgres_supplier() -> Iterator[PostgresSupplier]:
    """Copies of a PostgreSQL template migrated once for the session (named
    uniquely, so sessions running side by side do not share one)."""
    template = postgres_url(f"dbos_template_{uuid.uuid4().hex[:12]}")
    migrate_once(template)
    supplier = PostgresSupplier(template)
    yield supplier
    for name in supplier.finish():
        drop_later(postgres_url(name))
    drop_later(template)


@pytest.fixture
def migrated_sys_db_url(sys_db_url: str, backend: str, request: pytest.FixtureRequest) -> str:
    """``sys_db_url``, where a system database migrated to the latest version now exists."""
    if backend == "postgres":
        request.getfixturevalue("postgres_supplier").take(sys_db_url)
    else:
        copy_sqlite(str(request.getfixturevalue("sqlite_template")), sys_db_url)
    return sys_db_url


@pytest.fixture
def fresh_config(sys_db_url: str) -> DBOSConfig:
    """A configuration whose system database does not exist yet."""
    return DBOSConfig(name="test-app", system_database_url=sys_db_url)


@pytest.fixture
def config(migrated_sys_db_url: str) -> DBOSConfig:
    """A configuration whose system database exists, migrated to the latest version."""
    return DBOSConfig(name="test-app", system_database_url=migrated_sys_db_url)


@pytest.fixture
def sysdb(migrated_sys_db_url: str) -> Iterator[SystemDatabase]:
    """A migrated system database on the chosen backend."""
    db = SystemDatabase(migrated_sys_db_url)
    db.migrate()
    yield db
    db.close()


@pytest.fixture
def dbos(config: DBOSConfig) -> Iterator[type[DBOS]]:
    """A launched DBOS on a fresh, already migrated system database."""
    DBOS(config=config)
    DBOS.launch()
    yield DBOS
    DBOS.destroy(destroy_registry=True)


@pytest.fixture(autouse=True)
def _no_leftover_instance() -> Iterator[None]:
    # A test that fails half-way must not leave its instance to the next one.
    yield
    DBOS.destroy(destroy_registry=True)
