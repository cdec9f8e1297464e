"""The runtime of this process: constructed by ``DBOS()``, launched by
``DBOS.launch()``, stopped by ``DBOS.destroy()``.

One ``Runtime`` exists per process at a time. Constructing it validates the
configuration and starts nothing. Launching migrates (or verifies) the
system database, builds the engine, and starts background work: recovery of
this executor's pending workflows, the queue workers, the schedulers and the
admin server. Destroying stops it all, so a new one can be constructed.
``DBOS`` is the public face of these functions; the framework integrations
in ``contrib`` call them too.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set, Tuple

from ._config import (
    CONFIG_FILENAMES,
    DBOSConfig,
    Settings,
    config_from_yaml,
    default_config,
    find_config_file,
    load_config_file,
    resolve,
)
from ._datasource import Datasource, PeeweeDatasource, default_kind
from ._engine import tracing
from ._engine.engine import Engine, Identity, peek_engine, set_constructed, set_engine
from ._engine.heartbeat import Heartbeat, claim_executor_id, start_heartbeat
from ._engine.recovery import recover_pending
from ._engine.registry import clear_registry, get_registry
from ._engine.transaction_async import install as install_datasource_steps
from ._logger import configure_logging, dbos_logger
from ._ops import interrupt, stop_signal
from ._ops.migrate import migrate_command
from ._queues.queue import INTERNAL_QUEUE
from ._queues.schedule_runner import start_schedule_runner
from ._queues.scheduler import start_scheduler
from ._queues.worker import start_workers
from ._serialization import Codec
from ._sysdb import SystemDatabase
from ._sysdb.outage import new_work
from ._versions import PATCHING_VERSION, compute_application_version
from .error import DBOSException, DBOSNotLaunchedError

if TYPE_CHECKING:  # imported when run: http.server and the dashboard cost 0.1 s at every start
    from ._ops.admin_server import AdminServer

# Queued workflows a process runs at once unless max_executor_threads says.
# One thread each: 48 leaves room under 64 threads in all for the engine's
# own (event loop, deadlines, queue manager and one worker per queue,
# listener, recovery, scheduler, admin server) and the application's.
DEFAULT_DISPATCH_BUDGET = 48

# Every datasource's @ds.transaction() runs through the engine (see _datasource/steps.py).
install_datasource_steps()


class _GlobalParams:
    """Identity of this process, reset from the environment by ``destroy``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.app_version: str = os.environ.get("DBOS__APPVERSION", "")
        self.executor_id: str = os.environ.get("DBOS__VMID", "local")
        self.app_name: Optional[str] = None


GlobalParams = _GlobalParams()

# What DBOS Conductor's alerts are handed to: (name, message, metadata).
AlertHandler = Callable[[str, str, Dict[str, str]], None]


class Runtime:
    """What ``DBOS()`` constructed, and, once launched, what runs."""

    def __init__(self, config: DBOSConfig, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.sys_db: Optional[SystemDatabase] = None
        self.engine: Optional[Engine] = None
        self.admin_server: Optional["AdminServer"] = None
        self.launched = False
        self.listen_queues: Optional[Set[str]] = None
        self.alert_handler: Optional[AlertHandler] = None
        self._stop_event = threading.Event()
        self._background: List[threading.Thread] = []
        self._heartbeat: Optional[Heartbeat] = None
        configure_logging(settings.log_level, settings.console_log_level)
        if settings.enable_otlp:  # only then is OpenTelemetry imported
            from .contrib.otel import configure as configure_tracing

            configure_tracing(settings)
        if settings.enable_patching:  # over DBOS__APPVERSION, under application_version
            GlobalParams.app_version = PATCHING_VERSION
        if settings.application_version:
            GlobalParams.app_version = settings.application_version
        if settings.executor_id:
            GlobalParams.executor_id = settings.executor_id

    # ------------------------------------------------------------------
    # Launching
    # ------------------------------------------------------------------

    def launch(self) -> None:
        settings = self.settings
        GlobalParams.app_name = settings.name
        sysdb = _open_system_database(settings)
        try:
            _prepare_schema(sysdb, settings)
            if not GlobalParams.app_version:
                GlobalParams.app_version = compute_application_version(
                    get_registry().workflow_functions(), settings.name
                )
            _register_version(sysdb, GlobalParams.app_version, settings.name)
            with new_work():
                GlobalParams.executor_id = claim_executor_id(
                    sysdb, GlobalParams.executor_id, GlobalParams.app_version, settings.name,
                    settings.executor_timeout_sec)
            engine = _build_engine(sysdb, settings)
        except BaseException:
            sysdb.close()
            raise
        try:  # bound before any work starts, so a busy port leaves nothing running
            self.admin_server = _open_admin_server(engine, settings)
        except BaseException:
            engine.close()
            sysdb.close()
            raise
        self.sys_db, self.engine = sysdb, engine
        set_engine(engine)
        self.launched = True
        self._start_background(engine)
        if settings.handle_sigterm:
            stop_signal.install(_shutdown_on_sigterm)
        interrupt.install(_stop_on_interrupt)
        dbos_logger.info("DBOS launched!")

    def _start_background(self, engine: Engine) -> None:
        # Queued workflows this executor was running go back to their queues;
        # the rest are found now, before this process starts any of its own,
        # so recovery never picks up a workflow that is running here.
        identity = engine.identity
        # A fresh heartbeat first: no one takes over what this executor recovers now.
        self._heartbeat = start_heartbeat(engine, self.settings.executor_timeout_sec,
                                          self.settings.takeover_enabled)
        engine.sysdb.requeue_pending(identity.executor_id, identity.app_version)
        pending = engine.sysdb.pending_attempts(identity.executor_id, identity.app_version)
        budget = self.settings.max_executor_threads or DEFAULT_DISPATCH_BUDGET
        start_workers(engine, budget, self.listen_queues)
        schedules = list(get_registry().schedules)
        if schedules:
            start_scheduler(engine, schedules)
        start_schedule_runner(engine, self.settings.scheduler_polling_interval_sec)
        recovery = threading.Thread(
            target=_recover_quietly, args=(engine, pending), name="dbos-recovery", daemon=True
        )
        recovery.start()
        self._background.append(recovery)

    # ------------------------------------------------------------------
    # Stopping
    # ------------------------------------------------------------------

    def shutdown(self, workflow_completion_timeout_sec: float) -> None:
        if self.admin_server is not None:  # first: no new request reaches a closing engine
            self.admin_server.stop()
            self.admin_server = None
        self._stop_event.set()
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.stop_intake()  # no new work starts while we wait for the running
        if engine is not None and workflow_completion_timeout_sec > 0:
            self._wait_for_active(engine, workflow_completion_timeout_sec)
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:  # beats until the work that was let finish has finished
            heartbeat.stop()
        for thread in self._background:
            thread.join(timeout=10)
            if thread.is_alive():
                dbos_logger.warning(f"Background thread {thread.name} did not stop in 10 s")
        if engine is not None:
            if peek_engine() is engine:  # a newer launch's engine stays
                set_engine(None)
            engine.close()
        if self.sys_db is not None:
            self.sys_db.close()
            self.sys_db = None
        self.launched = False

    def _wait_for_active(self, engine: Engine, timeout_sec: float) -> None:
        deadline = time.monotonic() + timeout_sec
        while engine.active_workflows() and time.monotonic() < deadline:
            self._stop_event.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        remaining = engine.active_workflows()
        if remaining:
            dbos_logger.warning(f"Workflows still running at shutdown: {remaining}")


# ----------------------------------------------------------------------
# The runtime of this process
# ----------------------------------------------------------------------

_runtime: Optional[Runtime] = None
# Held while a runtime is constructed or launched: two threads doing either
# at once must not both build one, nor both migrate.
lock = threading.RLock()


def current() -> Optional[Runtime]:
    """The runtime ``DBOS()`` constructed, until it is destroyed."""
    return _runtime


def settings_for(config: Optional[DBOSConfig]) -> Tuple[DBOSConfig, Settings]:
    """The configuration to construct with: ``config``, else ``dbos_config.yaml``
    here, else the defaults; validated and resolved."""
    yaml_data = None
    if config is None and find_config_file() is not None:
        yaml_data = load_config_file()
        config = config_from_yaml(yaml_data)
    elif config is None:
        config = default_config()
    return config, resolve(config, yaml_data)


def _say_defaults(settings: Settings) -> None:
    """Say which app name and database ``DBOS()`` chose without a configuration:
    run from another folder, an app starts over in a new SQLite file."""
    where = settings.system_database_url
    shown = where.sqlite_path if where.is_sqlite else str(where)
    dbos_logger.info(f"No {CONFIG_FILENAMES[0]} in {os.getcwd()}: running as app '{settings.name}' "
                     f"with system database {shown}")


def current_config() -> Optional[DBOSConfig]:
    """The configuration of the runtime constructed here; None before ``DBOS()``."""
    return _runtime.config if _runtime is not None else None


def construct_from(config: Optional[DBOSConfig], prepare: Optional[Callable[[], None]] = None) -> Runtime:
    """``construct`` with ``settings_for(config)``, unless a runtime exists already.

    ``prepare`` runs once the configuration is known to be valid, before the
    runtime is built: what fails there leaves nothing constructed.
    """
    with lock:
        if _runtime is not None:
            return _runtime
        defaults = config is None and find_config_file() is None
        config, settings = settings_for(config)
        if prepare is not None:
            prepare()
        runtime = construct(config, settings)
        if defaults:  # now that construct set logging up, so that it shows
            _say_defaults(settings)
        return runtime


def construct(config: DBOSConfig, settings: Settings) -> Runtime:
    """This process's runtime: a new one unless one exists (whose configuration stays)."""
    global _runtime
    with lock:
        if _runtime is None:
            _runtime = Runtime(config, settings)
            set_constructed(True)
        return _runtime


def set_alert_handler(func: AlertHandler) -> None:
    """Keep the one alert handler; only between ``DBOS()`` and launch."""
    with lock:
        runtime = _runtime
        if runtime is None:
            raise DBOSException("@DBOS.alert_handler needs DBOS(...) to be constructed first")
        if runtime.launched:
            raise DBOSException("@DBOS.alert_handler must be applied before DBOS.launch()")
        if runtime.alert_handler is not None:
            raise DBOSException("An alert handler is already defined; declare only one @DBOS.alert_handler")
        runtime.alert_handler = func


def launch() -> None:
    """Launch the runtime constructed here; nothing without one, a warning if launched."""
    with lock:
        runtime = _runtime
        if runtime is None:
            return
        if runtime.launched:
            dbos_logger.warning("DBOS.launch() was called again; DBOS is already launched")
            return
        try:
            runtime.launch()
        except Exception:
            dbos_logger.error("DBOS failed to launch", exc_info=True)
            raise


def launch_if_needed() -> None:
    """``launch()`` unless launched already (or nothing was constructed).

    ``launch()`` warns when called twice; this checks first, under the lock,
    so concurrent first requests of a web app launch once and quietly.
    """
    if peek_engine() is not None:
        return
    with lock:
        if peek_engine() is None and _runtime is not None:
            launch()


def destroy(*, destroy_registry: bool = False, workflow_completion_timeout_sec: float = 0) -> None:
    """Stop everything the runtime runs and forget it; a new ``DBOS()`` starts afresh."""
    global _runtime
    stop_signal.uninstall()
    interrupt.uninstall()
    with lock:  # forgotten first: nothing launches it again while it stops
        runtime, _runtime = _runtime, None
        set_constructed(False)
    if runtime is not None:
        runtime.shutdown(workflow_completion_timeout_sec)
    if tracing.installed is not None:  # a new DBOS() traces only if it says so
        from .contrib.otel import unconfigure

        unconfigure()
    if destroy_registry:
        clear_registry()
    GlobalParams.reset()
    dbos_logger.info("DBOS successfully shut down")


def _stop_on_interrupt() -> bool:
    """What an uncaught Ctrl-C does (see _ops/interrupt.py): stop at once, quietly;
    whether workflows were still running on DBOS's threads."""
    engine = peek_engine()
    running = engine is not None and bool(engine.active_workflows())
    dbos_logger.setLevel("WARNING")  # the one line printed says it all
    destroy(workflow_completion_timeout_sec=0)
    return running


def _shutdown_on_sigterm() -> None:
    """What SIGTERM does (see _ops/stop_signal.py): ``destroy`` with the configured timeout."""
    runtime = _runtime
    if runtime is not None:
        destroy(workflow_completion_timeout_sec=runtime.settings.shutdown_timeout_sec)


def system_database(what: str) -> SystemDatabase:
    """The launched runtime's system database, or an error naming what was used too early."""
    runtime = _runtime
    if runtime is None:
        raise DBOSException(
            f"{what} was called before DBOS was initialized: construct "
            "DBOS(config=...) and call DBOS.launch() first"
        )
    if runtime.sys_db is None:
        raise DBOSNotLaunchedError(f"{what} was called")
    return runtime.sys_db


def listen_queues(queues: List[Any]) -> None:
    """Serve only these queues (names or ``Queue`` objects) in this process."""
    runtime = _runtime
    if runtime is None or runtime.launched:
        raise DBOSException("DBOS.listen_queues() must be called after DBOS() and before DBOS.launch()")
    if runtime.listen_queues is not None:
        raise DBOSException("DBOS.listen_queues() was already called")
    runtime.listen_queues = {q if isinstance(q, str) else q.name for q in queues} | {INTERNAL_QUEUE}


def reset_system_database(system_database_url: Optional[str], schema: Optional[str], truncate: bool) -> None:
    """Drop the system database (or empty its tables); only before launch."""
    runtime = _runtime
    if runtime is not None:
        if runtime.launched:
            raise AssertionError(
                "DBOS.reset_system_database() must be called before DBOS.launch(); "
                "call DBOS.destroy() first to reset a launched application"
            )
        system_database_url = system_database_url or runtime.settings.system_database_url.render()
        schema = schema or runtime.settings.system_schema
    if not system_database_url:
        dbos_logger.warning("reset_system_database: no system database URL; nothing to do")
        return
    sysdb = SystemDatabase(system_database_url, schema=schema or "dbos", pool_size=2)
    try:
        if not truncate:
            sysdb.drop()
        elif sysdb.exists():
            sysdb.truncate()
    finally:
        sysdb.close()


# ----------------------------------------------------------------------
# Launch, step by step
# ----------------------------------------------------------------------


def _open_system_database(settings: Settings) -> SystemDatabase:
    return SystemDatabase(
        settings.system_database_url,
        schema=settings.system_schema,
        pool_size=settings.sys_db_pool_size,
        pool_timeout=settings.pool_timeout,
        connect_args=settings.connect_args,
        new_work_limit=settings.new_work_outage_limit_sec,
    )


def _prepare_schema(sysdb: SystemDatabase, settings: Settings) -> None:
    if settings.run_migrations:
        applied = sysdb.migrate()
        if applied:
            dbos_logger.info(f"System database migrated to version {applied[-1]}")
    else:
        sysdb.verify_schema(migrate_command(sysdb.url, sysdb.schema))


def _register_version(sysdb: SystemDatabase, version: str, app_name: str) -> None:
    sysdb.register_application_version(version, app_name)
    versions = sysdb.list_application_versions()
    if versions and versions[0].version_name != version:
        dbos_logger.warning(
            f"Application version {version} is not the latest registered version "
            f"({versions[0].version_name}); DBOS.set_latest_application_version() changes that"
        )


def _build_engine(sysdb: SystemDatabase, settings: Settings) -> Engine:
    url = settings.application_database_url
    datasource, owned = datasource_from_config(settings.application_datasource,
                                               url.render() if url is not None else None)
    if datasource is not None:
        datasource.ensure_schema()
    # DBOS Cloud sets DBOS__APPID; read once here, not on every workflow start.
    identity = Identity(settings.name, GlobalParams.app_version, GlobalParams.executor_id,
                        os.environ.get("DBOS__APPID", ""))
    return Engine(sysdb, Codec.of(settings.serializer), identity,
                  settings.max_executor_threads, datasource, owned,
                  poll_interval=settings.notification_listener_polling_interval_sec,
                  listen=settings.use_listen_notify, patching=settings.enable_patching)


def datasource_from_config(choice: Any, url: Optional[str]) -> Tuple[Optional[Datasource], bool]:
    """The application datasource the configuration asks for, and whether DBOS
    opened it (and so closes it); a user's own datasource stays open."""
    if isinstance(choice, Datasource):
        return choice, False
    if url is None:
        return None, False
    if (choice or default_kind()) == "peewee":
        return PeeweeDatasource.from_url(url), True
    from .contrib.sqlalchemy import SQLAlchemyDatasource  # only when asked for: SQLAlchemy is optional

    return SQLAlchemyDatasource.from_url(url), True


def _open_admin_server(engine: Engine, settings: Settings) -> Optional["AdminServer"]:
    if not settings.run_admin_server:
        return None
    from ._ops.admin_server import AdminServer
    return AdminServer(engine, settings.admin_host, settings.admin_port, settings.admin_token,
                       settings.admin_dashboard)


def _recover_quietly(engine: Engine, seen: Dict[str, int]) -> None:
    try:
        recover_pending(engine, seen)
    except Exception:
        dbos_logger.error("Recovery of pending workflows failed", exc_info=True)
