"""Queues: workflows run in the background under flow control.

A ``Queue`` is declared in code (the same in every process) or registered in
the database with ``DBOS.register_queue`` (read back on every poll, so a
change applies without a restart). ``enqueue`` writes an ENQUEUED row and
returns at once; queue workers in any process sharing the system database
claim and run it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple, TypedDict

from .._engine.context import ContextChange, DBOSContext, get_context
from .._engine.deadline import TIMEOUT_KEY
from .._engine.engine import Engine, get_engine
from .._engine.handles import WorkflowHandle, WorkflowHandleAsync
from .._engine.launch import Launch, check_same_function, prepare
from .._engine.registry import get_registry, resolve
from ..error import DBOSException

INTERNAL_QUEUE = "_dbos_internal_queue"
ENQUEUE_KEY = "enqueue_options"
MAX_PRIORITY = 2**31 - 1


class Intake(Protocol):
    """Where this process runs queued work: its queue workers (``worker.py``)."""

    def serve(self, queue: "Queue") -> None:
        """Start a worker for ``queue`` unless one runs."""

    def wake(self, queue_name: str) -> None:
        """Let the worker of ``queue_name`` look now rather than at its next poll."""


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


class QueueRateLimit(TypedDict):
    limit: int
    period: float


@dataclass(frozen=True)
class QueueConfig:
    """A queue's limits as the workers apply them."""

    concurrency: Optional[int] = None
    worker_concurrency: Optional[int] = None
    limiter: Optional[QueueRateLimit] = None
    priority_enabled: bool = False
    partition_queue: bool = False
    polling_interval_sec: float = 1.0


def validate(name: str, config: QueueConfig) -> None:
    def positive(value: Optional[int], what: str) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"Queue {name}: {what} must be a positive integer, got {value!r}")

    positive(config.concurrency, "concurrency")
    positive(config.worker_concurrency, "worker_concurrency")
    if config.concurrency and config.worker_concurrency and config.worker_concurrency > config.concurrency:
        raise ValueError(f"Queue {name}: worker_concurrency ({config.worker_concurrency}) "
                         f"cannot exceed concurrency ({config.concurrency})")
    if config.limiter is not None and not (
        isinstance(config.limiter.get("limit"), int) and config.limiter["limit"] > 0
        and float(config.limiter.get("period", 0)) > 0
    ):
        raise ValueError(f"Queue {name}: limiter needs a positive 'limit' and 'period', got {config.limiter!r}")
    if not (math.isfinite(config.polling_interval_sec) and config.polling_interval_sec > 0):
        raise ValueError(f"Queue {name}: polling_interval_sec must be positive, got {config.polling_interval_sec!r}")


class Queue:
    def __init__(
        self,
        name: str,
        concurrency: Optional[int] = None,
        limiter: Optional[QueueRateLimit] = None,
        *,
        worker_concurrency: Optional[int] = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
        polling_interval_sec: float = 1.0,
        _database_backed: bool = False,
        _internal: bool = False,
    ) -> None:
        self.name = name
        self._config = QueueConfig(concurrency, worker_concurrency, limiter, priority_enabled,
                                   partition_queue, polling_interval_sec)
        validate(name, self._config)
        self.database_backed = _database_backed
        if not (_database_backed or _internal):
            get_registry().register_queue(name, self)
            # Declared after launch: served from now on, like one declared before.
            serve(self)

    def config(self) -> QueueConfig:
        """The limits in force now (re-read from the database for registered queues)."""
        return self.current_config() or self._config

    def current_config(self) -> Optional[QueueConfig]:
        """The limits in force now; None when a registered queue's row was deleted."""
        if not self.database_backed:
            return self._config
        row = get_engine("A registered queue").sysdb.get_queue(self.name)
        return config_from_row(row) if row else None

    @property
    def concurrency(self) -> Optional[int]:
        return self.config().concurrency

    @property
    def worker_concurrency(self) -> Optional[int]:
        return self.config().worker_concurrency

    @property
    def limiter(self) -> Optional[QueueRateLimit]:
        return self.config().limiter

    @property
    def priority_enabled(self) -> bool:
        return self.config().priority_enabled

    @property
    def partition_queue(self) -> bool:
        return self.config().partition_queue

    @property
    def polling_interval_sec(self) -> float:
        return self.config().polling_interval_sec

    def enqueue(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        launch = enqueue(get_engine(f"Queue {self.name}.enqueue()"), self, func, args, kwargs)
        return WorkflowHandle(launch.workflow_id)

    async def enqueue_async(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> WorkflowHandleAsync[Any]:
        engine = get_engine(f"Queue {self.name}.enqueue_async()")
        launch = prepare_enqueue(engine, self, func, args, kwargs)
        await engine.in_pool(write_enqueued, engine, self, launch)
        return WorkflowHandleAsync(launch.workflow_id)

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"


# Where DBOS itself enqueues (schedules, resumed and forked workflows).
INTERNAL = Queue(INTERNAL_QUEUE, _internal=True)


def config_from_row(row: Dict[str, Any]) -> QueueConfig:
    limiter: Optional[QueueRateLimit] = None
    if row.get("rate_limit_max") is not None:
        limiter = QueueRateLimit(limit=int(row["rate_limit_max"]), period=float(row["rate_limit_period_sec"]))
    return QueueConfig(row.get("concurrency"), row.get("worker_concurrency"), limiter,
                       bool(row.get("priority_enabled")), bool(row.get("partition_queue")),
                       float(row.get("polling_interval_sec") or 1.0))


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


class SetEnqueueOptions(ContextChange):
    """Options for the workflows enqueued in this block (not inherited by children)."""

    def __init__(self, *, deduplication_id: Optional[str] = None, priority: Optional[int] = None,
                 app_version: Optional[str] = None, queue_partition_key: Optional[str] = None,
                 delay_seconds: Optional[float] = None) -> None:
        if priority is not None and not (isinstance(priority, int) and 1 <= priority <= MAX_PRIORITY):
            raise DBOSException(f"priority must be an integer from 1 to {MAX_PRIORITY}, got {priority!r}")
        if delay_seconds is not None and not (math.isfinite(delay_seconds) and delay_seconds >= 0):
            raise DBOSException(f"delay_seconds must be a non-negative number, got {delay_seconds!r}")
        # The delay runs from each enqueue in the block, not from entering it.
        self.options = EnqueueSettings(deduplication_id, priority, app_version, queue_partition_key,
                                      delay_seconds or None)

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
    partitioned = queue.partition_queue
    if partitioned and options.queue_partition_key is None:
        raise DBOSException(f"Queue {queue.name} is partitioned: set queue_partition_key with SetEnqueueOptions")
    if not partitioned and options.queue_partition_key is not None:
        raise DBOSException(f"Queue {queue.name} is not partitioned, but a queue_partition_key was given")
    if partitioned and options.deduplication_id is not None:
        raise DBOSException("Deduplication is not supported for partitioned queues")


def write_enqueued(engine: Engine, queue: Queue, launch: Launch) -> None:
    found = engine.sysdb.start_workflow(launch.row, launch.link)
    if not found.created:
        check_same_function(launch, found)
    work_arrived(queue.name)


def queue_named(engine: Engine, name: str) -> Queue:
    """The queue to enqueue on by name: declared in this process, registered in
    the database, or (legal too) one that nobody has declared yet."""
    declared = get_registry().queues.get(name)
    if isinstance(declared, Queue):
        return declared
    registered = registered_queue(engine, name)
    return registered if registered is not None else Queue(name, _internal=True)


def registered_queue(engine: Engine, name: str) -> Optional[Queue]:
    """The queue registered in the database as ``name``, if there is one."""
    return Queue(name, _database_backed=True) if engine.sysdb.get_queue(name) is not None else None


def registered_queues(engine: Engine) -> List[Queue]:
    """Every queue registered in the database, by name."""
    return [Queue(row["name"], _database_backed=True) for row in engine.sysdb.list_queues()]


def enqueue(engine: Engine, queue: Queue, func: Callable[..., Any], args: Tuple[Any, ...],
            kwargs: Dict[str, Any]) -> Launch:
    launch = prepare_enqueue(engine, queue, func, args, kwargs)
    write_enqueued(engine, queue, launch)
    return launch


def register_queue(engine: Engine, name: str, config: QueueConfig, update: bool) -> Queue:
    """A queue kept in the database, served here at once: every process reads
    its limits from there on each poll. ``update``: replace the limits of a
    queue already registered."""
    validate(name, config)
    limiter = config.limiter
    engine.sysdb.save_queue({
        "name": name,
        "concurrency": config.concurrency,
        "worker_concurrency": config.worker_concurrency,
        "rate_limit_max": limiter["limit"] if limiter else None,
        "rate_limit_period_sec": limiter["period"] if limiter else None,
        "priority_enabled": config.priority_enabled,
        "partition_queue": config.partition_queue,
        "polling_interval_sec": config.polling_interval_sec,
        "application_name": engine.identity.app_name,
    }, update)
    queue = Queue(name, _database_backed=True)
    serve(queue)
    return queue
