"""Configuration: validation, the YAML file, URL resolution and defaults.

Every invalid configuration goes through the real entry point, ``DBOS(config=...)``
(or ``DBOS()`` reading the YAML file), and each test proves that nothing
touched a database: no SQLite file appeared in the working directory and the
PostgreSQL database the configuration names was never created.
"""

from __future__ import annotations

import json
import logging
import math
import os
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional

import psycopg2
import pytest

import dbos._config
from dbos import DBOS, DBOSConfig
from dbos._schema_check import config_schema
from dbos._config import (
    config_from_yaml,
    default_app_name,
    default_sqlite_url,
    load_config_file,
    resolve,
    resolve_urls,
    substitute,
)
from dbos.error import DBOSConfigError, DBOSInitializationError
from dbos._sysdb.url import DatabaseURL, mask_url

POSTGRES_SERVER = os.environ.get(
    "DBOS_TEST_POSTGRES_URL", "postgresql://postgres@localhost:5432/postgres"
)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def pg_database_exists(name: str) -> bool:
    conn = psycopg2.connect(POSTGRES_SERVER)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cur.fetchone() is not None
    finally:
        conn.close()


def sqlite_files(directory: Path) -> List[str]:
    """Every SQLite database file (and WAL or journal) under ``directory``."""
    return sorted(p.name for p in directory.rglob("*.sqlite*"))


def assert_no_database(workdir: Path, url: Optional[str] = None) -> None:
    assert sqlite_files(workdir) == []
    if url is not None and url.startswith("postgres"):
        assert not pg_database_exists(DatabaseURL.parse(url).database)


def config_error(path: str, problem: str) -> str:
    return f"DBOS Error 3: Invalid DBOS configuration at '{path or '(top level)'}': {problem}"


def write_yaml(directory: Path, text: str, filename: str = "dbos_config.yaml") -> Path:
    path = directory / filename
    path.write_text(text)
    return path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, where a default SQLite file would land."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    monkeypatch.setattr(dbos._config, "SECRETS_DIR", str(directory))
    return directory


@pytest.fixture
def warnings_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="dbos")
    return caplog


class HalfSerializer:
    def serialize(self, value: Any) -> str:
        return repr(value)

    def __repr__(self) -> str:
        return "HalfSerializer()"


class Unserializable:
    def __repr__(self) -> str:
        return "Unserializable()"


# --------------------------------------------------------------------------
# Invalid configurations, through DBOS(config=...)
# --------------------------------------------------------------------------

# (id, configuration, path of the offending field, the rule it breaks)
INVALID_CONFIGS: List[Any] = [
    ("missing-name", {}, "", "'name' is required"),
    ("name-too-short", {"name": "ab"}, "name",
     "must be at least 3 characters long, got 'ab'"),
    ("name-too-long", {"name": "a" * 31}, "name",
     f"must be at most 30 characters long, got '{'a' * 31}'"),
    ("name-upper-case", {"name": "My-App"}, "name",
     "must be made of lower-case letters, digits, '-' and '_' only, got 'My-App'"),
    ("name-bad-characters", {"name": "my app!"}, "name",
     "must be made of lower-case letters, digits, '-' and '_' only, got 'my app!'"),
    ("name-not-a-string", {"name": 123}, "name", "must be a string, got 123 (an integer)"),
    ("unknown-top-level-key", {"name": "app", "sys_db_pool_sise": 5}, "sys_db_pool_sise",
     "unknown key; did you mean 'sys_db_pool_size'?"),
    ("unknown-database-key", {"name": "app", "database": {"migrat": ["alembic upgrade head"]}},
     "database.migrat", "unknown key; did you mean 'database.migrate'?"),
    ("unknown-key-no-close-match", {"name": "app", "db_engine_kwargs": {"poolclass": "NullPool"}},
     "db_engine_kwargs.poolclass",
     "unknown key; valid keys here are connect_args, echo, max_overflow, pool_pre_ping, "
     "pool_recycle, pool_size, pool_timeout"),
    ("pool-size-zero", {"name": "app", "sys_db_pool_size": 0}, "sys_db_pool_size",
     "must be at least 1, got 0"),
    ("pool-size-string", {"name": "app", "sys_db_pool_size": "5"}, "sys_db_pool_size",
     "must be an integer, got '5' (a string)"),
    ("pool-size-bool", {"name": "app", "sys_db_pool_size": True}, "sys_db_pool_size",
     "must be an integer, got True (a boolean)"),
    ("engine-pool-size-zero", {"name": "app", "db_engine_kwargs": {"pool_size": 0}},
     "db_engine_kwargs.pool_size", "must be at least 1, got 0"),
    ("interval-too-small", {"name": "app", "notification_listener_polling_interval_sec": 0.0005},
     "notification_listener_polling_interval_sec", "must be at least 0.001, got 0.0005"),
    ("interval-infinite", {"name": "app", "notification_coalesce_sec": math.inf},
     "notification_coalesce_sec", "must be a finite number, got inf"),
    ("interval-nan", {"name": "app", "scheduler_polling_interval_sec": math.nan},
     "scheduler_polling_interval_sec", "must be a finite number, got nan"),
    ("interval-minus-infinity", {"name": "app", "kafka_queue_polling_interval_sec": -math.inf},
     "kafka_queue_polling_interval_sec", "must be at least 0.001, got -inf"),
    ("interval-string", {"name": "app", "notification_listener_polling_interval_sec": "1"},
     "notification_listener_polling_interval_sec", "must be a number, got '1' (a string)"),
    ("admin-port-too-high", {"name": "app", "admin_port": 70000}, "admin_port",
     "must be at most 65535, got 70000"),
    ("admin-port-zero", {"name": "app", "admin_port": 0}, "admin_port",
     "must be at least 1, got 0"),
    ("log-level-unknown", {"name": "app", "log_level": "LOUD"}, "log_level",
     "must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL', "
     "'debug', 'info', 'warning', 'error', 'critical', got 'LOUD'"),
    ("max-threads-float", {"name": "app", "max_executor_threads": 2.5}, "max_executor_threads",
     "must be an integer, got 2.5 (a number)"),
    ("run-migrations-not-bool", {"name": "app", "run_migrations": "yes"}, "run_migrations",
     "must be true or false, got 'yes' (a string)"),
    ("url-without-database", {"name": "app", "system_database_url": "postgresql://localhost:5432"},
     "system_database_url",
     "the database URL 'postgresql://localhost:5432' has no database name: add one, "
     "as in postgresql://postgres@localhost:5432/myapp"),
    ("url-unsupported-scheme",
     {"name": "app", "system_database_url": "mysql://root:hunter2@localhost/app"},
     "system_database_url",
     "must be a database URL starting with postgresql:// or sqlite:///, "
     "got 'mysql://root:***@localhost/app'"),
    ("url-in-memory-sqlite", {"name": "app", "system_database_url": "sqlite:///:memory:"},
     "system_database_url",
     "a SQLite URL must name a file, as in sqlite:///app.sqlite (relative) or "
     "sqlite:////var/lib/app.sqlite (absolute); an in-memory database cannot survive a crash"),
    ("url-bad-port",
     {"name": "app", "application_database_url": "postgresql://u:hunter2@localhost:99999/app"},
     "application_database_url",
     "the database URL 'postgresql://u:***@localhost:99999/app' has a bad port: "
     "Port out of range 0-65535"),
    ("url-not-a-string", {"name": "app", "database_url": 5}, "database_url",
     "must be a string or null, got 5 (an integer)"),
    ("migrate-item-not-string", {"name": "app", "database": {"migrate": ["echo ok", 3]}},
     "database.migrate[1]", "must be a string, got 3 (an integer)"),
    ("migrate-item-empty", {"name": "app", "database": {"migrate": [""]}},
     "database.migrate[0]", "must not be empty"),
    ("schema-bad-identifier", {"name": "app", "dbos_system_schema": "my-schema"},
     "dbos_system_schema",
     "must be a plain SQL identifier: a letter or '_', then letters, digits or '_', "
     "got 'my-schema'"),
    ("schema-starts-with-digit", {"name": "app", "dbos_system_schema": "1dbos"},
     "dbos_system_schema",
     "must be a plain SQL identifier: a letter or '_', then letters, digits or '_', "
     "got '1dbos'"),
    ("serializer-lacks-method", {"name": "app", "serializer": HalfSerializer()}, "serializer",
     "must have a callable deserialize() method, got HalfSerializer()"),
    ("engine-unsupported", {"name": "app", "system_database_engine": object()},
     "system_database_engine",
     "is not supported: the system database is reached through Peewee, not a SQLAlchemy "
     "engine; pass system_database_url instead"),
    ("executor-id-empty", {"name": "app", "executor_id": ""}, "executor_id",
     "must not be empty"),
    ("otlp-attribute-not-string", {"name": "app", "otlp_attributes": {"team": 7}},
     "otlp_attributes.team", "must be a string, got 7 (an integer)"),
    ("conductor-metadata-not-json",
     {"name": "app", "conductor_executor_metadata": {"x": Unserializable()}},
     "conductor_executor_metadata",
     "must be JSON-serializable: Object of type Unserializable is not JSON serializable"),
    ("yaml-section-log-level", {"name": "app", "telemetry": {"logs": {"logLevel": "LOUD"}}},
     "telemetry.logs.logLevel",
     "must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL', "
     "'debug', 'info', 'warning', 'error', 'critical', got 'LOUD'"),
    ("config-not-a-dict", ["name", "app"], "",
     "the configuration must be a dict, got ['name', 'app'] (a list)"),
    ("config-a-string", "app", "", "the configuration must be a dict, got 'app' (a string)"),
]


def _with_system_url(config: Any, url: str) -> Any:
    """The case's configuration, pointed at a database of the chosen backend."""
    if not isinstance(config, dict) or "system_database_url" in config:
        return config
    return {**config, "system_database_url": url}


@pytest.mark.parametrize(
    "config, path, problem", [case[1:] for case in INVALID_CONFIGS], ids=[c[0] for c in INVALID_CONFIGS]
)
def test_invalid_config_is_rejected_before_any_database(
    config: Any, path: str, problem: str, workdir: Path, sys_db_url: str
) -> None:
    config = _with_system_url(config, sys_db_url)
    with pytest.raises(DBOSConfigError) as info:
        DBOS(config=config)
    assert str(info.value) == config_error(path, problem)
    assert (info.value.path, info.value.problem) == (path, problem)
    assert isinstance(info.value, DBOSInitializationError)
    assert info.value.dbos_error_code == 3
    # A failed construction leaves no instance behind, so launch does nothing.
    assert DBOS.config is None
    DBOS.launch()
    assert_no_database(workdir, sys_db_url)


def test_there_are_many_distinct_invalid_cases() -> None:
    assert len({case[0] for case in INVALID_CONFIGS}) == len(INVALID_CONFIGS) >= 15
    assert len({(case[2], case[3]) for case in INVALID_CONFIGS}) >= 15


def test_invalid_config_never_creates_postgres_databases(workdir: Path, backend: str) -> None:
    if backend != "postgres":
        pytest.skip("checks the PostgreSQL server")
    app_url = DatabaseURL.parse(POSTGRES_SERVER).with_database(f"cfg_{os.getpid()}_app")
    with pytest.raises(DBOSConfigError, match="at 'admin_port': must be at least 1, got 0"):
        DBOS(config={"name": "app", "application_database_url": app_url.render(), "admin_port": 0})
    assert not pg_database_exists(app_url.database)
    assert not pg_database_exists(f"{app_url.database}_dbos_sys")
    assert_no_database(workdir)


def test_first_broken_rule_is_reported_deterministically() -> None:
    config = {"log_level": "LOUD", "admin_port": 0}
    with pytest.raises(DBOSConfigError) as info:
        DBOS(config=config)  # type: ignore[arg-type]
    # A missing required key comes first, then fields in path order.
    assert info.value.path == ""
    config["name"] = "app"
    with pytest.raises(DBOSConfigError) as info:
        DBOS(config=config)  # type: ignore[arg-type]
    assert info.value.path == "admin_port"


def test_url_password_never_appears_in_messages() -> None:
    url = "postgresql://admin:s3cr3t-pw@db.example:5432?sslmode=require"
    with pytest.raises(DBOSConfigError) as info:
        DBOS(config={"name": "app", "system_database_url": url})
    assert "s3cr3t-pw" not in str(info.value)
    assert "admin:***@db.example" in str(info.value)


# --------------------------------------------------------------------------
# Invalid YAML files, through DBOS() with no config
# --------------------------------------------------------------------------


def test_yaml_top_level_list_is_rejected(workdir: Path) -> None:
    path = write_yaml(workdir, "- name: app\n- language: python\n")
    with pytest.raises(DBOSConfigError) as info:
        DBOS()
    assert str(info.value) == config_error("", f"the file {path} must hold a mapping of keys to values")
    assert_no_database(workdir)


def test_empty_yaml_file_is_rejected(workdir: Path) -> None:
    path = write_yaml(workdir, "# nothing here\n")
    with pytest.raises(DBOSConfigError) as info:
        DBOS()
    assert str(info.value) == config_error("", f"the file {path} must hold a mapping of keys to values")
    assert_no_database(workdir)


def test_yaml_syntax_error_is_rejected(workdir: Path) -> None:
    path = write_yaml(workdir, "name: app\ndatabase: [unclosed\n")
    with pytest.raises(DBOSInitializationError) as info:
        DBOS()
    assert str(info.value).startswith(
        f"DBOS Error 3: Configuration file {path} is not valid YAML: "
    )
    assert "line 3" in str(info.value)
    assert_no_database(workdir)


def test_yaml_unknown_section_names_closest(workdir: Path) -> None:
    write_yaml(workdir, "name: app\nruntimeconfig:\n  start: [python main.py]\n")
    with pytest.raises(DBOSConfigError) as info:
        DBOS()
    assert str(info.value) == config_error(
        "runtimeconfig", "unknown key; did you mean 'runtimeConfig'?"
    )
    assert_no_database(workdir)


def test_yaml_bad_migrate_item_names_its_index(workdir: Path) -> None:
    write_yaml(workdir, "name: app\ndatabase:\n  migrate:\n    - alembic upgrade head\n    - 42\n")
    with pytest.raises(DBOSConfigError) as info:
        DBOS()
    assert str(info.value) == config_error("database.migrate[1]", "must be a string, got 42 (an integer)")
    assert_no_database(workdir)


def test_yaml_postgres_url_with_error_creates_nothing(workdir: Path, sys_db_url: str) -> None:
    write_yaml(workdir, f"name: app\nsystem_database_url: {sys_db_url}\nsys_db_pool_size: -1\n")
    with pytest.raises(DBOSConfigError) as info:
        DBOS()
    assert str(info.value) == config_error("sys_db_pool_size", "must be at least 1, got -1")
    assert_no_database(workdir, sys_db_url)


def test_no_config_and_no_file_runs_on_sqlite_named_after_directory(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_dir = workdir / "My Shop.v2"
    app_dir.mkdir()
    monkeypatch.chdir(app_dir)
    DBOS()
    assert DBOS.config == {"name": "my-shop-v2"}
    assert resolve_urls(DBOSConfig(name="my-shop-v2"))[0].database == "my_shop_v2.sqlite"
    assert_no_database(app_dir)


def test_default_app_name_always_fits_the_rule() -> None:
    assert default_app_name("/srv/x") == "dbos-app"
    assert default_app_name("/srv/" + "A" * 50) == "a" * 30
    assert default_app_name("/srv/--ok__name--") == "ok__name"


def test_unreadable_explicit_config_file(workdir: Path) -> None:
    missing = workdir / "absent.yaml"
    with pytest.raises(DBOSInitializationError, match="Cannot read configuration file .*absent.yaml"):
        load_config_file(str(missing))


@pytest.mark.parametrize(
    "yaml_text, config",
    [
        ("name: app\nsys_db_pool_size: 0\n", {"name": "app", "sys_db_pool_size": 0}),
        ("name: App\n", {"name": "App"}),
        ("name: app\nlog_levle: INFO\n", {"name": "app", "log_levle": "INFO"}),
        ("name: app\ndatabase:\n  migrate: [1]\n", {"name": "app", "database": {"migrate": [1]}}),
    ],
)
def test_yaml_and_dict_get_the_same_message(
    yaml_text: str, config: Dict[str, Any], workdir: Path
) -> None:
    write_yaml(workdir, yaml_text)
    with pytest.raises(DBOSConfigError) as from_yaml:
        DBOS()
    with pytest.raises(DBOSConfigError) as from_dict:
        DBOS(config=config)  # type: ignore[arg-type]
    assert str(from_yaml.value) == str(from_dict.value)


# --------------------------------------------------------------------------
# Valid configurations
# --------------------------------------------------------------------------


class FullSerializer(HalfSerializer):
    def deserialize(self, text: str) -> Any:
        return text


def test_every_key_accepts_a_valid_value(workdir: Path, warnings_log: pytest.LogCaptureFixture) -> None:
    config: DBOSConfig = {
        "name": "full-app_1",
        "system_database_url": "sqlite:///sys.sqlite",
        "application_database_url": "postgresql://u:p@localhost:5432/app",
        "database_url": None,
        "sys_db_pool_size": 5,
        "sys_db_polling_concurrency": 0,
        "db_engine_kwargs": {"pool_size": 3, "pool_timeout": 5, "connect_args": {"sslmode": "disable"},
                             "max_overflow": 0, "pool_pre_ping": True, "pool_recycle": 60.0, "echo": False},
        "dbos_system_schema": "_dbos_2",
        "use_listen_notify": False,
        "run_migrations": False,
        "notification_listener_polling_interval_sec": 0.001,
        "notification_coalesce_sec": 0.5,
        "scheduler_polling_interval_sec": 2,
        "kafka_queue_polling_interval_sec": 1.0,
        "max_executor_threads": 4,
        "application_version": "v1",
        "executor_id": "exec-1",
        "executor_timeout_sec": 30,
        "takeover_enabled": False,
        "new_work_outage_limit_sec": 5,
        "handle_sigterm": False,
        "shutdown_timeout_sec": 0,
        "enable_patching": True,
        "serializer": FullSerializer(),
        "application_datasource": None,
        "enable_otlp": False,
        "otlp_traces_endpoints": ["http://localhost:4318/v1/traces"],
        "otlp_logs_endpoints": [],
        "otlp_attributes": {"team": "core"},
        "otel_attribute_format": "semconv",
        "log_level": "warning",
        "otlp_log_level": "ERROR",
        "console_log_level": "DEBUG",
        "run_admin_server": False,
        "admin_port": 65535,
        "admin_host": "0.0.0.0",
        "admin_token": "a-token-of-sixteen-or-more",
        "admin_dashboard": True,
        "conductor_key": None,
        "conductor_url": None,
        "conductor_executor_metadata": {"region": "eu", "slots": [1, 2]},
    }
    assert set(config) == set(DBOSConfig.__annotations__)
    DBOS(config=config)
    assert DBOS.config == config
    assert warnings_log.records == []
    assert_no_database(workdir)


@pytest.mark.parametrize("name", ["abc", "a" * 30, "my-app_2", "1st"])
def test_name_limits_are_inclusive(name: str, workdir: Path) -> None:
    DBOS(config={"name": name})
    assert DBOS.config == {"name": name}


def test_ignored_keys_warn(warnings_log: pytest.LogCaptureFixture) -> None:
    resolve({"name": "app", "enable_otlp": True, "conductor_key": "k"})
    messages = [r.getMessage() for r in warnings_log.records]
    assert messages == [
        "Configuration key conductor_key is ignored: DBOS Conductor is a hosted service "
        "this library does not connect to",
    ]


def test_enable_patching_is_read_not_ignored(warnings_log: pytest.LogCaptureFixture) -> None:
    assert resolve({"name": "app", "enable_patching": True}).enable_patching is True
    assert resolve({"name": "app"}).enable_patching is False
    assert warnings_log.records == []


# --------------------------------------------------------------------------
# The YAML file
# --------------------------------------------------------------------------


def test_dbos_reads_dbos_config_yaml(workdir: Path) -> None:
    write_yaml(workdir, "name: from-yaml\nlanguage: python\nsys_db_pool_size: 4\n")
    DBOS()
    assert DBOS.config == {"name": "from-yaml", "sys_db_pool_size": 4}


def test_dbos_falls_back_to_transact_file_name(workdir: Path) -> None:
    write_yaml(workdir, "name: transact-style\n", filename="dbos-config.yaml")
    DBOS()
    assert DBOS.config == {"name": "transact-style"}


def test_dbos_config_yaml_wins_over_transact_file(workdir: Path) -> None:
    write_yaml(workdir, "name: ours\n")
    write_yaml(workdir, "name: theirs\n", filename="dbos-config.yaml")
    DBOS()
    assert DBOS.config == {"name": "ours"}


def test_yaml_without_url_launches_on_sqlite_named_after_app(workdir: Path) -> None:
    write_yaml(workdir, "name: 2nd-app\n")
    DBOS()
    assert sqlite_files(workdir) == []
    DBOS.launch()
    assert "_2nd_app.sqlite" in sqlite_files(workdir)


def test_environment_variables_are_substituted(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, warnings_log: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("APP_NAME", "env-app")
    monkeypatch.setenv("DB_PASSWORD", "hunter2")
    write_yaml(workdir, (
        "name: ${APP_NAME}\n"
        "system_database_url: postgresql://postgres:${DB_PASSWORD}@localhost:5432/x\n"
    ))
    DBOS()
    assert DBOS.config == {
        "name": "env-app",
        "system_database_url": "postgresql://postgres:hunter2@localhost:5432/x",
    }
    assert warnings_log.records == []


@pytest.mark.parametrize("field, line", [
    ("system_database_url", "system_database_url: sqlite:///${DBOS_H4_MISSING}/x.sqlite"),
    ("application_version", "application_version: ${DBOS_H4_MISSING}"),
    ("runtimeConfig.start[1]", "runtimeConfig:\n  start: [a, 'b ${DBOS_H4_MISSING}']"),
])
def test_unset_environment_variable_is_an_error_naming_it_and_the_field(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, field: str, line: str
) -> None:
    monkeypatch.delenv("DBOS_H4_MISSING", raising=False)
    write_yaml(workdir, f"name: app\n{line}\n")
    with pytest.raises(DBOSConfigError) as caught:
        DBOS()
    assert caught.value.path == field
    assert "environment variable DBOS_H4_MISSING is not set" in str(caught.value)
    assert sqlite_files(workdir) == []


def test_unset_variable_is_an_error_for_the_cli_too(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBOS_H4_MISSING", raising=False)
    write_yaml(workdir, "name: app\napplication_version: ${DBOS_H4_MISSING}\n")
    with pytest.raises(DBOSConfigError, match="DBOS_H4_MISSING"):
        load_config_file(silent=True)


def test_default_is_used_when_variable_is_unset_or_empty(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DBOS_H4_MISSING", raising=False)
    monkeypatch.setenv("DBOS_H4_EMPTY", "")
    monkeypatch.setenv("DBOS_H4_SET", "v7")
    write_yaml(workdir, (
        "name: app\n"
        "application_version: ${DBOS_H4_MISSING:-v1}-${DBOS_H4_EMPTY:-v2}-${DBOS_H4_SET:-v3}\n"
        "executor_id: x${DBOS_H4_MISSING:-}\n"
        "runtimeConfig:\n  admin_port: ${DBOS_H4_MISSING:-3005}\n"
    ))
    data = load_config_file()
    assert data["application_version"] == "v1-v2-v7"
    assert data["executor_id"] == "x"
    assert data["runtimeConfig"]["admin_port"] == 3005


def test_docker_secrets_are_read(
    workdir: Path, secrets_dir: Path, warnings_log: pytest.LogCaptureFixture
) -> None:
    (secrets_dir / "db_password").write_text("from-secret\n")
    write_yaml(workdir, (
        "name: app\n"
        "system_database_url: postgresql://u:${DOCKER_SECRET:db_password}@h/db\n"
        "executor_id: x${DOCKER_SECRET:absent}\n"
    ))
    data = load_config_file()
    assert data["system_database_url"] == "postgresql://u:from-secret@h/db"
    assert data["executor_id"] == "x"
    assert [r.getMessage() for r in warnings_log.records] == [
        f"Docker secret absent not found at {secrets_dir / 'absent'}"
    ]


def test_substituted_values_are_not_substituted_again(
    secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (secrets_dir / "token").write_text("${HOME}")
    monkeypatch.setenv("LITERAL", "${DOCKER_SECRET:token}")
    assert substitute("${DOCKER_SECRET:token}|${LITERAL}") == "${HOME}|${DOCKER_SECRET:token}"


def test_placeholders_in_comments_are_left_alone(
    workdir: Path, secrets_dir: Path, warnings_log: pytest.LogCaptureFixture
) -> None:
    write_yaml(workdir, (
        "# system_database_url: ${DBOS_NOT_SET_ANYWHERE}\n"
        "name: app  # password: ${DOCKER_SECRET:not_there}\n"
    ))
    assert load_config_file() == {"name": "app"}
    assert warnings_log.records == []


def test_silent_loading_does_not_warn(workdir: Path, warnings_log: pytest.LogCaptureFixture) -> None:
    write_yaml(workdir, "name: app\napplication_version: v${DOCKER_SECRET:not_there_either}\n")
    assert load_config_file(silent=True) == {"name": "app", "application_version": "v"}
    assert warnings_log.records == []


def test_environment_value_cannot_change_yaml_structure(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SNEAKY", "v1\nsystem_database_url: sqlite:///other.sqlite")
    write_yaml(workdir, "name: app\napplication_version: ${SNEAKY}\n")
    assert load_config_file() == {
        "name": "app",
        "application_version": "v1\nsystem_database_url: sqlite:///other.sqlite",
    }


def test_plain_placeholder_takes_the_type_of_its_value(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORT", "4000")
    monkeypatch.setenv("ADMIN", "true")
    monkeypatch.setenv("VERSION", "2")
    write_yaml(workdir, (
        "name: app\n"
        "admin_port: ${PORT}\n"
        "run_admin_server: ${ADMIN}\n"
        "application_version: \"${VERSION}\"\n"
        "executor_id: worker-${PORT}\n"
    ))
    assert load_config_file() == {
        "name": "app",
        "admin_port": 4000,
        "run_admin_server": True,
        "application_version": "2",
        "executor_id": "worker-4000",
    }


def test_yaml_sections_are_translated(workdir: Path) -> None:
    write_yaml(workdir, (
        "name: app\n"
        "language: python\n"
        "system_database_url: sqlite:///sys.sqlite\n"
        "database:\n"
        "  sys_db_pool_size: 7\n"
        "  migrate:\n"
        "    - alembic upgrade head\n"
        "    - python seed.py\n"
        "runtimeConfig:\n"
        "  start: [python main.py]\n"
        "  admin_port: 3555\n"
        "  run_admin_server: false\n"
        "telemetry:\n"
        "  logs:\n"
        "    logLevel: DEBUG\n"
        "    consoleLogLevel: warning\n"
        "env:\n"
        "  ANYTHING: goes\n"
    ))
    data = load_config_file()
    config = config_from_yaml(data)
    assert config == {
        "name": "app",
        "system_database_url": "sqlite:///sys.sqlite",
        "sys_db_pool_size": 7,
        "admin_port": 3555,
        "run_admin_server": False,
        "log_level": "DEBUG",
        "console_log_level": "warning",
    }
    settings = resolve(config, data)
    assert settings.migrate_commands == ["alembic upgrade head", "python seed.py"]
    assert (settings.log_level, settings.console_log_level) == ("DEBUG", "WARNING")
    assert (settings.sys_db_pool_size, settings.admin_port) == (7, 3555)


def test_flat_keys_win_over_yaml_sections() -> None:
    data = {
        "name": "app",
        "log_level": "ERROR",
        "admin_port": 4001,
        "sys_db_pool_size": 3,
        "database": {"sys_db_pool_size": 9},
        "runtimeConfig": {"admin_port": 5001},
        "telemetry": {"logs": {"logLevel": "DEBUG"}},
    }
    config = config_from_yaml(data)
    assert (config["log_level"], config["admin_port"], config["sys_db_pool_size"]) == ("ERROR", 4001, 3)


def test_dbos_applies_yaml_log_level(workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dbos")  # restored after the test
    write_yaml(workdir, "name: app\ntelemetry:\n  logs:\n    logLevel: ERROR\n")
    DBOS()
    assert DBOS.config is not None and DBOS.config.get("log_level") == "ERROR"
    assert logging.getLogger("dbos").level == logging.ERROR


def test_migrate_commands_from_a_dict_config() -> None:
    settings = resolve({"name": "app", "database": {"migrate": ["make migrate"]}})  # type: ignore[typeddict-unknown-key]
    assert settings.migrate_commands == ["make migrate"]
    assert resolve({"name": "app"}).migrate_commands == []


# --------------------------------------------------------------------------
# Database URL resolution (spec 2.4)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("app", "sqlite:///app.sqlite"),
        ("my-app", "sqlite:///my_app.sqlite"),
        ("My App", "sqlite:///my_app.sqlite"),
        ("9-lives", "sqlite:///_9_lives.sqlite"),
        ("under_score", "sqlite:///under_score.sqlite"),
    ],
)
def test_default_sqlite_url(name: str, expected: str) -> None:
    assert default_sqlite_url(name) == expected


def test_no_url_means_sqlite_file_in_working_directory(workdir: Path) -> None:
    system, app = resolve_urls({"name": "shop-api"})
    assert app is None
    assert system.is_sqlite
    assert system.render() == "sqlite:///shop_api.sqlite"
    assert system.sqlite_path == str(workdir / "shop_api.sqlite")


def test_app_url_on_sqlite_is_also_the_system_url() -> None:
    system, app = resolve_urls({"name": "app", "application_database_url": "sqlite:///data/app.db"})
    assert app is not None and system == app
    assert system.render() == "sqlite:///data/app.db"


def test_app_url_on_postgres_gets_a_sibling_system_database() -> None:
    url = "postgresql://alice:pw@db.internal:6543/orders?sslmode=require"
    system, app = resolve_urls({"name": "app", "application_database_url": url})
    assert app is not None and app.render() == url
    assert system.render() == "postgresql://alice:pw@db.internal:6543/orders_dbos_sys?sslmode=require"
    assert (system.host, system.port, system.user, system.password) == ("db.internal", 6543, "alice", "pw")


def test_system_url_only_means_no_app_database() -> None:
    system, app = resolve_urls({"name": "app", "system_database_url": "postgres://u@h/sysdb"})
    assert app is None
    assert (system.backend, system.database) == ("postgresql", "sysdb")


def test_both_urls_are_kept_as_given() -> None:
    system, app = resolve_urls({
        "name": "app",
        "system_database_url": "sqlite:///sys.sqlite",
        "application_database_url": "postgresql://u@h/app",
    })
    assert system.render() == "sqlite:///sys.sqlite"
    assert app is not None and app.render() == "postgresql://u@h/app"


def test_database_url_alias_wins_over_application_database_url() -> None:
    system, app = resolve_urls({
        "name": "app",
        "database_url": "postgresql://u@h/legacy",
        "application_database_url": "postgresql://u@h/modern",
    })
    assert app is not None and app.database == "legacy"
    assert system.database == "legacy_dbos_sys"


def test_null_urls_count_as_absent() -> None:
    settings = resolve({"name": "app", "system_database_url": None, "database_url": None})
    assert settings.system_database_url.render() == "sqlite:///app.sqlite"
    assert settings.application_database_url is None


@pytest.mark.parametrize(
    "url, backend, database",
    [
        ("postgresql+psycopg://u@h/db", "postgresql", "db"),
        ("postgres://u@h:5432/db", "postgresql", "db"),
        ("sqlite:////var/lib/app.sqlite", "sqlite", "/var/lib/app.sqlite"),
        ("sqlite:///rel/app.sqlite?timeout=5", "sqlite", "rel/app.sqlite"),
    ],
)
def test_url_schemes(url: str, backend: str, database: str) -> None:
    parsed = DatabaseURL.parse(url)
    assert (parsed.backend, parsed.database) == (backend, database)
    resolve({"name": "app", "system_database_url": url})


def test_url_str_masks_password_but_render_keeps_it() -> None:
    url = DatabaseURL.parse("postgresql://bob:p%40ss%2Fword@localhost:5432/app?password=other")
    assert url.password == "p@ss/word"
    assert str(url) == "postgresql://bob:***@localhost:5432/app?password=***"
    assert url.render() == "postgresql://bob:p%40ss%2Fword@localhost:5432/app?password=other"
    assert DatabaseURL.parse(url.render()) == url


@pytest.mark.parametrize(
    "url, masked",
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db?password=secret&sslmode=require",
         "postgresql://u@h/db?password=***&sslmode=require"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:///app.sqlite", "sqlite:///app.sqlite"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_connect_kwargs_come_from_the_url() -> None:
    url = DatabaseURL.parse("postgresql://u:pw@h:6000/db?sslmode=require&connect_timeout=3")
    assert url.connect_kwargs() == {
        "application_name": "dbos_transact",
        "connect_timeout": "3",
        "host": "h",
        "port": 6000,
        "user": "u",
        "password": "pw",
        "sslmode": "require",
    }


# --------------------------------------------------------------------------
# Defaults
# --------------------------------------------------------------------------


def test_resolve_fills_every_default() -> None:
    settings = resolve({"name": "app"})
    assert settings.name == "app"
    assert settings.system_database_url.render() == "sqlite:///app.sqlite"
    assert settings.application_database_url is None
    assert settings.system_schema == "dbos"
    assert settings.sys_db_pool_size == 20
    assert settings.pool_timeout == 30.0
    assert settings.connect_args == {}
    assert settings.run_migrations is True
    assert settings.use_listen_notify is True
    assert settings.notification_listener_polling_interval_sec == 1.0
    assert settings.notification_coalesce_sec == 0.01
    assert settings.scheduler_polling_interval_sec == 30.0
    assert settings.max_executor_threads is None
    assert settings.application_version is None
    assert settings.executor_id is None
    assert (settings.log_level, settings.console_log_level) == ("INFO", "INFO")
    assert settings.run_admin_server is False
    assert (settings.admin_host, settings.admin_port) == ("127.0.0.1", 3001)
    assert settings.migrate_commands == []
    assert settings.serializer is None


def test_resolve_keeps_given_values() -> None:
    serializer = FullSerializer()
    settings = resolve({
        "name": "app",
        "dbos_system_schema": "custom",
        "run_migrations": False,
        "use_listen_notify": False,
        "notification_listener_polling_interval_sec": 0.25,
        "notification_coalesce_sec": 1,
        "scheduler_polling_interval_sec": 5,
        "max_executor_threads": 8,
        "application_version": "v7",
        "executor_id": "node-1",
        "log_level": "debug",
        "run_admin_server": True,
        "admin_host": "0.0.0.0",
        "admin_port": 8080,
        "serializer": serializer,
    })
    assert settings.system_schema == "custom"
    assert (settings.run_migrations, settings.use_listen_notify) == (False, False)
    assert settings.notification_listener_polling_interval_sec == 0.25
    assert settings.notification_coalesce_sec == 1.0
    assert isinstance(settings.notification_coalesce_sec, float)
    assert settings.scheduler_polling_interval_sec == 5.0
    assert (settings.max_executor_threads, settings.application_version, settings.executor_id) == (
        8, "v7", "node-1")
    assert (settings.log_level, settings.console_log_level) == ("DEBUG", "DEBUG")
    assert (settings.run_admin_server, settings.admin_host, settings.admin_port) == (True, "0.0.0.0", 8080)
    assert settings.serializer is serializer


def test_engine_kwargs_feed_the_pool() -> None:
    engine = {"pool_size": 4, "pool_timeout": 2, "connect_args": {"sslmode": "disable"}}
    settings = resolve({"name": "app", "db_engine_kwargs": engine})
    assert (settings.sys_db_pool_size, settings.pool_timeout) == (4, 2.0)
    assert settings.connect_args == {"sslmode": "disable"}
    assert resolve({"name": "app", "sys_db_pool_size": 6, "db_engine_kwargs": engine}).sys_db_pool_size == 6


def test_resolve_validates_too() -> None:
    with pytest.raises(DBOSConfigError, match=r"at 'name': must be a string, got None \(null\)"):
        resolve({"name": None})  # type: ignore[typeddict-item]


# --------------------------------------------------------------------------
# The schema
# --------------------------------------------------------------------------


def test_schema_is_shipped_in_the_package() -> None:
    shipped = json.loads(resources.files("dbos").joinpath("config.schema.json").read_text())
    assert config_schema() == shipped
    assert shipped["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert shipped["additionalProperties"] is False
    assert shipped["required"] == ["name"]


def test_every_dbos_config_key_is_in_the_schema() -> None:
    properties = config_schema()["properties"]
    missing = sorted(set(DBOSConfig.__annotations__) - set(properties))
    assert missing == []
    yaml_sections = set(properties) - set(DBOSConfig.__annotations__)
    assert yaml_sections == {"language", "database", "runtimeConfig", "telemetry", "env"}


def test_schema_copy_cannot_weaken_validation() -> None:
    schema = config_schema()
    schema["properties"]["name"]["minLength"] = 0
    del schema["required"]
    with pytest.raises(DBOSConfigError, match="'name' is required"):
        resolve({})  # type: ignore[typeddict-item]
    assert config_schema()["properties"]["name"]["minLength"] == 3
