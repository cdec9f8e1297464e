"""The one path every durable operation takes: reserve, replay or run, checkpoint.

Inside a workflow each operation (a step, a transaction, a child's start, a
send or a receive, a sleep, an event, a stream value, a handle's result, a
status read, a management call) is recorded at the workflow's next function
ID, in the order the workflow's code calls them::

    op = Operation.begin(engine, "DBOS.getStatus")
    if op is None:                  # not inside a workflow: a plain call
        return read()
    if op.replaying:                # an earlier execution recorded it
        return op.replay()
    return op.run(read, what=...)   # do it now; checkpoint what it returned or raised

An operation whose write is more than a checkpoint (a send writes its
message with it, a receive consumes one as it) gives the storage
``op.write(...)`` and passes the status that comes back to ``op.confirm``.
Every checkpoint returns the workflow's status, so a workflow cancelled
meanwhile stops at its next operation (``DBOSWorkflowCancelledError``).
Async code calls ``begin`` before its first ``await``, so concurrent
operations are numbered in the order they begin.

A receive in a sync workflow only reads its message; the consumption and
its checkpoint are held on the run (``WorkflowRun.received``) and written
with the workflow's next write: a send, an event or a stream value carries
them in its own transaction (``carrying_received``), and any other
operation, or the workflow's end, writes them first (``settle``). Until
then only the workflow's own code has run, so a crash loses nothing: the
message is still unread, and the replay receives it again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

from .._clock import now_ms
from .._portable_json import format_of
from .._serialization import Codec
from .._sysdb.records import Received, StepRecord, StepWrite
from ..error import DBOSException, DBOSWorkflowCancelledError
from .context import WorkflowRun, current_run, get_context
from .engine import Engine

T = TypeVar("T")


@dataclass
class Operation:
    engine: Engine
    workflow: WorkflowRun
    function_id: int
    name: str
    record: Optional[StepRecord]  # what an earlier execution recorded here
    started_at_ms: int

    @classmethod
    def begin(cls, engine: Engine, name: str, *, carries_received: bool = False) -> Optional["Operation"]:
        """Take the next function ID of the workflow running here; None outside
        a workflow, or inside one of its steps, where operations are plain calls.
        A message the workflow received is consumed first, unless the
        operation ``carries_received`` in its own write.

        Raises ``DBOSUnexpectedStepError`` if an earlier execution recorded
        another operation at this ID (the workflow's code changed).
        """
        workflow = current_run()
        if workflow is None:
            return None
        if not carries_received:
            settle(engine, workflow)
        function_id = workflow.next_function_id()
        record = workflow.recorded_step(function_id, name)
        return cls(engine, workflow, function_id, name, record, now_ms())

    @classmethod
    def begin_if(cls, engine: Engine, name: str,
                 accept: Callable[[Optional[StepRecord]], bool]) -> Optional["Operation"]:
        """``begin``, for an operation that takes its function ID only if
        ``accept`` what an earlier execution recorded there (a patch marker
        steps aside for the old code's operation); None if it did not, or
        outside a workflow."""
        workflow = current_run()
        if workflow is None:
            return None
        settle(engine, workflow)
        function_id = workflow.next_function_id_if(accept)
        if function_id is None:
            return None
        return cls(engine, workflow, function_id, name, workflow.recorded.get(function_id), now_ms())

    @property
    def replaying(self) -> bool:
        return self.record is not None

    def replay(self) -> Any:
        """What the earlier execution recorded: its value returned, or its error raised."""
        assert self.record is not None, "replay() is for a recorded operation"
        codec = self.engine.codec.for_stored(self.record.serialization)
        if self.record.error is not None:
            raise codec.load_error(self.record.error)
        return codec.load_value(self.record.output)

    def check_cancelled(self) -> None:
        """Raise now, before doing the work, if this process knows the workflow was cancelled."""
        self.engine.check_cancelled_here(self.workflow.workflow_id)

    def write(self, *, output: Optional[str] = None, error: Optional[str] = None,
              child_workflow_id: Optional[str] = None, completed_at_ms: Optional[int] = None) -> StepWrite:
        """The checkpoint of this operation, for the storage to write."""
        return StepWrite(self.workflow.workflow_id, self.function_id, self.name, output, error,
                         child_workflow_id, self.started_at_ms, completed_at_ms)

    def confirm(self, status: Optional[str]) -> None:
        """The workflow's status as the checkpoint's write found it: stop if cancelled."""
        if status == "CANCELLED":
            raise DBOSWorkflowCancelledError(f"Workflow {self.workflow.workflow_id} was cancelled")

    def checkpoint(self, *, output: Optional[str] = None, error: Optional[str] = None,
                   child_workflow_id: Optional[str] = None, completed_at_ms: Optional[int] = None) -> None:
        """Record the outcome (``DBOSWorkflowConflictIDError`` if another execution did)."""
        step = self.write(output=output, error=error, child_workflow_id=child_workflow_id,
                          completed_at_ms=completed_at_ms)
        self.confirm(self.engine.sysdb.record_step(step))

    def succeed(self, value: T, *, what: str, child_workflow_id: Optional[str] = None) -> T:
        """Checkpoint ``value`` as the outcome and return it."""
        self.checkpoint(output=self.engine.codec.dump_value(value, what=what),
                        child_workflow_id=child_workflow_id)
        return value

    def fail(self, error: BaseException, *, child_workflow_id: Optional[str] = None) -> None:
        """Checkpoint ``error`` as the outcome (the caller raises it)."""
        if self.engine.closed:  # met after DBOS shut down (a closed pool, a refused call): no outcome
            return
        self.checkpoint(error=self.engine.codec.dump_error(error), child_workflow_id=child_workflow_id)

    def run(self, work: Callable[[], T], *, what: str, record_error: bool = True,
            child_workflow_id: Optional[str] = None) -> T:
        """``work()``, its value or (with ``record_error``) its exception checkpointed."""
        try:
            value = work()
        except Exception as exc:
            if record_error:
                self.fail(exc, child_workflow_id=child_workflow_id)
            raise
        return self.succeed(value, what=what, child_workflow_id=child_workflow_id)


def settle(engine: Engine, run: WorkflowRun, *, stop_if_cancelled: bool = True) -> None:
    """Consume the message ``run`` received and still holds, with its
    receive's checkpoint; stop if the workflow was cancelled meanwhile."""
    if run.received is None:  # almost always: a look without the lock
        return
    with run.receiving:
        received, run.received = run.received, None
        if received is None:
            return
        status = engine.sysdb.consume_received(received)
    if stop_if_cancelled and status == "CANCELLED":
        raise DBOSWorkflowCancelledError(f"Workflow {run.workflow_id} was cancelled")


def carrying_received(run: WorkflowRun, write: Callable[[Optional[Received]], T]) -> T:
    """``write(received)``, given the message ``run`` received and still
    holds (or None), to consume in the same transaction; held again if
    ``write`` fails, for the next write."""
    with run.receiving:
        result = write(run.received)
        run.received = None
    return result


def durable(engine: Engine, name: str, work: Callable[[], T], *, what: str, record_error: bool = True,
            child_workflow_id: Optional[str] = None) -> T:
    """``work()`` as an operation of the running workflow; a plain call outside one."""
    op = Operation.begin(engine, name)
    if op is None:
        return work()
    if op.replaying:
        replayed: T = op.replay()
        return replayed
    return op.run(work, what=what, record_error=record_error, child_workflow_id=child_workflow_id)


async def durable_async(engine: Engine, name: str, work: Callable[[], T], *, what: str,
                        record_error: bool = True, child_workflow_id: Optional[str] = None) -> T:
    """``durable`` for async code: ``work`` runs on the engine's pool."""
    op = Operation.begin(engine, name)
    if op is None:
        return await engine.in_pool(work)
    if op.replaying:
        replayed: T = op.replay()
        return replayed
    run = functools.partial(op.run, work, what=what, record_error=record_error,
                            child_workflow_id=child_workflow_id)
    return await engine.in_pool(run)


# How a keyed write reaches the storage: (workflow ID, key, value text,
# function ID, the checkpoint to write with it, the value's stored format,
# the workflow's received message to consume with it) -> the workflow's status.
KeyedWrite = Callable[[str, str, str, int, Optional[StepWrite], Optional[str], Optional[Received]], Optional[str]]


def codec_for(engine: Engine, run: Optional[WorkflowRun], serialization_type: Any) -> Codec:
    """What a message, event or stream value is written with: the format asked
    for, else that of the workflow writing it, else the configured one."""
    if format_of(serialization_type) is not None:
        return engine.codec.for_type(serialization_type)
    return engine.codec.for_stored(run.serialization if run is not None else None)


def workflow_write(engine: Engine, name: str, store: KeyedWrite, key: str, value: Any, *,
                   api: str, what: str, serialization_type: Any = None) -> Optional[str]:
    """Store ``value`` under ``key`` for the workflow running here (an event,
    a stream value). From the workflow's code it is the operation ``name``;
    from one of its steps it goes under the step's ID, with no checkpoint of
    its own. Returns the workflow's ID, or None when a replay skipped it.
    """
    ctx = get_context()
    if ctx is None or ctx.run is None:
        raise DBOSException(f"{api} must be called from within a workflow or step")
    codec = codec_for(engine, ctx.run, serialization_type)
    workflow_id, text = ctx.run.workflow_id, codec.dump_value(value, what=what)
    if ctx.step_id is not None:
        store(workflow_id, key, text, ctx.step_id, None, codec.column, None)
        return workflow_id
    op = Operation.begin(engine, name, carries_received=True)
    assert op is not None, "in the workflow's own code"
    if op.replaying:
        settle(engine, op.workflow)
        return None
    step = op.write(output=engine.codec.dump_value(None, what="a step output"))
    op.confirm(carrying_received(op.workflow, lambda received: store(
        workflow_id, key, text, op.function_id, step, codec.column, received)))
    return workflow_id
