"""The ``DBOS`` class: a process-wide singleton and its lifecycle.

``DBOS(config=...)`` validates the configuration; ``DBOS.launch()`` migrates
(or verifies) the system database and starts background work;
``DBOS.destroy()`` stops it all so a new instance can be built.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import Any, AsyncGenerator, Awaitable, Callable, Dict, Generator, List, Optional, Set, TypeVar

from .._ops.admin_server import AdminServer
from .._config import (
    CONFIG_FILENAMES,
    DBOSConfig,
    Settings,
    config_from_yaml,
    default_config,
    find_config_file,
    load_config_file,
    resolve,
)
from .._engine import messages as comm
from .._engine import decorators, introspection, starting as start, streams
from .._queues.queue import INTERNAL_QUEUE, Queue, QueueConfig, QueueRateLimit, enqueue, queue_named, validate
from .._queues.worker import QueueWorkers
from .._queues.scheduler import scheduled, start_scheduler
from .._engine.messages import SendMessage
from .._engine.context import DBOSContext, get_context
from .._datasource import IsolationLevel, datasource_from_config
from .._engine.engine import Engine, Identity, get_engine, set_engine
from .._engine.handles import WorkflowHandle, WorkflowHandleAsync
from .._engine.introspection import workflow_status
from .management import ManagementAPI
from ..error import DBOSException, DBOSNotLaunchedError
from .._logger import configure_logging, dbos_logger
from .._engine.recovery import recover_pending
from .._engine.registry import clear_registry, get_registry
from .._serialization import Codec
from .._status import StepStatus, WorkflowStatus
from .._engine.step import RetryPolicy
from .._ops.migrate import migrate_command
from .._sysdb import SystemDatabase
from .._versions import VersionInfo, compute_application_version

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
R = TypeVar("R")

_instance: Optional["DBOS"] = None
_instance_lock = threading.RLock()


class _GlobalParams:
    """Identity of this process, reset from the environment by ``destroy``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.app_version: str = os.environ.get("DBOS__APPVERSION", "")
        self.executor_id: str = os.environ.get("DBOS__VMID", "local")
        self.app_name: Optional[str] = None


GlobalParams = _GlobalParams()


class classproperty:
    """A read-only property of the class itself (``DBOS.logger``)."""

    def __init__(self, getter: Callable[[Any], Any]) -> None:
        self.getter = getter

    def __get__(self, obj: Any, owner: Any) -> Any:
        return self.getter(owner)


class DBOS(ManagementAPI):
    """The durable-execution runtime of this process (one instance at a time)."""

    _initialized: bool

    def __new__(cls, *args: Any, **kwargs: Any) -> "DBOS":
        global _instance
        with _instance_lock:
            if _instance is None:
                created = super().__new__(cls)
                created._initialized = False
                _instance = created
            return _instance

    def __init__(
        self,
        *,
        config: Optional[DBOSConfig] = None,
        fastapi: Optional[Any] = None,
        flask: Optional[Any] = None,
        conductor_url: Optional[str] = None,
        conductor_key: Optional[str] = None,
    ) -> None:
        # A second construction returns the first instance untouched, as in
        # DBOS Transact: the new config is ignored.
        if self._initialized:
            return
        try:
            self._setup(config, fastapi, flask)
        except BaseException:
            _forget_instance(self)
            raise

    def _setup(self, config: Optional[DBOSConfig], fastapi: Any, flask: Any) -> None:
        yaml_data = None
        if config is None and find_config_file() is not None:
            yaml_data = load_config_file()
            config = config_from_yaml(yaml_data)
        elif config is None:
            config = default_config()
            dbos_logger.info(f"No {CONFIG_FILENAMES[0]} here; running as app '{config['name']}'")
        settings = resolve(config, yaml_data)
        if fastapi is not None:  # imported here: the core never imports a framework
            from ..contrib.fastapi import setup_fastapi
            setup_fastapi(fastapi)
        if flask is not None:
            from ..contrib.flask import setup_flask
            setup_flask(flask)
        self._settings: Settings = settings
        self._config: DBOSConfig = config
        self._sys_db: Optional[SystemDatabase] = None
        self._launched = False
        self._stop_event = threading.Event()
        self._background: List[threading.Thread] = []
        self._engine: Optional[Engine] = None
        self._listen_queues: Optional[Set[str]] = None
        self._admin_server: Optional[AdminServer] = None
        configure_logging(settings.log_level, settings.console_log_level)
        if settings.application_version:
            GlobalParams.app_version = settings.application_version
        if settings.executor_id:
            GlobalParams.executor_id = settings.executor_id
        self._initialized = True

    # ------------------------------------------------------------------
    # Lifecycle
    # ------------------------------------------------------------------

    @classmethod
    def launch(cls) -> None:
        """Migrate (or verify) the system database, then start background work."""
        with _instance_lock:  # two threads launching at once must not both migrate
            inst = _instance
            if inst is None or not inst._initialized:
                return
            if inst._launched:
                dbos_logger.warning("DBOS.launch() was called again; DBOS is already launched")
                return
            try:
                inst._launch()
            except Exception:
                dbos_logger.error("DBOS failed to launch", exc_info=True)
                raise

    def _launch(self) -> None:
        settings = self._settings
        GlobalParams.app_name = settings.name
        sysdb = _open_system_database(settings)
        try:
            _prepare_schema(sysdb, settings)
            if not GlobalParams.app_version:
                GlobalParams.app_version = compute_application_version(
                    get_registry().workflow_functions(), settings.name
                )
            _register_version(sysdb, GlobalParams.app_version, settings.name)
            engine = _build_engine(sysdb, settings)
        except BaseException:
            sysdb.close()
            raise
        try:  # bound before any work starts, so a busy port leaves nothing running
            self._admin_server = _open_admin_server(engine, settings)
        except BaseException:
            engine.close()
            sysdb.close()
            raise
        self._sys_db, self._engine = sysdb, engine
        set_engine(engine)
        self._launched = True
        self._start_background(engine)
        dbos_logger.info("DBOS launched!")

    def _start_background(self, engine: Engine) -> None:
        # Queued workflows this executor was running go back to their queues;
        # the rest are found now, before this process starts any of its own,
        # so recovery never picks up a workflow that is running here.
        identity = engine.identity
        engine.sysdb.queues.requeue_pending(identity.executor_id, identity.app_version)
        pending = engine.sysdb.workflows.pending(identity.executor_id, identity.app_version)
        self._start_queues(engine)
        recovery = threading.Thread(
            target=_recover_quietly, args=(engine, pending), name="dbos-recovery", daemon=True
        )
        recovery.start()
        self._background.append(recovery)

    @classmethod
    def destroy(
        cls, *, destroy_registry: bool = False, workflow_completion_timeout_sec: int = 0
    ) -> None:
        """Stop background work, close the system database, forget the instance."""
        inst = _instance
        if inst is not None and inst._initialized:
            inst._shutdown(workflow_completion_timeout_sec)
        with _instance_lock:
            _forget_instance(inst)
        if destroy_registry:
            clear_registry()
        GlobalParams.reset()
        dbos_logger.info("DBOS successfully shut down")

    def _start_queues(self, engine: Engine) -> None:
        settings = self._settings
        budget = settings.max_executor_threads or DEFAULT_DISPATCH_BUDGET
        workers = QueueWorkers(engine, budget, self._listen_queues)
        engine.queue_workers = workers
        engine.internal_queue = Queue(INTERNAL_QUEUE, _internal=True)
        for queue in [engine.internal_queue, *get_registry().queues.values()]:
            workers.serve(queue)
        for row in engine.sysdb.queues.list_queues():
            workers.serve(Queue(row["name"], _database_backed=True))
        schedules = list(get_registry().schedules)
        if schedules:
            start_scheduler(engine, schedules)

    def _shutdown(self, workflow_completion_timeout_sec: float) -> None:
        self._initialized = False
        if self._admin_server is not None:  # first: no new request reaches a closing engine
            self._admin_server.stop()
            self._admin_server = None
        self._stop_event.set()
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.stop_intake()  # no new work starts while we wait for the running
        if engine is not None and workflow_completion_timeout_sec > 0:
            self._wait_for_active(engine, workflow_completion_timeout_sec)
        for thread in self._background:
            thread.join(timeout=10)
            if thread.is_alive():
                dbos_logger.warning(f"Background thread {thread.name} did not stop in 10 s")
        set_engine(None)
        if engine is not None:
            engine.close()
        if self._sys_db is not None:
            self._sys_db.close()
            self._sys_db = None
        self._launched = False

    def _wait_for_active(self, engine: Engine, timeout_sec: float) -> None:
        deadline = time.monotonic() + timeout_sec
        while engine.active_workflows() and time.monotonic() < deadline:
            self._stop_event.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        remaining = engine.active_workflows()
        if remaining:
            dbos_logger.warning(f"Workflows still running at shutdown: {remaining}")

    @classmethod
    def reset_system_database(
        cls,
        *,
        system_database_url: Optional[str] = None,
        schema: Optional[str] = None,
        truncate: bool = False,
    ) -> None:
        """Drop the system database (or empty its tables); only before launch."""
        inst = _instance
        if inst is not None and inst._initialized:
            if inst._launched:
                raise AssertionError(
                    "DBOS.reset_system_database() must be called before DBOS.launch(); "
                    "call DBOS.destroy() first to reset a launched application"
                )
            system_database_url = system_database_url or inst._settings.system_database_url.render()
            schema = schema or inst._settings.system_schema
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

    # ------------------------------------------------------------------
    # Access to the running instance
    # ------------------------------------------------------------------

    @classmethod
    def _system_database(cls, what: str) -> SystemDatabase:
        inst = _instance
        if inst is None or not inst._initialized:
            raise DBOSException(
                f"{what} was called before DBOS was initialized: construct "
                "DBOS(config=...) and call DBOS.launch() first"
            )
        if inst._sys_db is None:
            raise DBOSNotLaunchedError(f"{what} was called")
        return inst._sys_db

    @classproperty
    def logger(cls) -> logging.Logger:
        return dbos_logger

    @classproperty
    def application_version(cls) -> str:
        return GlobalParams.app_version

    @classproperty
    def executor_id(cls) -> str:
        return GlobalParams.executor_id

    @classproperty
    def config(cls) -> Optional[DBOSConfig]:
        inst = _instance
        return inst._config if inst is not None and inst._initialized else None

    # ------------------------------------------------------------------
    # Application versions
    # ------------------------------------------------------------------

    @classmethod
    def list_application_versions(cls) -> List[VersionInfo]:
        """Registered application versions, newest first."""
        return cls._system_database("DBOS.list_application_versions()").list_application_versions()

    @classmethod
    def get_latest_application_version(cls) -> VersionInfo:
        versions = cls._system_database(
            "DBOS.get_latest_application_version()"
        ).list_application_versions()
        if not versions:
            raise DBOSException("No application versions found")
        return versions[0]

    @classmethod
    def set_latest_application_version(cls, version_name: str) -> None:
        sysdb = cls._system_database("DBOS.set_latest_application_version()")
        sysdb.set_latest_application_version(version_name)

    # ------------------------------------------------------------------
    # Decorators
    # ------------------------------------------------------------------

    @classmethod
    def workflow(
        cls, *, name: Optional[str] = None, max_recovery_attempts: Optional[int] = 100
    ) -> Callable[[F], F]:
        """Make a function durable: each step's outcome is checkpointed."""
        return lambda func: decorators.make_workflow(func, name, max_recovery_attempts)

    @classmethod
    def step(
        cls,
        *,
        name: Optional[str] = None,
        retries_allowed: bool = False,
        interval_seconds: float = 1.0,
        max_attempts: int = 3,
        backoff_rate: float = 2.0,
        should_retry: Optional[Callable[[BaseException], Any]] = None,
    ) -> Callable[[F], F]:
        """A step of a workflow: run once, its outcome checkpointed."""
        policy = RetryPolicy(retries_allowed, interval_seconds, max_attempts, backoff_rate, should_retry)
        return lambda func: decorators.make_step(func, name, policy)

    @classmethod
    def transaction(
        cls, isolation_level: IsolationLevel = "SERIALIZABLE", *, name: Optional[str] = None
    ) -> Callable[[F], F]:
        """A step that runs in an application-database transaction, exactly once."""
        return lambda func: decorators.make_transaction(func, isolation_level, name)

    @classmethod
    def dbos_class(cls, class_name: Optional[str] = None) -> Callable[[T], T]:
        return lambda klass: decorators.register_class(klass, class_name)  # type: ignore[return-value, arg-type]

    @classmethod
    def required_roles(cls, roles: List[str]) -> Callable[[F], F]:
        return decorators.required_roles(roles)

    @classmethod
    def default_required_roles(cls, roles: List[str]) -> Callable[[T], T]:
        return decorators.default_required_roles(roles)  # type: ignore[return-value]

    # ------------------------------------------------------------------
    # Starting and observing workflows
    # ------------------------------------------------------------------

    @classmethod
    def start_workflow(cls, func: Callable[..., R], *args: Any, **kwargs: Any) -> WorkflowHandle[R]:
        return start.start_workflow(func, args, kwargs)

    @classmethod
    async def start_workflow_async(
        cls, func: Callable[..., Awaitable[R]], *args: Any, **kwargs: Any
    ) -> WorkflowHandleAsync[R]:
        return await start.start_workflow_async(func, args, kwargs)

    @classmethod
    def retrieve_workflow(cls, workflow_id: str, existing_workflow: bool = True) -> WorkflowHandle[Any]:
        return start.retrieve_workflow(workflow_id, existing_workflow)

    @classmethod
    async def retrieve_workflow_async(
        cls, workflow_id: str, existing_workflow: bool = True
    ) -> WorkflowHandleAsync[Any]:
        return await start.retrieve_workflow_async(workflow_id, existing_workflow)

    @classmethod
    def get_result(cls, workflow_id: str) -> Any:
        return start.get_result(workflow_id)

    @classmethod
    async def get_result_async(cls, workflow_id: str) -> Any:
        return await start.get_result_async(workflow_id)

    @classmethod
    def get_workflow_status(cls, workflow_id: str) -> Optional[WorkflowStatus]:
        return workflow_status(get_engine("DBOS.get_workflow_status()"), workflow_id)

    @classmethod
    async def get_workflow_status_async(cls, workflow_id: str) -> Optional[WorkflowStatus]:
        engine = get_engine("DBOS.get_workflow_status_async()")
        return await introspection.workflow_status_async(engine, workflow_id)

    @classmethod
    def wait_first(
        cls, handles: List[WorkflowHandle[Any]], *, polling_interval_sec: float = 1.0
    ) -> WorkflowHandle[Any]:
        winner: WorkflowHandle[Any] = start.wait_first(handles, polling_interval_sec)
        return winner

    @classmethod
    async def wait_first_async(
        cls, handles: List[WorkflowHandleAsync[Any]], *, polling_interval_sec: float = 1.0
    ) -> WorkflowHandleAsync[Any]:
        winner: WorkflowHandleAsync[Any] = await start.wait_first_async(handles, polling_interval_sec)
        return winner

    # ------------------------------------------------------------------
    # Messages, events, streams, sleep
    # ------------------------------------------------------------------

    @classmethod
    def send(cls, destination_id: str, message: Any, topic: Optional[str] = None, *,
             idempotency_key: Optional[str] = None) -> None:
        engine = get_engine("DBOS.send()")
        reserved = comm.reserve_step(comm.SEND)
        note = comm.SendMessage(destination_id, message, topic, idempotency_key)
        comm.send(engine, reserved, [note], comm.SEND)

    @classmethod
    async def send_async(cls, destination_id: str, message: Any, topic: Optional[str] = None, *,
                         idempotency_key: Optional[str] = None) -> None:
        engine = get_engine("DBOS.send_async()")
        reserved = comm.reserve_step(comm.SEND)
        note = comm.SendMessage(destination_id, message, topic, idempotency_key)
        await engine.in_pool(comm.send, engine, reserved, [note], comm.SEND)

    @classmethod
    def send_bulk(cls, messages: List[SendMessage]) -> None:
        engine = get_engine("DBOS.send_bulk()")
        comm.send(engine, comm.reserve_step(comm.SEND_BULK), list(messages), comm.SEND_BULK)

    @classmethod
    async def send_bulk_async(cls, messages: List[SendMessage]) -> None:
        engine = get_engine("DBOS.send_bulk_async()")
        reserved = comm.reserve_step(comm.SEND_BULK)
        await engine.in_pool(comm.send, engine, reserved, list(messages), comm.SEND_BULK)

    @classmethod
    def recv(cls, topic: Optional[str] = None, timeout_seconds: float = 60) -> Any:
        engine = get_engine("DBOS.recv()")
        return comm.recv(engine, comm.reserve_recv(), topic, timeout_seconds)

    @classmethod
    async def recv_async(cls, topic: Optional[str] = None, timeout_seconds: float = 60) -> Any:
        engine = get_engine("DBOS.recv_async()")
        return await engine.in_pool(comm.recv, engine, comm.reserve_recv(), topic, timeout_seconds)

    @classmethod
    def set_event(cls, key: str, value: Any) -> None:
        comm.set_event(get_engine("DBOS.set_event()"), key, value)

    @classmethod
    async def set_event_async(cls, key: str, value: Any) -> None:
        engine = get_engine("DBOS.set_event_async()")
        await engine.in_pool(comm.set_event, engine, key, value)

    @classmethod
    def get_event(cls, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        engine = get_engine("DBOS.get_event()")
        return comm.get_event(engine, comm.reserve_get_event(), workflow_id, key, timeout_seconds)

    @classmethod
    async def get_event_async(cls, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        engine = get_engine("DBOS.get_event_async()")
        reserved = comm.reserve_get_event()
        return await engine.in_pool(comm.get_event, engine, reserved, workflow_id, key, timeout_seconds)

    @classmethod
    def get_all_events(cls, workflow_id: str) -> Dict[str, Any]:
        engine = get_engine("DBOS.get_all_events()")
        return comm.get_all_events(engine, comm.reserve_step(comm.GET_EVENTS), workflow_id)

    @classmethod
    async def get_all_events_async(cls, workflow_id: str) -> Dict[str, Any]:
        engine = get_engine("DBOS.get_all_events_async()")
        reserved = comm.reserve_step(comm.GET_EVENTS)
        return await engine.in_pool(comm.get_all_events, engine, reserved, workflow_id)

    @classmethod
    def sleep(cls, seconds: float) -> None:
        reserved = comm.reserve_sleep(seconds)
        if reserved is not None:
            comm.sleep(get_engine("DBOS.sleep()"), reserved, seconds)

    @classmethod
    async def sleep_async(cls, seconds: float) -> None:
        reserved = comm.reserve_sleep(seconds)
        if reserved is not None:
            engine = get_engine("DBOS.sleep_async()")
            await engine.in_pool(comm.sleep, engine, reserved, seconds)

    @classmethod
    def write_stream(cls, key: str, value: Any) -> None:
        streams.write_stream(get_engine("DBOS.write_stream()"), key, value)

    @classmethod
    async def write_stream_async(cls, key: str, value: Any) -> None:
        engine = get_engine("DBOS.write_stream_async()")
        await engine.in_pool(streams.write_stream, engine, key, value)

    @classmethod
    def close_stream(cls, key: str) -> None:
        streams.close_stream(get_engine("DBOS.close_stream()"), key)

    @classmethod
    async def close_stream_async(cls, key: str) -> None:
        engine = get_engine("DBOS.close_stream_async()")
        await engine.in_pool(streams.close_stream, engine, key)

    @classmethod
    def read_stream(cls, workflow_id: str, key: str, *, offset: int = 0,
                    polling_interval_sec: Optional[float] = None,
                    timeout_seconds: Optional[float] = None) -> Generator[Any, None, None]:
        _check_polling_interval(polling_interval_sec)
        engine = get_engine("DBOS.read_stream()")
        return streams.read_stream(engine, workflow_id, key, offset, timeout_seconds)

    @classmethod
    async def read_stream_async(cls, workflow_id: str, key: str, *, offset: int = 0,
                                polling_interval_sec: Optional[float] = None,
                                timeout_seconds: Optional[float] = None) -> AsyncGenerator[Any, None]:
        _check_polling_interval(polling_interval_sec)
        engine = get_engine("DBOS.read_stream_async()")
        values = streams.read_stream(engine, workflow_id, key, offset, timeout_seconds)
        done = object()
        while True:
            value = await engine.in_pool(next, values, done)
            if value is done:
                return
            yield value

    # ------------------------------------------------------------------
    # Queues and schedules
    # ------------------------------------------------------------------

    @classmethod
    def scheduled(cls, cron: str) -> Callable[[F], F]:
        """Run the workflow below at every tick of ``cron`` (5 fields, or 6 with seconds)."""
        return scheduled(cron)

    @classmethod
    def listen_queues(cls, queues: List[Any]) -> None:
        """Serve only these queues in this process (call before launch)."""
        inst = _instance
        if inst is None or not inst._initialized or inst._launched:
            raise DBOSException("DBOS.listen_queues() must be called after DBOS() and before DBOS.launch()")
        if inst._listen_queues is not None:
            raise DBOSException("DBOS.listen_queues() was already called")
        inst._listen_queues = {q if isinstance(q, str) else q.name for q in queues} | {INTERNAL_QUEUE}

    @classmethod
    def register_queue(
        cls, name: str, *, concurrency: Optional[int] = None, worker_concurrency: Optional[int] = None,
        limiter: Optional[QueueRateLimit] = None, priority_enabled: bool = False,
        partition_queue: bool = False, polling_interval_sec: float = 1.0,
        on_conflict: str = "update_if_latest_version",
    ) -> Queue:
        """A queue kept in the database: every process reads its limits from there."""
        engine = get_engine("DBOS.register_queue()")
        config = QueueConfig(concurrency, worker_concurrency, limiter, priority_enabled,
                             partition_queue, polling_interval_sec)
        validate(name, config)
        engine.sysdb.queues.save_queue(_queue_fields(name, config, engine), on_conflict != "never_update")
        queue = Queue(name, _database_backed=True)
        if engine.queue_workers is not None:
            engine.queue_workers.serve(queue)
        return queue

    @classmethod
    def retrieve_queue(cls, name: str) -> Optional[Queue]:
        engine = get_engine("DBOS.retrieve_queue()")
        return Queue(name, _database_backed=True) if engine.sysdb.queues.get_queue(name) else None

    @classmethod
    def list_queues(cls) -> List[Queue]:
        engine = get_engine("DBOS.list_queues()")
        return [Queue(r["name"], _database_backed=True) for r in engine.sysdb.queues.list_queues()]

    @classmethod
    def delete_queue(cls, name: str) -> None:
        get_engine("DBOS.delete_queue()").sysdb.queues.delete_queue(name)

    @classmethod
    def enqueue_workflow(cls, queue_name: str, func: Callable[..., Any], *args: Any,
                         **kwargs: Any) -> WorkflowHandle[Any]:
        """Enqueue by queue name; the queue need not be declared in this process."""
        engine = get_engine("DBOS.enqueue_workflow()")
        queue = queue_named(engine, queue_name)
        return WorkflowHandle(enqueue(engine, queue, func, args, kwargs).workflow_id)

    # ------------------------------------------------------------------
    # The running context
    # ------------------------------------------------------------------

    @classproperty
    def app_datasource(cls) -> Any:
        """The application database's datasource (``.database`` for Peewee)."""
        engine = get_engine("DBOS.app_datasource")
        if engine.datasource is None:
            raise DBOSException(
                "No application database: set application_database_url or "
                "application_datasource in the configuration"
            )
        return engine.datasource

    @classproperty
    def workflow_id(cls) -> Optional[str]:
        ctx = get_context()
        return ctx.run.workflow_id if ctx is not None and ctx.run is not None else None

    @classproperty
    def step_id(cls) -> Optional[int]:
        ctx = get_context()
        return ctx.step_id if ctx is not None else None

    @classproperty
    def step_status(cls) -> Optional[StepStatus]:
        ctx = get_context()
        return ctx.step_status if ctx is not None else None

    @classproperty
    def sql_session(cls) -> Any:
        """The session of the running transaction (a Peewee database, a DB-API connection...)."""
        ctx = get_context()
        if ctx is None or not ctx.in_transaction:
            raise AssertionError("DBOS.sql_session is only available inside a @DBOS.transaction()")
        return ctx.sql_session

    @classproperty
    def authenticated_user(cls) -> Optional[str]:
        return _require_context("DBOS.authenticated_user").authenticated_user

    @classproperty
    def authenticated_roles(cls) -> Optional[List[str]]:
        return _require_context("DBOS.authenticated_roles").authenticated_roles

    @classproperty
    def assumed_role(cls) -> Optional[str]:
        return _require_context("DBOS.assumed_role").assumed_role

    @classmethod
    def set_authentication(cls, authenticated_user: Optional[str],
                           authenticated_roles: Optional[List[str]]) -> None:
        ctx = _require_context("DBOS.set_authentication()")
        ctx.authenticated_user = authenticated_user
        ctx.authenticated_roles = authenticated_roles


def _check_polling_interval(value: Optional[float]) -> None:
    # Waiters are woken by writers and the listener; the interval only bounds
    # how long a missed wake-up can go unnoticed, and must be sane.
    if value is not None and not (math.isfinite(value) and value >= 0.001):
        raise ValueError(f"polling_interval_sec must be a finite number >= 0.001, got {value!r}")


def _require_context(what: str) -> DBOSContext:
    ctx = get_context()
    if ctx is None:
        raise AssertionError(
            f"{what} needs a DBOS context: use it inside a workflow, step or "
            "transaction, or in a `with DBOSContextEnsure():` block"
        )
    return ctx


# Queued workflows a process runs at once unless max_executor_threads says.
# One thread each: 48 leaves room under 64 threads in all for the engine's
# own (event loop, deadlines, queue manager and one worker per queue,
# listener, recovery, scheduler, admin server) and the application's.
DEFAULT_DISPATCH_BUDGET = 48


def _queue_fields(name: str, config: QueueConfig, engine: Engine) -> Dict[str, Any]:
    limiter = config.limiter
    return {
        "name": name,
        "concurrency": config.concurrency,
        "worker_concurrency": config.worker_concurrency,
        "rate_limit_max": limiter["limit"] if limiter else None,
        "rate_limit_period_sec": limiter["period"] if limiter else None,
        "priority_enabled": config.priority_enabled,
        "partition_queue": config.partition_queue,
        "polling_interval_sec": config.polling_interval_sec,
        "application_name": engine.identity.app_name,
    }


def is_initialized() -> bool:
    return _instance is not None and _instance._initialized


def _build_engine(sysdb: SystemDatabase, settings: Settings) -> Engine:
    url = settings.application_database_url
    datasource, owned = datasource_from_config(settings.application_datasource,
                                               url.render() if url is not None else None)
    if datasource is not None:
        datasource.ensure_schema()
    identity = Identity(settings.name, GlobalParams.app_version, GlobalParams.executor_id)
    return Engine(sysdb, Codec(settings.serializer), identity,
                  settings.max_executor_threads, datasource, owned,
                  poll_interval=settings.notification_listener_polling_interval_sec,
                  listen=settings.use_listen_notify)


def _open_admin_server(engine: Engine, settings: Settings) -> Optional[AdminServer]:
    if not settings.run_admin_server:
        return None
    return AdminServer(engine, settings.admin_host, settings.admin_port)


def _recover_quietly(engine: Engine, workflow_ids: List[str]) -> None:
    try:
        recover_pending(engine, workflow_ids)
    except Exception:
        dbos_logger.error("Recovery of pending workflows failed", exc_info=True)


def _forget_instance(inst: Optional[DBOS]) -> None:
    global _instance
    if _instance is inst:
        _instance = None


def _open_system_database(settings: Settings) -> SystemDatabase:
    return SystemDatabase(
        settings.system_database_url,
        schema=settings.system_schema,
        pool_size=settings.sys_db_pool_size,
        pool_timeout=settings.pool_timeout,
        connect_args=settings.connect_args,
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
