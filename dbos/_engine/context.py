"""The DBOS context: who is calling, and which workflow and step are running.

It lives in a ``ContextVar`` so threads and asyncio tasks each see their own.
Context managers (``SetWorkflowID``, ``DBOSContextSetAuth``, ...) change a
copy and restore the previous context on exit.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar, Token
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Callable, Dict, List, Optional, Type

from .._status import StepStatus
from .._sysdb.ids import check_workflow_id
from .._sysdb.records import Received, StepRecord
from ..error import DBOSException, DBOSUnexpectedStepError


class WorkflowRun:
    """The state of one execution of a workflow's body.

    ``recorded`` holds the steps an earlier execution checkpointed; a fresh
    workflow has none, so its steps never read before they write.
    """

    def __init__(
        self,
        workflow_id: str,
        name: str,
        recorded: Optional[Dict[int, StepRecord]] = None,
        deadline_ms: Optional[int] = None,
        serialization: Optional[str] = None,
    ) -> None:
        self.workflow_id = workflow_id
        self.name = name
        self.recorded = recorded or {}
        self.deadline_ms = deadline_ms
        self.patches: Dict[str, bool] = {}  # each DBOS.patch() name asked here, and its answer
        # The stored format of its inputs and outcome, and the default of its
        # messages and events (None: the configured serializer's).
        self.serialization = serialization
        self._function_id = 0
        self._lock = threading.Lock()
        self.reading_stream = False  # a checkpointed stream read is in progress (streams.py)
        # A message received and not yet consumed in the database: written
        # with the next operation's write, or at its start (``operation.settle``).
        self.received: Optional[Received] = None
        self.receiving = threading.Lock()  # held from finding a message to holding or consuming it

    def next_function_id(self) -> int:
        # Async workflows may start operations from several tasks at once;
        # each takes its ID synchronously, in the order it begins.
        with self._lock:
            self._function_id += 1
            return self._function_id

    def next_function_id_if(self, accept: Callable[[Optional[StepRecord]], bool]) -> Optional[int]:
        """The next function ID, taken only if ``accept`` what an earlier
        execution recorded there (None: nothing); None and nothing taken otherwise."""
        with self._lock:
            candidate = self._function_id + 1
            if not accept(self.recorded.get(candidate)):
                return None
            self._function_id = candidate
            return candidate

    def recorded_step(self, function_id: int, name: str) -> Optional[StepRecord]:
        """The earlier outcome at this ID, checking the code still calls the same thing."""
        record = self.recorded.get(function_id)
        if record is not None and record.function_name != name:
            raise DBOSUnexpectedStepError(
                self.workflow_id, function_id, name, record.function_name
            )
        return record


@dataclass
class DBOSContext:
    next_workflow_id: Optional[str] = None
    authenticated_user: Optional[str] = None
    authenticated_roles: Optional[List[str]] = None
    assumed_role: Optional[str] = None
    run: Optional[WorkflowRun] = None
    step_id: Optional[int] = None
    step_status: Optional[StepStatus] = None
    in_transaction: bool = False
    sql_session: Any = None
    extras: Dict[str, Any] = field(default_factory=dict)

    def workflow_child(self, run: WorkflowRun, **state: Any) -> "DBOSContext":
        """The context a workflow body (or, with ``step_id``, one of its steps)
        runs in: the caller's identity, fresh state."""
        return DBOSContext(
            authenticated_user=self.authenticated_user,
            authenticated_roles=self.authenticated_roles,
            assumed_role=self.assumed_role,
            run=run,
            **state,
        )

    def take_workflow_id(self) -> Optional[str]:
        """``SetWorkflowID`` applies to the next workflow only."""
        wid, self.next_workflow_id = self.next_workflow_id, None
        return wid


_context: ContextVar[Optional[DBOSContext]] = ContextVar("dbos_context", default=None)


def get_context() -> Optional[DBOSContext]:
    return _context.get()


def set_context(ctx: Optional[DBOSContext]) -> "Token[Optional[DBOSContext]]":
    return _context.set(ctx)


def reset_context(token: "Token[Optional[DBOSContext]]") -> None:
    _context.reset(token)


def take_next_workflow_id() -> Optional[str]:
    """The ID ``SetWorkflowID`` chose for the next workflow, if any (used once)."""
    ctx = _context.get()
    return ctx.take_workflow_id() if ctx is not None else None


def current_run() -> Optional[WorkflowRun]:
    """The workflow whose code (not one of its steps) is executing here."""
    ctx = _context.get()
    if ctx is None or ctx.run is None or ctx.step_id is not None:
        return None
    return ctx.run


class ContextChange:
    """Base of the context managers: change a copy, restore the original on exit."""

    def _change(self, ctx: DBOSContext) -> None:
        raise NotImplementedError

    def __enter__(self) -> "ContextChange":
        current = _context.get()
        changed = replace(current) if current is not None else DBOSContext()
        self._change(changed)
        self._token = _context.set(changed)
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        _context.reset(self._token)


class SetWorkflowID(ContextChange):
    """Run the next workflow started in this block under ``workflow_id``."""

    def __init__(self, wfid: str) -> None:  # named as in DBOS Transact, for callers passing wfid=
        if not isinstance(wfid, str) or not wfid.strip():
            raise DBOSException(f"SetWorkflowID needs a non-empty workflow ID, got {wfid!r}")
        self.workflow_id = check_workflow_id(wfid)

    def _change(self, ctx: DBOSContext) -> None:
        ctx.next_workflow_id = self.workflow_id

    def __enter__(self) -> "SetWorkflowID":
        super().__enter__()
        return self


class DBOSContextEnsure(ContextChange):
    """Make sure a DBOS context exists for the block."""

    def _change(self, ctx: DBOSContext) -> None:
        pass

    def __enter__(self) -> "DBOSContextEnsure":
        super().__enter__()
        return self


class DBOSContextSetAuth(ContextChange):
    """Run the block as ``user`` with ``roles`` (inherited by workflows it starts)."""

    def __init__(self, user: Optional[str], roles: Optional[List[str]]) -> None:
        self.user = user
        self.roles = roles

    def _change(self, ctx: DBOSContext) -> None:
        ctx.authenticated_user = self.user
        ctx.authenticated_roles = self.roles
        ctx.assumed_role = None

    def __enter__(self) -> "DBOSContextSetAuth":
        super().__enter__()
        return self
