"""``DBOS``'s decorators, and starting and observing workflows."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Coroutine, List, Optional, ParamSpec, Set, Tuple, TypeVar, overload

from .._datasource import IsolationLevel
from .._engine import classes, step, tasks, transaction, workflow
from .._engine import handles as workflow_handles
from .._engine.engine import get_engine, peek_engine
from .._engine.handles import WorkflowHandle, WorkflowHandleAsync
from .._engine.roles import default_required_roles, required_roles
from .._engine.step import StepOptions
from .._engine.validation import ValidateArgsCallable
from .._portable_json import WorkflowSerializationFormat, format_of
from .._queues.scheduler import scheduled
from .._status import WorkflowStatus

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")


class WorkflowAPI:
    # ------------------------------------------------------------------
    # Decorators
    # ------------------------------------------------------------------

    @classmethod
    def workflow(cls, *, name: Optional[str] = None, max_recovery_attempts: Optional[int] = 100,
                 serialization_type: Optional[WorkflowSerializationFormat] = None,
                 validate_args: Optional[ValidateArgsCallable] = None) -> Callable[[F], F]:
        """Make a function a durable workflow: each step's outcome is checkpointed,
        and recovery resumes it from the last one. ``serialization_type=PORTABLE``
        stores its inputs, outcome, messages and events as portable JSON.
        ``validate_args(args, kwargs) -> (args, kwargs)`` checks arguments read
        from a row (dequeued, recovered) before the body runs; a failure ends
        the workflow in ERROR."""
        stored = format_of(serialization_type)
        return lambda func: workflow.make_workflow(func, name, max_recovery_attempts, validate_args, stored)

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
        preemptible: bool = False,
        timeout_seconds: Optional[float] = None,
    ) -> Callable[[F], F]:
        """Make a function a step: in a workflow it runs once (retried if asked) and
        its outcome is checkpointed; ``DBOSMaxStepRetriesExceeded`` when retries run out.
        An async step may be ``preemptible`` (stopped when its workflow is cancelled)
        and have ``timeout_seconds`` per attempt (``DBOSStepTimeoutError``)."""
        policy = step.StepPolicy(retries_allowed, interval_seconds, max_attempts, backoff_rate, should_retry,
                                 preemptible, timeout_seconds)
        return lambda func: step.make_step(func, name, policy)

    @classmethod
    def transaction(cls, isolation_level: IsolationLevel = "SERIALIZABLE", *,
                    name: Optional[str] = None) -> Callable[[F], F]:
        """Make a function a transaction of the application database: it runs exactly
        once, its output recorded in the same transaction; async functions are refused."""
        return lambda func: transaction.make_transaction(func, isolation_level, name)

    @classmethod
    def dbos_class(cls, class_name: Optional[str] = None) -> Callable[[T], T]:
        """Register a class whose methods are workflows, steps or transactions
        (under ``class_name``, default its qualified name)."""
        return lambda klass: classes.register_class(klass, class_name)  # type: ignore[return-value, arg-type]

    @classmethod
    def required_roles(cls, roles: List[str]) -> Callable[[F], F]:
        """Allow the function only to callers holding one of ``roles``
        (``DBOSNotAuthorizedError`` otherwise); the first one held is assumed."""
        return required_roles(roles)

    @classmethod
    def default_required_roles(cls, roles: List[str]) -> Callable[[T], T]:
        """``required_roles`` for every method of the class that names none itself."""
        return default_required_roles(roles)  # type: ignore[return-value]

    @classmethod
    def scheduled(cls, cron: str) -> Callable[[F], F]:
        """Run the workflow below at every tick of ``cron`` (5 fields, or 6 with
        seconds first); ``ValueError`` for an invalid schedule."""
        return scheduled(cron)

    # ------------------------------------------------------------------
    # Starting and observing workflows
    # ------------------------------------------------------------------

    @classmethod
    def start_workflow(cls, func: Callable[..., R], *args: Any, **kwargs: Any) -> WorkflowHandle[R]:
        """Start a workflow (or a step or transaction, as one) in the background; its handle."""
        return workflow_handles.start_workflow(func, args, kwargs)

    @classmethod
    async def start_workflow_async(cls, func: Callable[..., Awaitable[R]], *args: Any,
                                   **kwargs: Any) -> WorkflowHandleAsync[R]:
        """``start_workflow`` for async code."""
        return await workflow_handles.start_workflow_async(func, args, kwargs)

    @overload
    @classmethod
    def run_step(cls, dbos_step_options: Optional[StepOptions], func: Callable[P, Coroutine[Any, Any, R]],
                 *args: P.args, **kwargs: P.kwargs) -> R: ...

    @overload
    @classmethod
    def run_step(cls, dbos_step_options: Optional[StepOptions], func: Callable[P, R],
                 *args: P.args, **kwargs: P.kwargs) -> R: ...

    @classmethod
    def run_step(cls, dbos_step_options: Optional[StepOptions], func: Callable[..., Any],
                 *args: Any, **kwargs: Any) -> Any:
        """Run ``func`` (any function, coroutine function or lambda) as a step of the
        running workflow, with ``dbos_step_options`` as ``@DBOS.step()`` takes them; a
        plain call outside a workflow. ``RuntimeError`` while an event loop is running."""
        return step.run_step(dbos_step_options, func, args, kwargs)

    @overload
    @classmethod
    async def run_step_async(cls, dbos_step_options: Optional[StepOptions],
                             func: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs) -> R: ...

    @overload
    @classmethod
    async def run_step_async(cls, dbos_step_options: Optional[StepOptions], func: Callable[P, R],
                             *args: P.args, **kwargs: P.kwargs) -> R: ...

    @classmethod
    async def run_step_async(cls, dbos_step_options: Optional[StepOptions], func: Callable[..., Any],
                             *args: Any, **kwargs: Any) -> Any:
        """``run_step`` for async code; a sync ``func`` runs on DBOS's thread pool."""
        return await step.run_step_async(dbos_step_options, func, args, kwargs)

    @classmethod
    def retrieve_workflow(cls, workflow_id: str, existing_workflow: bool = True) -> WorkflowHandle[Any]:
        """A handle to a workflow by ID (``DBOSNonExistentWorkflowError`` if there is
        none, unless ``existing_workflow`` is False)."""
        return workflow_handles.retrieve_workflow(workflow_id, existing_workflow)

    @classmethod
    async def retrieve_workflow_async(cls, workflow_id: str,
                                      existing_workflow: bool = True) -> WorkflowHandleAsync[Any]:
        """``retrieve_workflow`` for async code."""
        return await workflow_handles.retrieve_workflow_async(workflow_id, existing_workflow)

    @classmethod
    def get_result(cls, workflow_id: str) -> Any:
        """Wait for a workflow's result; raises the error it recorded."""
        return workflow_handles.get_result(workflow_id)

    @classmethod
    async def get_result_async(cls, workflow_id: str) -> Any:
        """``get_result`` for async code."""
        return await workflow_handles.get_result_async(workflow_id)

    @classmethod
    def get_workflow_status(cls, workflow_id: str) -> Optional[WorkflowStatus]:
        """A workflow's status now; None if there is no such workflow."""
        return workflow_handles.workflow_status(get_engine("DBOS.get_workflow_status()"), workflow_id)

    @classmethod
    async def get_workflow_status_async(cls, workflow_id: str) -> Optional[WorkflowStatus]:
        """``get_workflow_status`` for async code."""
        engine = get_engine("DBOS.get_workflow_status_async()")
        return await workflow_handles.workflow_status_async(engine, workflow_id)

    @classmethod
    def wait_first(cls, handles: List[WorkflowHandle[Any]], *,
                   polling_interval_sec: float = 1.0) -> WorkflowHandle[Any]:
        """The first of the handles whose workflow has finished (``ValueError`` for
        none, or for one given twice)."""
        winner: WorkflowHandle[Any] = workflow_handles.wait_first(handles, polling_interval_sec)
        return winner

    @classmethod
    async def wait_first_async(cls, handles: List[WorkflowHandleAsync[Any]], *,
                               polling_interval_sec: float = 1.0) -> WorkflowHandleAsync[Any]:
        """``wait_first`` for async code."""
        winner: WorkflowHandleAsync[Any] = await workflow_handles.wait_first_async(handles, polling_interval_sec)
        return winner

    @classmethod
    async def asyncio_wait(cls, fs: List[Awaitable[Any]], *, timeout: Optional[float] = None,
                           return_when: str = asyncio.ALL_COMPLETED
                           ) -> Tuple[Set["asyncio.Future[Any]"], Set["asyncio.Future[Any]"]]:
        """``asyncio.wait`` for a workflow: which awaitables were done is checkpointed,
        so a recovered workflow gets the same ``(done, pending)``; plain outside one."""
        return await tasks.asyncio_wait(peek_engine(), fs, timeout, return_when)
