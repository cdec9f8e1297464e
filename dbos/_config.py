"""Configuration: the ``DBOSConfig`` dict, ``dbos_config.yaml``, validation, defaults.

One JSON Schema (``config.schema.json``, shipped in the package) validates
both sources. A failure raises ``DBOSConfigError`` naming the field's path and
the rule it breaks, before anything touches a database.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, TypedDict

import yaml

from ._schema_check import config_schema_read, conforms, jsonschema_validator
from ._sysdb.url import DatabaseURL, URLError, mask_url
from ._telemetry import telemetry_from_yaml, telemetry_settings
from .error import DBOSConfigError, DBOSInitializationError

if TYPE_CHECKING:  # imported where a configuration is validated: a command given a URL never needs it
    from jsonschema import ValidationError

logger = logging.getLogger("dbos")

CONFIG_FILENAMES = ("dbos_config.yaml", "dbos-config.yaml")
SECRETS_DIR = "/run/secrets"
ADMIN_TOKEN_VARIABLE = "DBOS_ADMIN_TOKEN"  # the admin token, kept out of files under version control


class DBOSConfig(TypedDict, total=False):
    """Configuration passed to ``DBOS(config=...)``; only ``name`` is required."""

    name: str
    system_database_url: Optional[str]
    application_database_url: Optional[str]
    database_url: Optional[str]
    sys_db_pool_size: Optional[int]
    sys_db_polling_concurrency: Optional[int]
    db_engine_kwargs: Optional[Dict[str, Any]]
    dbos_system_schema: Optional[str]
    use_listen_notify: Optional[bool]
    run_migrations: Optional[bool]
    notification_listener_polling_interval_sec: Optional[float]
    notification_coalesce_sec: Optional[float]
    scheduler_polling_interval_sec: Optional[float]
    kafka_queue_polling_interval_sec: Optional[float]
    max_executor_threads: Optional[int]
    application_version: Optional[str]
    executor_id: Optional[str]
    executor_timeout_sec: Optional[float]
    takeover_enabled: Optional[bool]
    new_work_outage_limit_sec: Optional[float]
    handle_sigterm: Optional[bool]
    shutdown_timeout_sec: Optional[float]
    enable_patching: Optional[bool]
    serializer: Optional[Any]
    application_datasource: Optional[Any]
    enable_otlp: Optional[bool]
    otlp_traces_endpoints: Optional[List[str]]
    otlp_logs_endpoints: Optional[List[str]]
    otlp_attributes: Optional[Dict[str, str]]
    otel_attribute_format: Optional[str]
    log_level: Optional[str]
    otlp_log_level: Optional[str]
    console_log_level: Optional[str]
    run_admin_server: Optional[bool]
    admin_port: Optional[int]
    admin_host: Optional[str]
    admin_token: Optional[str]
    admin_dashboard: Optional[bool]
    conductor_key: Optional[str]
    conductor_url: Optional[str]
    conductor_executor_metadata: Optional[Dict[str, Any]]


# Keys of DBOS Transact's DBOSConfig that cannot work here, and why.
UNSUPPORTED_KEYS = {
    "system_database_engine": (
        "is not supported: the system database is reached through Peewee, "
        "not a SQLAlchemy engine; pass system_database_url instead"
    ),
}

# Keys accepted for compatibility whose feature this library does not provide.
IGNORED_KEYS = {
    "conductor_key": "DBOS Conductor is a hosted service this library does not connect to",
    "conductor_url": "DBOS Conductor is a hosted service this library does not connect to",
}


# --------------------------------------------------------------------------
# Loading the YAML file
# --------------------------------------------------------------------------


def find_config_file(directory: Optional[str] = None) -> Optional[Path]:
    base = Path(directory or os.getcwd())
    for filename in CONFIG_FILENAMES:
        candidate = base / filename
        if candidate.is_file():
            return candidate
    return None


_PLACEHOLDER = re.compile(r"\$\{(?:DOCKER_SECRET:([^}]+)|([^}:]+)(?::-([^}]*))?)\}")


def substitute(text: str, *, silent: bool = False, field: str = "") -> str:
    """Replace ``${DOCKER_SECRET:NAME}``, ``${VAR}`` and ``${VAR:-default}`` placeholders.

    An unset ``${VAR}`` raises ``DBOSConfigError`` naming the variable and
    ``field``: an empty string in its place could, say, turn a database path
    into one at the filesystem root. ``${VAR:-default}`` takes ``default``
    when ``VAR`` is unset or empty, as a shell does. One pass: a value read
    from a secret or the environment is not scanned again, so a ``${...}``
    inside it stays as it is.
    """

    def replace(match: "re.Match[str]") -> str:
        if match.group(1) is not None:
            return _read_secret(match.group(1), silent)
        name, default = match.group(2), match.group(3)
        value = os.environ.get(name)
        if default is not None and not value:
            return default
        if value is None:
            raise DBOSConfigError(field, (
                f"environment variable {name} is not set; set it, or give a default "
                f"with ${{{name}:-default}}"
            ))
        return value

    return _PLACEHOLDER.sub(replace, text)


def _read_secret(name: str, silent: bool) -> str:
    path = Path(SECRETS_DIR) / name
    try:
        return path.read_text().strip()
    except OSError:
        _warn(silent, f"Docker secret {name} not found at {path}")
        return ""


class _Placeholder(str):
    """A plain (unquoted) YAML scalar that is exactly one placeholder."""


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that marks plain scalars such as ``${PORT}``."""


_Loader.add_implicit_resolver("!dbos-placeholder", re.compile(r"^\$\{[^}]+\}$"), ["$"])
_Loader.add_constructor(
    "!dbos-placeholder",
    lambda loader, node: _Placeholder(loader.construct_scalar(node)),  # type: ignore[arg-type]
)


def substitute_values(value: Any, *, silent: bool = False, field: str = "") -> Any:
    """Substitute placeholders in every string of parsed YAML.

    Working on parsed values rather than the raw text leaves comments alone
    and keeps a value from the environment from changing the YAML structure.
    An unquoted scalar that is one placeholder (``admin_port: ${PORT}``)
    takes the type its value would have had in the file: a number or a
    boolean; quote it (``"${VERSION}"``) to keep a string. ``field`` is the
    path of ``value`` in the file, for errors.
    """
    if isinstance(value, _Placeholder):
        return _typed_scalar(substitute(value, silent=silent, field=field))
    if isinstance(value, str):
        return substitute(value, silent=silent, field=field)
    if isinstance(value, dict):
        return {k: substitute_values(v, silent=silent, field=_path([field, k] if field else [k]))
                for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_values(v, silent=silent, field=f"{field}[{i}]") for i, v in enumerate(value)]
    return value


def _typed_scalar(text: str) -> Any:
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return parsed if isinstance(parsed, (bool, int, float)) else text


def _warn(silent: bool, message: str) -> None:
    if not silent:
        logger.warning(message)


def load_config_file(path: Optional[str] = None, *, silent: bool = False) -> Dict[str, Any]:
    """Read, substitute and validate a YAML configuration file."""
    found = Path(path) if path else find_config_file()
    if found is None:
        raise DBOSInitializationError(
            "No configuration given: pass DBOS(config={'name': ...}) or create "
            f"{CONFIG_FILENAMES[0]} in {os.getcwd()}"
        )
    try:
        text = found.read_text()
    except OSError as exc:
        raise DBOSInitializationError(f"Cannot read configuration file {found}: {exc}")
    try:
        data = substitute_values(yaml.load(text, Loader=_Loader), silent=silent)
    except yaml.YAMLError as exc:
        raise DBOSInitializationError(f"Configuration file {found} is not valid YAML: {exc}")
    if not isinstance(data, dict):
        raise DBOSConfigError("", f"the file {found} must hold a mapping of keys to values")
    validate_config(data)
    return data


def config_from_yaml(data: Dict[str, Any]) -> DBOSConfig:
    """Translate the YAML file's sections into a flat ``DBOSConfig``."""
    flat = {k: v for k, v in data.items() if k not in _YAML_SECTIONS}
    runtime = data.get("runtimeConfig", {})
    for key in ("admin_port", "run_admin_server", "admin_dashboard"):
        if key in runtime:
            flat.setdefault(key, runtime[key])
    pool = data.get("database", {}).get("sys_db_pool_size")
    if pool is not None:
        flat.setdefault("sys_db_pool_size", pool)
    telemetry_from_yaml(data.get("telemetry", {}), flat)
    return DBOSConfig(**flat)  # type: ignore[typeddict-item]


_YAML_SECTIONS = ("language", "database", "runtimeConfig", "telemetry", "env")


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def validate_config(config: Any) -> None:
    """Raise ``DBOSConfigError`` for the first rule the configuration breaks."""
    if not isinstance(config, dict):
        raise DBOSConfigError("", f"the configuration must be a dict, got {_kind(config)}")
    for key, reason in UNSUPPORTED_KEYS.items():
        if key in config:
            raise DBOSConfigError(key, reason)
    # jsonschema is asked only about a configuration the quick check does not
    # pass (its import is most of a launch); its verdict and messages rule.
    if not conforms(config, config_schema_read(), config_schema_read()):
        errors = sorted(jsonschema_validator().iter_errors(config), key=_error_order)
        if errors:
            raise DBOSConfigError(*_explain(errors[0]))
    _check_numbers(config, "")
    _check_urls(config)
    _check_serializer(config.get("serializer"))
    _check_datasource(config)
    _check_json(config, "conductor_executor_metadata")


def _error_order(error: ValidationError) -> Any:
    return (error.validator != "required", [str(p) for p in error.absolute_path])


def _path(parts: Sequence[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _show(value: Any) -> str:
    """``repr`` of a value for a message, with any URL password hidden."""
    if isinstance(value, str) and "://" in value:
        return repr(mask_url(value))
    return repr(value)


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a mapping", type(None): "null"}
    return f"{_show(value)} ({names.get(type(value), type(value).__name__)})"


def _explain(error: ValidationError) -> Tuple[str, str]:
    """The path of the offending field and the rule it breaks."""
    kind = str(error.validator)
    if kind in ("anyOf", "oneOf") and error.context:
        return _explain_branches(error, list(error.context))
    if kind == "additionalProperties":
        return _unknown_key(error)
    return _path(error.absolute_path), _describe(error)


def _explain_branches(error: ValidationError, branches: List[ValidationError]) -> Tuple[str, str]:
    # A value of none of the allowed types: name them all. Otherwise the
    # branch that got furthest explains the mistake.
    if all(branch.validator == "type" for branch in branches):
        types = [t for branch in branches for t in _types(branch.validator_value)]
        return _path(error.absolute_path), _wrong_type(types, error.instance)
    return _explain(_most_specific(branches))


def _types(rule: Any) -> List[str]:
    return [rule] if isinstance(rule, str) else list(rule)


def _wrong_type(types: List[str], value: Any) -> str:
    ordered = sorted(dict.fromkeys(types), key=lambda t: t == "null")
    wanted = " or ".join(_TYPE_NAMES.get(t, t) for t in ordered)
    return f"must be {wanted}, got {_kind(value)}"


def _describe(error: ValidationError) -> str:
    kind = str(error.validator)
    if kind == "required":
        return str(error.message).replace(" is a required property", " is required")
    if kind == "type":
        return _wrong_type(_types(error.validator_value), error.instance)
    return _describe_bound(error) or str(error.message)


def _describe_bound(error: ValidationError) -> Optional[str]:
    kind, rule, shown = str(error.validator), _any(error.validator_value), _show(error.instance)
    schema: Dict[str, Any] = _any(error.schema)
    messages = {
        "minimum": lambda: f"must be at least {rule}, got {shown}",
        "maximum": lambda: f"must be at most {rule}, got {shown}",
        "exclusiveMinimum": lambda: f"must be greater than {rule}, got {shown}",
        "minLength": lambda: (
            "must not be empty" if rule == 1 else f"must be at least {rule} characters long, got {shown}"
        ),
        "maxLength": lambda: f"must be at most {rule} characters long, got {shown}",
        "enum": lambda: f"must be one of {', '.join(map(repr, rule))}, got {shown}",
        "pattern": lambda: f"must be {schema.get('x-rule', 'matching ' + repr(rule))}, got {shown}",
    }
    make = messages.get(kind)
    return make() if make else None


def _any(value: object) -> Any:
    # jsonschema types these attributes loosely; they hold plain JSON values.
    return value


def _most_specific(errors: Sequence[ValidationError]) -> ValidationError:
    # "Not null" from the nullable branch never explains a mistake.
    return max(errors, key=lambda e: (len(e.absolute_path), e.validator != "type"))


def _unknown_key(error: ValidationError) -> Tuple[str, str]:
    """Path of the first unknown key, and the closest valid key if one is close."""
    schema: Dict[str, Any] = _any(error.schema)
    allowed = sorted(schema.get("properties", {}))
    key = min((k for k in _any(error.instance) if k not in allowed), key=str)
    parent = list(error.absolute_path)
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    if close:
        return _path(parent + [key]), f"unknown key; did you mean '{_path(parent + close)}'?"
    return _path(parent + [key]), f"unknown key; valid keys here are {', '.join(allowed)}"


def _check_numbers(value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise DBOSConfigError(path, f"must be a finite number, got {value!r}")
    children: Iterator[tuple[str, Any]] = iter(())
    if isinstance(value, dict):
        children = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        children = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    for child_path, child in children:
        _check_numbers(child, child_path)


def _check_urls(config: Dict[str, Any]) -> None:
    for key in ("system_database_url", "application_database_url", "database_url"):
        if config.get(key):
            try:
                DatabaseURL.parse(config[key])
            except URLError as exc:
                raise DBOSConfigError(key, str(exc))


def _check_datasource(config: Dict[str, Any]) -> None:
    from ._datasource import DATASOURCE_KINDS, Datasource

    datasource = config.get("application_datasource")
    if datasource is None or isinstance(datasource, Datasource):
        return
    if datasource not in DATASOURCE_KINDS:
        raise DBOSConfigError(
            "application_datasource",
            "must be a dbos.Datasource (such as PeeweeDatasource(db)) or one of "
            f"{', '.join(map(repr, DATASOURCE_KINDS))}, got {datasource!r}",
        )
    if not (config.get("application_database_url") or config.get("database_url")):
        raise DBOSConfigError(
            "application_datasource",
            f"{datasource!r} opens application_database_url, which is not set",
        )


def _check_serializer(serializer: Any) -> None:
    if serializer is None:
        return
    for method in ("serialize", "deserialize"):
        if not callable(getattr(serializer, method, None)):
            raise DBOSConfigError(
                "serializer", f"must have a callable {method}() method, got {serializer!r}"
            )


def _check_json(config: Dict[str, Any], key: str) -> None:
    try:
        json.dumps(config.get(key))
    except (TypeError, ValueError) as exc:
        raise DBOSConfigError(key, f"must be JSON-serializable: {exc}")


# --------------------------------------------------------------------------
# Resolved settings
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """A validated configuration with every default filled in."""

    name: str
    system_database_url: DatabaseURL
    application_database_url: Optional[DatabaseURL] = None
    system_schema: str = "dbos"
    sys_db_pool_size: int = 20
    pool_timeout: float = 30.0
    connect_args: Dict[str, Any] = field(default_factory=dict)
    run_migrations: bool = True
    use_listen_notify: bool = True
    notification_listener_polling_interval_sec: float = 1.0
    notification_coalesce_sec: float = 0.01
    scheduler_polling_interval_sec: float = 30.0
    max_executor_threads: Optional[int] = None
    application_version: Optional[str] = None
    executor_id: Optional[str] = None
    # DBOS.patch() may be called; the version is PATCHING_ENABLED unless application_version says.
    enable_patching: bool = False
    # An executor silent this long is presumed dead; with takeover_enabled a
    # live one of the same application version takes over its workflows.
    executor_timeout_sec: float = 60.0
    takeover_enabled: bool = True
    # During a system-database outage running work waits; a call that would
    # start new work (a top-level start, an enqueue, a management call) gives
    # up after this long.
    new_work_outage_limit_sec: float = 60.0
    # SIGTERM shuts DBOS down, waiting this long for running workflows, then
    # ends the process (unless the application handles SIGTERM itself).
    handle_sigterm: bool = True
    shutdown_timeout_sec: float = 10.0
    log_level: str = "INFO"
    console_log_level: str = "INFO"
    run_admin_server: bool = False
    admin_port: int = 3001
    admin_host: str = "127.0.0.1"
    admin_token: Optional[str] = None  # every admin request but the health check must carry it
    admin_dashboard: bool = False  # also serve the dashboard at /dashboard (off: it changes state)
    migrate_commands: List[str] = field(default_factory=list)
    serializer: Any = None
    application_datasource: Any = None
    # OpenTelemetry (dbos.contrib.otel): spans, and OTLP/HTTP export where endpoints are given.
    enable_otlp: bool = False
    otlp_traces_endpoints: List[str] = field(default_factory=list)
    otlp_logs_endpoints: List[str] = field(default_factory=list)
    otlp_attributes: Dict[str, str] = field(default_factory=dict)
    otel_attribute_format: str = "legacy"
    otlp_log_level: str = "INFO"


def default_app_name(directory: Optional[str] = None) -> str:
    """An app name derived from the working directory, fitting the name rule."""
    base = os.path.basename(os.path.abspath(directory or os.getcwd())).lower()
    name = re.sub(r"[^a-z0-9_-]+", "-", base).strip("-")[:30]
    return name if len(name) >= 3 else "dbos-app"


def default_config(directory: Optional[str] = None) -> DBOSConfig:
    """What ``DBOS()`` runs with when there is no configuration file: SQLite here."""
    return DBOSConfig(name=default_app_name(directory))


def default_sqlite_url(name: str) -> str:
    """``sqlite:///<name>.sqlite`` in the working directory, with a safe file name."""
    stem = name.replace("-", "_").replace(" ", "_").lower()
    if stem[:1].isdigit():
        stem = "_" + stem
    return f"sqlite:///{stem}.sqlite"


def resolve_urls(config: DBOSConfig) -> tuple[DatabaseURL, Optional[DatabaseURL]]:
    """The system and application database URLs, as spec section 2.4 derives them."""
    app_raw = config.get("database_url") or config.get("application_database_url")
    sys_raw = config.get("system_database_url")
    app = DatabaseURL.parse(app_raw) if app_raw else None
    if sys_raw:
        return DatabaseURL.parse(sys_raw), app
    if app is None:
        return DatabaseURL.parse(default_sqlite_url(config["name"])), None
    if app.is_sqlite:
        return app, app
    return app.with_database(f"{app.database}_dbos_sys"), app


def resolve(config: DBOSConfig, yaml_data: Optional[Dict[str, Any]] = None) -> Settings:
    """Validate ``config`` and fill in every default."""
    validate_config(config)
    _warn_ignored(config)
    system_url, app_url = resolve_urls(config)
    engine = config.get("db_engine_kwargs") or {}
    sections: Dict[str, Any] = dict(yaml_data if yaml_data is not None else config)
    return Settings(
        name=config["name"],
        system_database_url=system_url,
        application_database_url=app_url,
        system_schema=config.get("dbos_system_schema") or "dbos",
        sys_db_pool_size=config.get("sys_db_pool_size") or engine.get("pool_size") or 20,
        pool_timeout=float(engine.get("pool_timeout", 30.0)),
        connect_args=dict(engine.get("connect_args") or {}),
        run_migrations=_flag(config, "run_migrations", True),
        use_listen_notify=_flag(config, "use_listen_notify", True),
        notification_listener_polling_interval_sec=_number(
            config, "notification_listener_polling_interval_sec", 1.0),
        notification_coalesce_sec=_number(config, "notification_coalesce_sec", 0.01),
        scheduler_polling_interval_sec=_number(config, "scheduler_polling_interval_sec", 30.0),
        max_executor_threads=config.get("max_executor_threads"),
        application_version=config.get("application_version"),
        executor_id=config.get("executor_id"),
        enable_patching=_flag(config, "enable_patching", False),
        executor_timeout_sec=_number(config, "executor_timeout_sec", 60.0),
        takeover_enabled=_flag(config, "takeover_enabled", True),
        new_work_outage_limit_sec=_number(config, "new_work_outage_limit_sec", 60.0),
        handle_sigterm=_flag(config, "handle_sigterm", True),
        shutdown_timeout_sec=_number(config, "shutdown_timeout_sec", 10.0),
        **_admin_settings(config),
        migrate_commands=list(sections.get("database", {}).get("migrate", [])),
        serializer=config.get("serializer"),
        application_datasource=config.get("application_datasource"),
        **telemetry_settings(config),
    )


def _admin_settings(config: DBOSConfig) -> Dict[str, Any]:
    return {
        "run_admin_server": _flag(config, "run_admin_server", False),
        "admin_port": config.get("admin_port") or 3001,
        "admin_host": config.get("admin_host") or "127.0.0.1",
        "admin_token": config.get("admin_token") or os.environ.get(ADMIN_TOKEN_VARIABLE) or None,
        "admin_dashboard": _flag(config, "admin_dashboard", False),
    }


def _flag(config: DBOSConfig, key: str, default: bool) -> bool:
    value = config.get(key)
    return default if value is None else bool(value)


def _number(config: DBOSConfig, key: str, default: float) -> float:
    value = config.get(key)
    return default if value is None else float(value)  # type: ignore[arg-type]


def _warn_ignored(config: DBOSConfig) -> None:
    for key, reason in IGNORED_KEYS.items():
        if config.get(key):
            logger.warning(f"Configuration key {key} is ignored: {reason}")
