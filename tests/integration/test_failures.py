"""A system database that refuses reaches the caller as a DBOS exception
naming the database (password hidden), the operation and the cause, with
the driver's error chained; provoked on the real servers."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from dbos._sysdb import SystemDatabase
from dbos._sysdb.errors import driver_error
from dbos._sysdb.url import DatabaseURL
from dbos.error import DBOSDatabaseConnectionError, DBOSException, DBOSReadOnlyDatabaseError, DBOSSystemDatabaseError
from tests.probe import execute, maintenance_url


@pytest.fixture
def migrated(sys_db_url: str) -> Iterator[SystemDatabase]:
    sysdb = SystemDatabase(sys_db_url, pool_size=2)
    sysdb.migrate()
    yield sysdb
    sysdb.close()


def read_only_mount(folder: str) -> None:
    """Remount ``folder`` read-only over itself until the test ends (a lazy unmount)."""
    for args in (["--bind", folder, folder], ["-o", "remount,bind,ro", folder]):
        done = subprocess.run(["mount", *args], capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", folder])
            pytest.skip(f"cannot mount {folder} read-only (needs root): {done.stderr.strip()}")


@pytest.fixture(autouse=True)
def unmount(tmp_path: Path) -> Iterator[None]:
    yield
    while subprocess.run(["mountpoint", "-q", str(tmp_path)]).returncode == 0:
        subprocess.run(["umount", "-l", str(tmp_path)], check=True)


def driver_cause(exc: DBOSException) -> BaseException:
    """The driver's own error, chained behind the DBOS exception (and Peewee's)."""
    assert exc.__cause__ is not None
    return driver_error(exc)


def test_an_unknown_role_cannot_connect(backend: str, fresh_postgres_url: str) -> None:
    if backend != "postgres":
        pytest.skip("PostgreSQL roles")
    url = DatabaseURL.parse(fresh_postgres_url)
    stranger = url.__class__(**{**url.__dict__, "user": "dbos_no_such_role", "password": "hunter2"})
    sysdb = SystemDatabase(stranger)
    try:
        with pytest.raises(DBOSDatabaseConnectionError) as caught:
            sysdb.migrate()
    finally:
        sysdb.close()
    message = str(caught.value)
    assert "dbos_no_such_role:***@" in message and "hunter2" not in message
    assert "failed while connecting: no connection could be opened" in message
    assert 'role "dbos_no_such_role" does not exist' in message  # the driver's words, quoted
    assert type(driver_cause(caught.value)).__module__.startswith("psycopg2")


def test_a_read_only_database_is_named(backend: str, migrated: SystemDatabase, sys_db_url: str) -> None:
    if backend != "postgres":
        pytest.skip("a read-only PostgreSQL database; SQLite's is below")
    name = DatabaseURL.parse(sys_db_url).database
    execute(maintenance_url(sys_db_url), f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    migrated.close()  # new connections take the setting
    reader = SystemDatabase(sys_db_url, pool_size=2)
    try:
        assert reader.list_application_versions() == []  # reading is fine
        with pytest.raises(DBOSReadOnlyDatabaseError) as caught:
            reader.register_application_version("v1", "app")
    finally:
        reader.close()
    assert "failed while writing application_versions: the database is read-only" in str(caught.value)


def test_a_sqlite_file_on_a_read_only_mount(backend: str, migrated: SystemDatabase, sys_db_url: str) -> None:
    if backend != "sqlite":
        pytest.skip("a SQLite file")
    migrated.close()
    read_only_mount(str(Path(DatabaseURL.parse(sys_db_url).sqlite_path).parent))
    reader = SystemDatabase(sys_db_url, pool_size=2)
    try:  # a WAL file cannot even be read where its -shm cannot be made
        with pytest.raises(DBOSDatabaseConnectionError) as caught:
            reader.list_application_versions()
    finally:
        reader.close()
    assert "failed while connecting: no connection could be opened" in str(caught.value)
    assert "may open the file" in str(caught.value)
    assert type(driver_cause(caught.value)).__module__ == "sqlite3"


def test_a_file_that_is_no_database(backend: str, tmp_path: Path) -> None:
    if backend != "sqlite":
        pytest.skip("a SQLite file")
    junk = tmp_path / "system.sqlite"
    junk.write_bytes(b"these bytes are not a SQLite database header at all" * 40)
    sysdb = SystemDatabase(f"sqlite:///{junk}")
    try:
        with pytest.raises(DBOSSystemDatabaseError) as caught:
            sysdb.migrate()
    finally:
        sysdb.close()
    assert "is not a database" in str(caught.value) and str(junk) in str(caught.value)
    assert type(driver_cause(caught.value)).__module__ == "sqlite3"
