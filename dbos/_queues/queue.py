"""Queues: workflows run in the background under flow control.

A ``Queue`` is declared in code (the same in every process) or registered in
the database with ``DBOS.register_queue`` (read back on every poll, so a
change applies without a restart). ``enqueue`` writes an ENQUEUED row and
returns at once; queue workers in any process sharing the system database
claim and run it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

from .._engine.context import ContextChange, DBOSContext, get_context
from .._engine.deadline import TIMEOUT_KEY
from .._engine.engine import Engine, get_engine
from .._engine.handles import WorkflowHandle, WorkflowHandleAsync
from .._engine.launch import Launch, check_same_function, prepare, record_refusal
from .._engine.registry import get_registry, resolve
from .._sysdb.outage import new_work
from ..error import DBOSException, DBOSQueueDeduplicatedError
from .dedup import DuplicationPolicy as DuplicationPolicy
from .dedup import check_policy, insert_enqueued
from .limits import QueueConfig as QueueConfig
from .limits import QueueRateLimit as QueueRateLimit
from .limits import check_name, check_on_conflict, registration, row_fields
from .limits import config_from_row as config_from_row
from .settings import QueueSettings, QueueStore

logger = logging.getLogger("dbos")

INTERNAL_QUEUE = "_dbos_internal_queue"
ENQUEUE_KEY = "enqueue_options"
MAX_PRIORITY = 2**31 - 1


class Intake(Protocol):
    """Where this process runs queued work: its queue workers (``worker.py``)."""

    def serve(self, queue: "Queue") -> None:
        """Start a worker for ``queue`` unless one runs."""

    def wake(self, queue_name: str) -> None:
        """Let the worker of ``queue_name`` look now rather than at its next poll."""

    def admit(self, queue_name: str) -> Optional["Admission"]:
        """A slot to run a job enqueued here at once, if the queue's worker
        here has one free, nothing waits before it, and no limit is shared
        with other processes; None otherwise."""


class Admission(Protocol):
    """A slot a worker reserved for one job enqueued in this process."""

    def start(self, row: Dict[str, Any]) -> None:
        """The job's row is written, claimed by this executor: run it."""

    def cancel(self) -> None:
        """The job was not written (or another row stood there): free the slot."""


# The launched process's intake; None before launch and after destroy.
_intake: Optional[Intake] = None


def set_intake(intake: Intake) -> None:
    global _intake
    _intake = intake


def clear_intake(intake: Intake) -> None:
    """``intake`` stopped: forget it, unless a newer launch's replaced it already."""
    global _intake
    if _intake is intake:
        _intake = None


def current_intake() -> Optional[Intake]:
    """This process's queue workers, from launch until DBOS is destroyed."""
    return _intake


def serve(queue: "Queue") -> None:
    """Serve ``queue`` in this process, if it is launched."""
    if _intake is not None:
        _intake.serve(queue)


def work_arrived(queue_name: str) -> None:
    """This process put work on ``queue_name``: its worker here looks now."""
    if _intake is not None:
        _intake.wake(queue_name)


class Queue(QueueSettings):
    """A queue of workflows, run in the background under its limits.

    Declared in code (the same in every process), it is registered here by
    name. ``database_backed_queue`` (made by ``register_queue``,
    ``retrieve_queue`` and ``list_queues``) reads its limits from its row on
    every access; with ``client_system_database`` it belongs to a
    ``DBOSClient``: readable and settable, but it cannot enqueue.
    """

    def __init__(
        self,
        name: str,
        concurrency: Optional[int] = None,
        limiter: Optional[QueueRateLimit] = None,
        *,
        worker_concurrency: Optional[int] = None,
        global_concurrency: Optional[int] = None,
        partition_concurrency: Optional[int] = None,
        partition_worker_concurrency: Optional[int] = None,
        partition_limiter: Optional[QueueRateLimit] = None,
        polling_interval_sec: float = 1.0,
        database_backed_queue: bool = False,
        client_system_database: Optional[QueueStore] = None,
        application_name: Optional[str] = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
        _internal: bool = False,
    ) -> None:
        self.name = name
        self.database_backed = database_backed_queue
        self._store = client_system_database
        self._owner = application_name
        self._config = QueueConfig()
        if not database_backed_queue:
            self._config = registration(
                concurrency=concurrency, global_concurrency=global_concurrency,
                worker_concurrency=worker_concurrency, limiter=limiter,
                partition_concurrency=partition_concurrency,
                partition_worker_concurrency=partition_worker_concurrency,
                partition_limiter=partition_limiter, priority_enabled=priority_enabled,
                partition_queue=partition_queue, polling_interval_sec=polling_interval_sec)
        if not (database_backed_queue or _internal):
            get_registry().register_queue(name, self)
            # Declared after launch: served from now on, like one declared before.
            serve(self)

    @property
    def database_backed_queue(self) -> bool:
        """Whether the queue's limits live in the database (``register_queue``)."""
        return self.database_backed

    def _require_dbos_bound(self) -> None:
        if self._store is not None:
            raise DBOSException(f"Cannot enqueue on queue {self.name} from a queue of a DBOSClient; "
                                "use DBOSClient.enqueue instead")

    def enqueue(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        """Start ``func(*args, **kwargs)`` in the background; a worker of any process runs it."""
        self._require_dbos_bound()
        engine = get_engine(f"Queue {self.name}.enqueue()")
        launch = prepare_enqueue(engine, self, func, args, kwargs)
        with new_work(launch.link is None):  # an enqueue from outside a workflow may give up during an outage
            write_enqueued(engine, self, launch, current_options().duplication_policy)
        return WorkflowHandle(launch.workflow_id)

    async def enqueue_async(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> WorkflowHandleAsync[Any]:
        """``enqueue`` for async code."""
        self._require_dbos_bound()
        engine = get_engine(f"Queue {self.name}.enqueue_async()")
        launch = prepare_enqueue(engine, self, func, args, kwargs)
        policy = current_options().duplication_policy
        with new_work(launch.link is None):
            await engine.in_pool(write_enqueued, engine, self, launch, policy)
        return WorkflowHandleAsync(launch.workflow_id)

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"


# Where DBOS itself enqueues (schedules, resumed and forked workflows).
INTERNAL = Queue(INTERNAL_QUEUE, _internal=True)


# ----------------------------------------------------------------------
# Enqueue options
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class EnqueueSettings:
    deduplication_id: Optional[str] = None
    priority: Optional[int] = None
    app_version: Optional[str] = None
    queue_partition_key: Optional[str] = None
    delay_seconds: Optional[float] = None
    duplication_policy: Optional[DuplicationPolicy] = None


class SetEnqueueOptions(ContextChange):
    """Options for the workflows enqueued in this block (not inherited by children).

    ``duplication_policy``: when ``deduplication_id`` is held on the queue,
    "reject" (the default) raises ``DBOSQueueDeduplicatedError`` and
    "return-existing" returns a handle to the workflow holding it.
    """

    def __init__(self, *, deduplication_id: Optional[str] = None, priority: Optional[int] = None,
                 app_version: Optional[str] = None, queue_partition_key: Optional[str] = None,
                 delay_seconds: Optional[float] = None,
                 duplication_policy: Optional[DuplicationPolicy] = None) -> None:
        if priority is not None and not (isinstance(priority, int) and 1 <= priority <= MAX_PRIORITY):
            raise DBOSException(f"priority must be an integer from 1 to {MAX_PRIORITY}, got {priority!r}")
        if delay_seconds is not None and not (math.isfinite(delay_seconds) and delay_seconds >= 0):
            raise DBOSException(f"delay_seconds must be a non-negative number, got {delay_seconds!r}")
        check_policy(duplication_policy, deduplication_id)
        # The delay runs from each enqueue in the block, not from entering it.
        self.options = EnqueueSettings(deduplication_id, priority, app_version, queue_partition_key,
                                      delay_seconds or None, duplication_policy)

    def _change(self, ctx: DBOSContext) -> None:
        ctx.extras = {**ctx.extras, ENQUEUE_KEY: self.options}

    def __enter__(self) -> "SetEnqueueOptions":
        super().__enter__()
        return self


def current_options() -> EnqueueSettings:
    ctx = get_context()
    options = ctx.extras.get(ENQUEUE_KEY) if ctx is not None else None
    return options if isinstance(options, EnqueueSettings) else EnqueueSettings()


# ----------------------------------------------------------------------
# Enqueueing
# ----------------------------------------------------------------------


def prepare_enqueue(engine: Engine, queue: Queue, func: Callable[..., Any], args: Tuple[Any, ...],
                    kwargs: Dict[str, Any]) -> Launch:
    options = current_options()
    _check_partition(queue, options)
    explicit_timeout = (get_context() or DBOSContext()).extras.get(TIMEOUT_KEY)
    info, bound = resolve(func)
    launch = prepare(engine, info, bound + args, kwargs, direct=False)
    delay_until = None
    if options.delay_seconds:
        delay_until = launch.row["created_at"] + int(options.delay_seconds * 1000)
    launch.row.update(
        status="DELAYED" if delay_until is not None else "ENQUEUED",
        queue_name=queue.name,
        priority=options.priority or 0,
        deduplication_id=options.deduplication_id,
        queue_partition_key=options.queue_partition_key,
        delay_until_epoch_ms=delay_until,
        recovery_attempts=0,
    )
    if options.app_version:
        launch.row["application_version"] = options.app_version
    if explicit_timeout is not None:
        # A queued workflow's timeout runs from when it is claimed, not enqueued.
        launch.row["workflow_deadline_epoch_ms"] = None
    return launch


def _check_partition(queue: Queue, options: EnqueueSettings) -> None:
    if options.queue_partition_key is not None and options.deduplication_id is not None:
        raise DBOSException("Deduplication is not supported for partitioned queues")
    if queue.database_backed:
        return  # its row may change any time: not worth a read on every enqueue
    partitioned = queue.partition_queue
    if partitioned and options.queue_partition_key is None:
        raise DBOSException(f"Queue {queue.name} is partitioned: set queue_partition_key with SetEnqueueOptions")
    if not partitioned and options.queue_partition_key is not None:
        raise DBOSException(f"Queue {queue.name} is not partitioned, but a queue_partition_key was given")
    if partitioned and options.deduplication_id is not None:
        raise DBOSException("Deduplication is not supported for partitioned queues")


def write_enqueued(engine: Engine, queue: Queue, launch: Launch,
                   policy: Optional[DuplicationPolicy] = None) -> None:
    """Write the row; under "return-existing" a held deduplication ID makes
    ``launch`` the holder's (its ``workflow_id`` changes). A refusal is
    checkpointed in the parent, so its replay is refused alike. Where this
    process's worker admits it, the row is written claimed, and runs at once."""
    admission = _admit(engine, queue, launch.row)
    try:
        launch.workflow_id, found = insert_enqueued(engine.sysdb, launch.row, launch.link, policy)
    except BaseException as exc:
        if admission is not None:
            admission.cancel()
        if isinstance(exc, DBOSQueueDeduplicatedError):
            record_refusal(engine, launch.link, exc)
        raise
    created = found is not None and found.created
    if found is not None and not found.created:
        check_same_function(launch, found)
    if admission is None:
        work_arrived(queue.name)
    elif created:
        admission.start(launch.row)
    else:
        admission.cancel()


def _admit(engine: Engine, queue: Queue, row: Dict[str, Any]) -> Optional[Admission]:
    """A slot to start the enqueued ``row`` here at once, which then is written
    claimed, as a worker's claim leaves it: PENDING, started now."""
    if (_intake is None or row["status"] != "ENQUEUED" or row.get("queue_partition_key") is not None
            or row["application_version"] != engine.identity.app_version):
        return None
    admission = _intake.admit(queue.name)
    if admission is not None:
        stamp = row["created_at"]
        row.update(status="PENDING", started_at_epoch_ms=stamp, recovery_attempts=1)
        if row["workflow_deadline_epoch_ms"] is None and row["workflow_timeout_ms"] is not None:
            row["workflow_deadline_epoch_ms"] = stamp + row["workflow_timeout_ms"]
    return admission


def queue_named(name: str) -> Queue:
    """The queue to enqueue on by name: declared in this process, else one kept
    in the database, or not registered yet (its workflows wait until it is);
    not read here, so an enqueue costs no extra round trip."""
    declared = get_registry().queues.get(name)
    if isinstance(declared, Queue):
        return declared
    return Queue(check_name(name), database_backed_queue=True)


def registered_queue(engine: Engine, name: str) -> Optional[Queue]:
    """The queue registered in the database as ``name``, if there is one."""
    row = engine.sysdb.get_queue(name)
    return queue_from_row(row) if row is not None else None


def registered_queues(engine: Engine, owners: Optional[List[str]] = None) -> List[Queue]:
    """The queues registered in the database (default: this application's and
    the unclaimed), by name."""
    names = owners if owners is not None else [engine.identity.app_name]
    return [queue_from_row(row) for row in engine.sysdb.list_queues(names)]


def queue_from_row(row: Dict[str, Any], store: Optional[QueueStore] = None) -> Queue:
    """A queue kept in the database, as its row shows it now."""
    queue = Queue(str(row["name"]), database_backed_queue=True, client_system_database=store,
                  application_name=row.get("application_name"))
    queue._config = config_from_row(row)
    return queue


def enqueue(engine: Engine, queue: Queue, func: Callable[..., Any], args: Tuple[Any, ...],
            kwargs: Dict[str, Any]) -> Launch:
    launch = prepare_enqueue(engine, queue, func, args, kwargs)
    write_enqueued(engine, queue, launch, current_options().duplication_policy)
    return launch


def register_queue(engine: Engine, name: str, on_conflict: str, settings: Dict[str, Any]) -> Queue:
    """A queue kept in the database, served here at once: every process reads
    its limits from there on each poll. ``settings``: ``registration``'s arguments."""
    check_name(name)
    check_on_conflict(on_conflict)
    config = registration(**settings)
    update = on_conflict == "always_update" or (
        on_conflict == "update_if_latest_version" and engine.sysdb.is_latest_version(engine.identity.app_version))
    inserted = engine.sysdb.save_queue({"name": name, **row_fields(config)}, update, engine.identity.app_name)
    queue = registered_queue(engine, name)
    if queue is None:
        raise DBOSException(f"Queue {name} was deleted while it was being registered")
    if inserted:
        logger.info(f"Registered new queue {name}: {queue.config()}")
    serve(queue)
    return queue
