"""The ``DBOS`` lifecycle against a real system database on the chosen backend.

Construction, launch, destroy and reset are checked through what they leave
in the database, read back over connections of the test's own (sqlite3 or
psycopg2), never through the code under test alone.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any, List, Set
from urllib.parse import urlsplit

import pytest

from dbos import DBOS, DBOSConfig
from dbos import _runtime as runtime
from dbos.error import (
    DBOSConfigError,
    DBOSException,
    DBOSInitializationError,
    DBOSMigrationRequiredError,
    DBOSNotLaunchedError,
)
from dbos._engine.registry import get_registry
from dbos._sysdb import latest_version

from ..probe import (
    SYSTEM_TABLES,
    database_exists,
    maintenance_url,
    migration_version,
    qualified,
    query,
    sqlite_path,
    table_names,
)



# ----------------------------------------------------------------------
# Independent look at the database
# ----------------------------------------------------------------------
















def stored_versions(url: str, schema: str = "dbos") -> Set[str]:
    table = qualified(url, "application_versions", schema)
    return {str(r[0]) for r in query(url, f"SELECT version_name FROM {table}")}


def create_unmigrated_database(url: str) -> None:
    """A database holding one unrelated table and no system tables."""
    path = sqlite_path(url)
    if path is not None:
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE app_data (x INTEGER)")
            conn.commit()
        return
    name = urlsplit(url).path.lstrip("/")
    query(maintenance_url(url), f'CREATE DATABASE "{name}"')
    query(url, "CREATE TABLE public.app_data (x INTEGER)")


def open_connections(url: str) -> int:
    """Connections to the database: server sessions, or this process's open files."""
    path = sqlite_path(url)
    if path is None:
        name = urlsplit(url).path.lstrip("/")
        sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        return int(query(maintenance_url(url), sql, (name,))[0][0])
    fds = Path("/proc/self/fd")
    targets = [os.path.realpath(fd) for fd in fds.iterdir() if fd.is_symlink()]
    return sum(1 for t in targets if t.startswith(os.path.realpath(path)))


def connections_drain(url: str, within_sec: float = 5.0) -> int:
    """Open connections once they stop dropping: PostgreSQL ends a session's
    backend process a moment after the client closes it, so pg_stat_activity
    may still list a closed session briefly."""
    deadline = time.monotonic() + within_sec
    count = open_connections(url)
    while count and time.monotonic() < deadline:
        time.sleep(0.02)
        count = open_connections(url)
    return count


def dbos_records(caplog: pytest.LogCaptureFixture, level: int) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dbos" and r.levelno == level]


# ----------------------------------------------------------------------
# Construction
# ----------------------------------------------------------------------


def test_second_construction_returns_first_instance_and_ignores_its_config(
    fresh_config: DBOSConfig, tmp_path: Path
) -> None:
    other_url = f"sqlite:///{tmp_path / 'other.sqlite'}"
    first = DBOS(config=fresh_config)
    second = DBOS(config=DBOSConfig(name="other-app", system_database_url=other_url))
    assert second is first
    assert DBOS.config is not None and DBOS.config["name"] == "test-app"
    DBOS.launch()
    assert database_exists(str(fresh_config["system_database_url"]))
    assert not os.path.exists(tmp_path / "other.sqlite")
    assert DBOS.get_latest_application_version().application_name == "test-app"


def test_destroy_lets_a_new_construction_build_a_fresh_instance(
    config: DBOSConfig, tmp_path: Path
) -> None:
    first = DBOS(config=config)
    DBOS.destroy()
    assert DBOS.config is None
    other_url = f"sqlite:///{tmp_path / 'other.sqlite'}"
    second = DBOS(config=DBOSConfig(name="other-app", system_database_url=other_url))
    assert second is not first
    assert DBOS.config is not None and DBOS.config["name"] == "other-app"
    DBOS.launch()
    assert os.path.exists(tmp_path / "other.sqlite")
    assert stored_versions(other_url) == {DBOS.application_version}


def test_constructor_without_config_reads_yaml_in_working_directory(
    sys_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("YAML_TEST_VERSION", "from-env")
    (tmp_path / "dbos_config.yaml").write_text(
        "name: yaml-app\n"
        f"system_database_url: '{sys_db_url}'\n"
        'application_version: "yaml-${YAML_TEST_VERSION}"\n'
        "executor_id: yaml-executor\n"
    )
    DBOS()
    DBOS.launch()
    assert DBOS.config is not None and DBOS.config["name"] == "yaml-app"
    assert DBOS.application_version == "yaml-from-env"
    assert DBOS.executor_id == "yaml-executor"
    assert stored_versions(sys_db_url) == {"yaml-from-env"}
    latest = DBOS.get_latest_application_version()
    assert (latest.version_name, latest.application_name) == ("yaml-from-env", "yaml-app")


def test_constructor_without_config_or_yaml_runs_on_sqlite_in_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "My Service"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    DBOS()
    assert DBOS.config is not None and DBOS.config["name"] == "my-service"
    assert list(workdir.iterdir()) == []
    DBOS.launch()
    database = workdir / "my_service.sqlite"
    assert table_names(f"sqlite:///{database}") >= SYSTEM_TABLES


INVALID_CONFIGS = [
    pytest.param({"sys_db_pool_size": 0}, id="pool-size-zero"),
    pytest.param({"name": "x!"}, id="bad-name"),
    pytest.param({"sys_db_pool_sise": 3}, id="unknown-key"),
    pytest.param({"system_database_url": "mysql://localhost/db"}, id="bad-url"),
]


@pytest.mark.parametrize("change", INVALID_CONFIGS)
def test_failed_construction_leaves_no_half_built_instance(
    config: DBOSConfig, change: dict[str, Any]
) -> None:
    bad = {**config, "executor_id": "never-used", **change}
    with pytest.raises(DBOSConfigError):
        DBOS(config=bad)  # type: ignore[arg-type]
    assert runtime.current() is None
    assert DBOS.config is None
    assert DBOS.executor_id != "never-used"
    with pytest.raises(DBOSException, match="before DBOS was initialized"):
        DBOS.list_application_versions()
    DBOS(config=config)
    DBOS.launch()
    assert DBOS.config is not None and DBOS.config["name"] == "test-app"
    assert [v.application_name for v in DBOS.list_application_versions()] == ["test-app"]


def test_unsupported_web_framework_fails_construction_cleanly(config: DBOSConfig) -> None:
    with pytest.raises(DBOSInitializationError, match="fastapi"):
        DBOS(config=config, fastapi=object())
    assert runtime.current() is None
    DBOS(config=config)
    DBOS.launch()
    assert DBOS.list_application_versions()


# ----------------------------------------------------------------------
# Before launch
# ----------------------------------------------------------------------


def test_using_dbos_before_construction_says_it_is_not_initialized() -> None:
    with pytest.raises(DBOSException) as info:
        DBOS.list_application_versions()
    assert not isinstance(info.value, DBOSNotLaunchedError)
    assert "DBOS.list_application_versions()" in str(info.value)
    assert "before DBOS was initialized" in str(info.value)


def test_using_dbos_before_launch_raises_not_launched(
    fresh_config: DBOSConfig, sys_db_url: str
) -> None:
    DBOS(config=fresh_config)
    for call in (DBOS.list_application_versions, DBOS.get_latest_application_version):
        with pytest.raises(DBOSNotLaunchedError) as info:
            call()
        assert "before DBOS was launched" in str(info.value)
        assert "DBOS.launch()" in str(info.value)
    # Construction alone never touches the database.
    assert not database_exists(sys_db_url)


def test_launch_without_an_instance_does_nothing(sys_db_url: str) -> None:
    DBOS.launch()
    assert DBOS.config is None
    assert not database_exists(sys_db_url)


# ----------------------------------------------------------------------
# Launch
# ----------------------------------------------------------------------


def test_launch_migrates_and_registers_the_application_version(
    fresh_config: DBOSConfig, sys_db_url: str
) -> None:
    DBOS(config=fresh_config)
    DBOS.launch()
    assert table_names(sys_db_url) >= SYSTEM_TABLES
    assert migration_version(sys_db_url) == latest_version()
    version = DBOS.application_version
    assert re.fullmatch(r"[0-9a-f]{32}", version), version
    assert stored_versions(sys_db_url) == {version}
    listed = DBOS.list_application_versions()
    assert [(v.version_name, v.application_name) for v in listed] == [(version, "test-app")]
    assert listed[0].version_timestamp > 0 and listed[0].created_at > 0
    assert DBOS.get_latest_application_version() == listed[0]


def test_second_launch_warns_and_does_nothing(
    config: DBOSConfig, caplog: pytest.LogCaptureFixture
) -> None:
    DBOS(config=config)
    DBOS.launch()
    before = DBOS.list_application_versions()
    caplog.clear()
    caplog.set_level(logging.INFO, logger="dbos")
    DBOS.launch()
    warnings = dbos_records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "already launched" in warnings[0]
    assert "DBOS launched!" not in dbos_records(caplog, logging.INFO)
    assert DBOS.list_application_versions() == before


def test_versions_are_listed_newest_first_across_launches(
    config: DBOSConfig, sys_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    for version in ("v1", "v2"):
        DBOS(config={**config, "application_version": version})
        DBOS.launch()
        DBOS.destroy()
    DBOS(config={**config, "application_version": "v1"})
    caplog.set_level(logging.WARNING, logger="dbos")
    DBOS.launch()
    assert [v.version_name for v in DBOS.list_application_versions()] == ["v2", "v1"]
    assert DBOS.get_latest_application_version().version_name == "v2"
    assert any("not the latest" in m for m in dbos_records(caplog, logging.WARNING))
    DBOS.set_latest_application_version("v1")
    assert DBOS.get_latest_application_version().version_name == "v1"


def test_computed_version_depends_on_registered_workflows(config: DBOSConfig) -> None:
    DBOS(config=config)
    DBOS.launch()
    empty_registry_version = DBOS.application_version
    DBOS.destroy(destroy_registry=True)

    @DBOS.workflow()
    def some_workflow() -> int:
        return 1

    assert list(get_registry().workflows) == [some_workflow.__qualname__]
    DBOS(config=config)
    DBOS.launch()
    assert DBOS.application_version != empty_registry_version
    names = [v.version_name for v in DBOS.list_application_versions()]
    assert sorted(names) == sorted([empty_registry_version, DBOS.application_version])


@pytest.mark.parametrize("existing", ["missing", "unmigrated"])
def test_launch_without_migrations_names_the_dbos_migrate_command(
    fresh_config: DBOSConfig, sys_db_url: str, existing: str, tmp_path: Path
) -> None:
    if existing == "unmigrated":
        create_unmigrated_database(sys_db_url)
    DBOS(config={**fresh_config, "run_migrations": False, "dbos_system_schema": "app_sys"})
    with pytest.raises(DBOSMigrationRequiredError) as info:
        DBOS.launch()
    assert isinstance(info.value, DBOSInitializationError)
    found = re.search(r"`(dbos migrate [^`]*)`", str(info.value))
    assert found, str(info.value)
    argv = shlex.split(found.group(1))
    assert argv[:4] == ["dbos", "migrate", "--sys-db-url", sys_db_url]
    # Nothing was created or migrated.
    assert database_exists(sys_db_url) == (existing == "unmigrated")
    if existing == "unmigrated":
        assert table_names(sys_db_url, "app_sys") & SYSTEM_TABLES == set()
        assert table_names(sys_db_url, "public") == {"app_data"}
    with pytest.raises(DBOSNotLaunchedError):
        DBOS.list_application_versions()

    # The command the message names does the job, and launch then succeeds.
    done = subprocess.run(
        [sys.executable, "-m", "dbos", *argv[1:]], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    DBOS.launch()
    assert table_names(sys_db_url, "app_sys") >= SYSTEM_TABLES
    assert stored_versions(sys_db_url, "app_sys") == {DBOS.application_version}


def test_launch_with_migrations_disabled_on_a_current_database(
    config: DBOSConfig, sys_db_url: str
) -> None:
    DBOS(config=config)
    DBOS.launch()
    DBOS.destroy()
    DBOS(config={**config, "run_migrations": False, "application_version": "v-next"})
    DBOS.launch()
    assert DBOS.get_latest_application_version().version_name == "v-next"
    assert len(stored_versions(sys_db_url)) == 2


# ----------------------------------------------------------------------
# Destroy
# ----------------------------------------------------------------------


def test_destroy_closes_the_system_database(config: DBOSConfig, sys_db_url: str) -> None:
    if sqlite_path(sys_db_url) is not None and not Path("/proc/self/fd").is_dir():
        pytest.skip("counting open SQLite files needs /proc")
    DBOS(config=config)
    DBOS.launch()
    DBOS.list_application_versions()
    assert open_connections(sys_db_url) > 0
    DBOS.destroy(workflow_completion_timeout_sec=0, destroy_registry=False)
    assert connections_drain(sys_db_url) == 0
    assert DBOS.config is None
    with pytest.raises(DBOSException, match="before DBOS was initialized"):
        DBOS.list_application_versions()


def test_destroy_resets_identity_from_the_environment(
    config: DBOSConfig, sys_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBOS__VMID", "vm-from-env")
    monkeypatch.setenv("DBOS__APPVERSION", "version-from-env")
    DBOS.destroy()  # identity is read from the environment when DBOS is destroyed
    assert (DBOS.executor_id, DBOS.application_version) == ("vm-from-env", "version-from-env")

    DBOS(config={**config, "executor_id": "exec-from-config", "application_version": "v-config"})
    DBOS.launch()
    assert (DBOS.executor_id, DBOS.application_version) == ("exec-from-config", "v-config")
    assert stored_versions(sys_db_url) == {"v-config"}
    DBOS.destroy(workflow_completion_timeout_sec=0, destroy_registry=False)
    assert (DBOS.executor_id, DBOS.application_version) == ("vm-from-env", "version-from-env")

    # Without configured values, the environment's are used.
    DBOS(config=config)
    DBOS.launch()
    assert (DBOS.executor_id, DBOS.application_version) == ("vm-from-env", "version-from-env")
    assert stored_versions(sys_db_url) == {"v-config", "version-from-env"}


def test_destroy_without_environment_restores_defaults(
    config: DBOSConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DBOS__VMID", raising=False)
    monkeypatch.delenv("DBOS__APPVERSION", raising=False)
    DBOS(config={**config, "executor_id": "exec-1", "application_version": "v-1"})
    DBOS.launch()
    DBOS.destroy()
    assert (DBOS.executor_id, DBOS.application_version) == ("local", "")


def test_destroy_registry_clears_the_registry_only_when_asked(config: DBOSConfig) -> None:
    @DBOS.workflow(name="registered")
    def registered() -> None:
        pass

    DBOS(config=config)
    DBOS.launch()
    DBOS.destroy(workflow_completion_timeout_sec=0, destroy_registry=False)
    assert list(get_registry().workflows) == ["registered"]
    DBOS(config=config)
    DBOS.destroy(destroy_registry=True)
    assert get_registry().workflows == {}


def test_destroy_without_an_instance_is_harmless() -> None:
    DBOS.destroy()
    DBOS.destroy(destroy_registry=True)
    assert DBOS.config is None


# ----------------------------------------------------------------------
# reset_system_database
# ----------------------------------------------------------------------


def test_reset_before_launch_drops_the_configured_database(
    config: DBOSConfig, sys_db_url: str
) -> None:
    DBOS(config={**config, "application_version": "old"})
    DBOS.launch()
    DBOS.destroy()
    assert database_exists(sys_db_url)
    DBOS(config={**config, "application_version": "new"})
    DBOS.reset_system_database()
    assert not database_exists(sys_db_url)
    if sqlite_path(sys_db_url) is not None:
        path = str(sqlite_path(sys_db_url))
        assert not any(os.path.exists(path + s) for s in ("-wal", "-shm"))
    DBOS.launch()
    assert stored_versions(sys_db_url) == {"new"}


def test_reset_without_an_instance_drops_the_given_database(
    config: DBOSConfig, sys_db_url: str
) -> None:
    DBOS(config=config)
    DBOS.launch()
    DBOS.destroy()
    DBOS.reset_system_database(system_database_url=sys_db_url)
    assert not database_exists(sys_db_url)
    DBOS.reset_system_database(system_database_url=sys_db_url)  # already gone: fine
    assert not database_exists(sys_db_url)


def test_reset_truncate_empties_tables_and_keeps_schema(
    fresh_config: DBOSConfig, sys_db_url: str
) -> None:
    DBOS(config={**fresh_config, "dbos_system_schema": "app_sys", "application_version": "v1"})
    DBOS.launch()
    DBOS.destroy()
    assert stored_versions(sys_db_url, "app_sys") == {"v1"}
    DBOS(config={**fresh_config, "dbos_system_schema": "app_sys"})
    DBOS.reset_system_database(truncate=True)  # configured URL and schema
    assert table_names(sys_db_url, "app_sys") >= SYSTEM_TABLES
    assert migration_version(sys_db_url, "app_sys") == latest_version()
    assert stored_versions(sys_db_url, "app_sys") == set()


def test_reset_truncate_without_an_instance_uses_the_given_schema(
    fresh_config: DBOSConfig, sys_db_url: str
) -> None:
    DBOS(config={**fresh_config, "dbos_system_schema": "app_sys", "application_version": "v1"})
    DBOS.launch()
    DBOS.destroy()
    DBOS.reset_system_database(system_database_url=sys_db_url, schema="app_sys", truncate=True)
    assert stored_versions(sys_db_url, "app_sys") == set()
    assert migration_version(sys_db_url, "app_sys") == latest_version()


def test_reset_truncate_of_a_missing_database_creates_nothing(sys_db_url: str) -> None:
    DBOS.reset_system_database(system_database_url=sys_db_url, truncate=True)
    assert not database_exists(sys_db_url)


def test_reset_after_launch_is_refused(config: DBOSConfig, sys_db_url: str) -> None:
    DBOS(config={**config, "application_version": "kept"})
    DBOS.launch()
    with pytest.raises(AssertionError, match="before DBOS.launch"):
        DBOS.reset_system_database()
    with pytest.raises(AssertionError):
        DBOS.reset_system_database(truncate=True)
    assert stored_versions(sys_db_url) == {"kept"}
    assert [v.version_name for v in DBOS.list_application_versions()] == ["kept"]


def test_reset_without_instance_or_url_only_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING, logger="dbos")
    DBOS.reset_system_database()
    warnings = dbos_records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "no system database URL" in warnings[0]
    assert list(tmp_path.iterdir()) == []
