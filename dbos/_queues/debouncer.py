"""The debouncer: many calls with one key, within a period, run the workflow once.

There is no coordinating workflow. A debounced workflow is an ordinary
queued one, DELAYED, marked ``is_debounced``, holding the deduplication ID
``<workflow name>-<key>`` on its queue. Each call first tries to bounce it
(``Storage.bounce_debounced``): push its delay to ``now + period`` (never past
``debounce_timeout_sec`` after the first call) and give it the call's
arguments, so the last call's arguments are those it runs with. If no
workflow holds the key, the call enqueues a fresh one; if another call got
there first, the deduplication refuses it and the call bounces that one.
When the delay runs out, the queue worker makes the workflow ENQUEUED and
frees the key in the same statement: the next call starts a new cycle.

Application versions (DBOS Transact's issue #702): a bounce also gives the
workflow the caller's application version, so the workflow runs on the
version whose code made its last arguments, and the key is freed when the
delay expires whatever the version, so no key stays held by a workflow
nobody will run, and no call ever waits on one.

Inside a workflow the bounce is the operation ``DBOS.debounce_delayed_workflow``
(its result checkpointed in the bounce's transaction) and a fresh enqueue
is a child; a refused enqueue is checkpointed as the child's error.
"""

from __future__ import annotations

import math
import types
from typing import Any, Callable, Coroutine, Dict, Generic, Optional, ParamSpec, Tuple, TypeVar, Union

from .._clock import now_ms
from .._engine.context import ContextChange, DBOSContext, current_run, take_next_workflow_id
from .._engine.engine import Engine, get_engine
from .._engine.handles import WorkflowHandle, WorkflowHandleAsync
from .._engine.launch import stored_format
from .._engine.operation import Operation
from .._engine.registry import FunctionInfo, resolve
from .._sysdb.records import Bounce, BounceRequest
from ..error import DBOSException, DBOSInvalidArgumentError, DBOSQueueDeduplicatedError
from .queue import (
    ENQUEUE_KEY,
    INTERNAL,
    EnqueueSettings,
    Queue,
    current_options,
    prepare_enqueue,
    queue_named,
    write_enqueued,
)

P = ParamSpec("P")
R = TypeVar("R", covariant=True)

BOUNCE = "DBOS.debounce_delayed_workflow"
# Each lost race means another call just bounced or enqueued; a few suffice.
# The bound keeps a key held in a way no bounce can reach from spinning.
MAX_TRIES = 25


# ----------------------------------------------------------------------
# Rules shared with DebouncerClient
# ----------------------------------------------------------------------


def debounce_id(workflow_name: str, key: str) -> str:
    """The deduplication ID a debounced workflow holds while it waits."""
    return f"{workflow_name}-{key}"


def check_debounce(key: Any, period: Any) -> None:
    """``DBOSInvalidArgumentError`` for a key that is not a string or a bad period."""
    if not isinstance(key, str):
        raise DBOSInvalidArgumentError("debounce_key", key, "a debounce key is a string")
    if isinstance(period, bool) or not isinstance(period, (int, float)) or not (
            math.isfinite(period) and period >= 0):
        raise DBOSInvalidArgumentError("debounce_period_sec", period, "give a non-negative number of seconds")


def check_timeout(timeout: Any) -> None:
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not (math.isfinite(timeout) and timeout > 0)):
        raise DBOSInvalidArgumentError("debounce_timeout_sec", timeout, "give a positive number of seconds, or None")


def refuse_options(deduplication_id: Any, delay: Any, priority: Any, partition_key: Any, policy: Any) -> None:
    """A debounce owns the deduplication ID and the delay; priority and
    partitions do not apply to it. ``DBOSException`` if the caller set any."""
    given = {"deduplication_id": deduplication_id, "delay_seconds": delay, "priority": priority,
             "queue_partition_key": partition_key}
    for name, value in given.items():
        if value is not None:
            raise DBOSException(f"Cannot debounce a workflow enqueued with {name}={value!r}: a debounce "
                                "sets the deduplication ID (its key) and the delay (its period) itself, "
                                "and takes no priority or partition key")
    if policy == "return-existing":
        raise DBOSException("Cannot debounce a workflow with duplication_policy='return-existing': "
                            "the debounce decides what happens to a call whose key is held")


def first_delay(stamp_ms: int, period: float, timeout: Optional[float]) -> Tuple[int, Optional[int]]:
    """(when the fresh workflow is due, its debounce deadline) for a cycle starting now."""
    due = stamp_ms + int(period * 1000)
    deadline = stamp_ms + int(timeout * 1000) if timeout else None
    return (min(due, deadline) if deadline is not None else due), deadline


def _action(found: Bounce, workflow_name: str, application_name: Optional[str]) -> str:
    if found.bounced_id is not None:
        return "bounced"
    if found.holder_id is None:
        return "free"
    foreign = (application_name is not None and found.holder_application is not None
               and found.holder_application != application_name)
    if not found.holder_debounced or found.holder_name != workflow_name or foreign:
        return "held"
    return "retry"  # a debounced holder that appeared, or left DELAYED, since the bounce looked


def debounce_cycle(bounce: Callable[[], Bounce], fresh: Callable[[], str], request: BounceRequest) -> str:
    """Bounce the key's workflow, else enqueue a fresh one; the workflow's ID.

    ``DBOSQueueDeduplicatedError`` when the key is held by what a debounce may
    not bounce: a workflow that is not debounced, another workflow, or
    another application's.
    """
    found = Bounce()
    for _ in range(MAX_TRIES):
        found = bounce()
        action = _action(found, request.workflow_name, request.application_name)
        if action == "bounced":
            assert found.bounced_id is not None
            return found.bounced_id
        if action == "held":
            break
        if action == "free":
            try:
                return fresh()
            except DBOSQueueDeduplicatedError:
                continue  # another call enqueued first: bounce that one
    raise DBOSQueueDeduplicatedError(found.holder_id or "<unknown>", request.queue_name,
                                     request.deduplication_id)


# ----------------------------------------------------------------------
# Debouncer
# ----------------------------------------------------------------------


class _FreshEnqueue(ContextChange):
    """The enqueue options of a fresh debounced workflow, and the ID ``SetWorkflowID`` chose."""

    def __init__(self, settings: EnqueueSettings, workflow_id: Optional[str]) -> None:
        self.settings = settings
        self.workflow_id = workflow_id

    def _change(self, ctx: DBOSContext) -> None:
        ctx.extras = {**ctx.extras, ENQUEUE_KEY: self.settings}
        ctx.next_workflow_id = self.workflow_id


def _bounce(engine: Engine, request: BounceRequest) -> Bounce:
    """The bounce; inside a workflow, an operation whose result is checkpointed with it."""
    op = Operation.begin(engine, BOUNCE)
    if op is None:
        return engine.sysdb.bounce_debounced(request)[0]
    if op.replaying:
        return Bounce(**op.replay())
    op.check_cancelled()
    found, status = engine.sysdb.bounce_debounced(
        request, op.write(), lambda result: engine.codec.dump_value(result, what="a debounce's result"))
    op.confirm(status)
    return found


class Debouncer(Generic[P, R]):
    """Runs a workflow once per burst of calls with the same key, with the last call's arguments."""

    def __init__(self, workflow: Callable[..., Any], info: FunctionInfo, *,
                 debounce_timeout_sec: Optional[float] = None, queue: Optional[Union[Queue, str]] = None,
                 application_name: Optional[str] = None) -> None:
        check_timeout(debounce_timeout_sec)
        self.workflow = workflow
        self.info = info
        self.workflow_name = info.name
        self.debounce_timeout_sec = debounce_timeout_sec
        self.queue = queue
        self.application_name = application_name

    @staticmethod
    def create(workflow: Callable[P, R], *, debounce_timeout_sec: Optional[float] = None,
               queue: Optional[Union[Queue, str]] = None,
               application_name: Optional[str] = None) -> "Debouncer[P, R]":
        """A debouncer of ``workflow`` (a function, not a bound method: ``TypeError``).

        Its workflows wait on ``queue`` (default: DBOS's internal queue); with
        ``debounce_timeout_sec``, one runs at most that long after the first call.
        """
        return Debouncer(workflow, _workflow_info(workflow), debounce_timeout_sec=debounce_timeout_sec,
                         queue=queue, application_name=application_name)

    @staticmethod
    def create_async(workflow: Callable[P, Coroutine[Any, Any, R]], *,
                     debounce_timeout_sec: Optional[float] = None,
                     queue: Optional[Union[Queue, str]] = None,
                     application_name: Optional[str] = None) -> "Debouncer[P, R]":
        """``create`` for an async workflow."""
        return Debouncer(workflow, _workflow_info(workflow), debounce_timeout_sec=debounce_timeout_sec,
                         queue=queue, application_name=application_name)

    def debounce(self, debounce_key: str, debounce_period_sec: float,
                 *args: P.args, **kwargs: P.kwargs) -> WorkflowHandle[R]:
        """Run the workflow ``debounce_period_sec`` after the last call with this key,
        with that call's arguments; a handle to the workflow that will run them."""
        engine = get_engine("Debouncer.debounce()")
        return WorkflowHandle(self._debounce(engine, debounce_key, debounce_period_sec, args, kwargs))

    async def debounce_async(self, debounce_key: str, debounce_period_sec: float,
                             *args: P.args, **kwargs: P.kwargs) -> WorkflowHandleAsync[R]:
        """``debounce`` for async code."""
        engine = get_engine("Debouncer.debounce_async()")
        workflow_id = await engine.in_pool(self._debounce, engine, debounce_key, debounce_period_sec,
                                           args, kwargs)
        return WorkflowHandleAsync(workflow_id)

    def _debounce(self, engine: Engine, key: str, period: float, args: Tuple[Any, ...],
                  kwargs: Dict[str, Any]) -> str:
        check_debounce(key, period)
        options = current_options()
        refuse_options(options.deduplication_id, options.delay_seconds, options.priority,
                       options.queue_partition_key, options.duplication_policy)
        queue = self._queue(engine)
        pinned = take_next_workflow_id()  # for a fresh workflow only, however many tries it takes
        codec = engine.codec.for_stored(stored_format(self.info, current_run()))  # as a fresh start would
        request = BounceRequest(
            workflow_name=self.workflow_name, queue_name=queue.name,
            deduplication_id=debounce_id(self.workflow_name, key),
            delay_until_ms=now_ms() + int(period * 1000),
            inputs=codec.dump_inputs(args, kwargs, workflow_name=self.workflow_name),
            app_version=options.app_version or engine.identity.app_version,
            application_name=self.application_name or engine.identity.app_name, serialization=codec.column)
        settings = EnqueueSettings(deduplication_id=request.deduplication_id, app_version=options.app_version)
        return debounce_cycle(lambda: _bounce(engine, request),
                              lambda: self._fresh(engine, queue, settings, pinned, period, args, kwargs),
                              request)

    def _queue(self, engine: Engine) -> Queue:
        if self.queue is None:
            return INTERNAL
        return self.queue if isinstance(self.queue, Queue) else queue_named(self.queue)

    def _fresh(self, engine: Engine, queue: Queue, settings: EnqueueSettings, pinned: Optional[str],
               period: float, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> str:
        """Enqueue a new debounced workflow holding the key (refused if one holds it)."""
        with _FreshEnqueue(settings, pinned):
            launch = prepare_enqueue(engine, queue, self.workflow, args, kwargs)
        due, deadline = first_delay(launch.row["created_at"], period, self.debounce_timeout_sec)
        # A debounced workflow never inherits its caller's deadline (an explicit timeout
        # still applies, from when it is dequeued).
        launch.row.update(status="DELAYED", delay_until_epoch_ms=due, is_debounced=True,
                          debounce_deadline_epoch_ms=deadline, workflow_deadline_epoch_ms=None)
        if self.application_name:
            launch.row["application_name"] = self.application_name
        if launch.parent is not None and launch.link is None:
            return launch.workflow_id  # an earlier execution of the caller enqueued it
        write_enqueued(engine, queue, launch)
        return launch.workflow_id


def _workflow_info(workflow: Callable[..., Any]) -> FunctionInfo:
    if isinstance(workflow, types.MethodType):
        raise TypeError("Only workflow functions may be debounced, not bound methods")
    info, _ = resolve(workflow)
    if info.method_kind in ("instance", "class"):
        raise TypeError(f"Only workflow functions may be debounced, not methods ({info.name})")
    return info
