"""Recovery: resume this executor's PENDING workflows from their last step.

Each recovered workflow counts a recovery attempt; past its
``max_recovery_attempts`` it is moved to MAX_RECOVERY_ATTEMPTS_EXCEEDED
instead of running. Completed steps replay from their checkpoints.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import Future
from functools import partial
from typing import Any, Dict, List, Optional, Set, Tuple

from .._portable_json import PORTABLE_JSON, coerce_to_hints
from .._sysdb.records import StepRecord
from ..error import DBOSWorkflowFunctionNotFoundError
from .context import DBOSContext, WorkflowRun
from .engine import Engine
from . import metrics
from .gate import Gate
from .handles import WorkflowHandle, WorkflowHandleFuture
from .launch import Launch
from .registry import FunctionInfo, get_registry
from .tracing import parent_of
from .validation import validated
from .workflow import execute_sync, submit

logger = logging.getLogger("dbos")

# Workflows claimed per statement: well under SQLite's limit on bound parameters.
RECOVERY_BATCH = 500
# Recovered workflows running at once: the gate's lanes (see gate.py).
# Measured on 2 cores, 1,000 recovered workflows finish sooner with 16 at a
# time than with 48 or all at once, on SQLite and on PostgreSQL; with 32,
# PostgreSQL's lanes outnumber the default pool's 20 connections and wait
# for one.
RECOVERY_CONCURRENCY = 16

# A claimed workflow ready to run: how to call it, and the state it resumes from.
Prepared = Tuple[Launch, WorkflowRun]
# What a batch's claim took: the rows by ID, and each one's recorded steps.
Claimed = Tuple[Dict[str, Dict[str, Any]], Dict[str, Dict[int, StepRecord]]]


def recover_pending(engine: Engine, seen: Optional[Dict[str, int]] = None) -> List[WorkflowHandle[Any]]:
    """Claim and resume PENDING workflows of this executor and version: those
    of ``seen`` (ID -> the recovery attempts it had when found PENDING), else
    those found now. One claimed by anyone since it was found is left alone."""
    identity = engine.identity
    if seen is None:
        seen = engine.sysdb.pending_attempts(identity.executor_id, identity.app_version)
    ids = list(seen)
    if ids:
        logger.info(f"Recovering {len(ids)} pending workflow(s)")
    gate = Gate(engine.pool, RECOVERY_CONCURRENCY, admit=lambda: not engine.intake_stopped)
    handles: List[WorkflowHandle[Any]] = []
    for start in range(0, len(ids), RECOVERY_BATCH):
        if engine.intake_stopped:  # shutting down: the rest stay PENDING for the next launch
            break
        batch = {w: seen[w] for w in ids[start:start + RECOVERY_BATCH]}
        handles.extend(_recover_batch(engine, batch, gate))
    if ids:
        RecoveryReport(len(ids), handles).watch()
    return handles


class RecoveryReport:
    """The one line that says recovery is over: once every workflow resumed here
    has ended, how many there were, and how many of them succeeded."""

    def __init__(self, found: int, handles: List[WorkflowHandle[Any]]) -> None:
        self.found = found
        self.running = [h for h in handles if isinstance(h, WorkflowHandleFuture)]
        self.left = len(self.running)
        self.failed = 0
        self.lock = threading.Lock()

    def watch(self) -> None:
        if not self.running:
            self.report()
        for handle in self.running:
            handle.add_future_callback(self.ended)

    def ended(self, future: "Future[Any]") -> None:
        with self.lock:
            self.left -= 1
            self.failed += future.cancelled() or future.exception() is not None
            last = self.left == 0
        if last:
            self.report()

    def report(self) -> None:
        resumed = len(self.running)
        logger.info(f"Recovery finished: {resumed} of {self.found} pending workflow(s) resumed here "
                    f"({resumed - self.failed} succeeded, {self.failed} failed or stopped)")


def _recover_batch(engine: Engine, seen: Dict[str, int], gate: Gate) -> List[WorkflowHandle[Any]]:
    """Claim a batch in one statement, read all its steps in one query and
    dead-letter those out of attempts in one statement: a batch's recovery
    costs three statements (and, on SQLite, commits), however many it holds;
    what each workflow then writes is its own."""
    claimed = _claim(engine, seen)
    if claimed is None:
        return []
    rows, steps = claimed
    ids = [w for w in seen if w in rows]  # the others were claimed by someone since
    functions = _functions(ids, rows)
    dead = _dead_letter(engine, functions, rows)
    prepared: List[Tuple[str, Optional[Prepared]]] = []
    for workflow_id in (w for w in ids if w in functions):
        if workflow_id in dead:
            prepared.append((workflow_id, None))
            continue
        try:
            found = _prepare(engine, functions[workflow_id], workflow_id, rows[workflow_id],
                             steps[workflow_id])
        except Exception as exc:
            logger.error(f"Could not recover workflow {workflow_id}: {exc}")
            continue
        prepared.append((workflow_id, found))
    return _start(engine, prepared, gate)


def _start(engine: Engine, prepared: List[Tuple[str, Optional[Prepared]]],
           gate: Gate) -> List[WorkflowHandle[Any]]:
    """A handle per prepared workflow: sync bodies start through ``gate``, async
    ones at once on the loop; one not to run (None) gets a plain handle."""
    handles: List[WorkflowHandle[Any]] = []
    gated: List[Tuple[int, str, Launch, WorkflowRun]] = []
    for workflow_id, found in prepared:
        if found is not None and not found[0].info.is_async:
            gated.append((len(handles), workflow_id, *found))  # its handle is set below
            found = None
        handles.append(WorkflowHandle(workflow_id) if found is None else _submit(engine, *found))
    futures = gate.submit_all([partial(execute_sync, engine, launch, run) for _, _, launch, run in gated])
    for (index, workflow_id, _, _), future in zip(gated, futures):
        handles[index] = WorkflowHandleFuture(workflow_id, future)
    return handles


def _claim(engine: Engine, seen: Dict[str, int]) -> Optional[Claimed]:
    """The rows this claim took (by ID) and their recorded steps; None, logged, if it failed."""
    try:
        rows = engine.sysdb.claim_many_for_recovery(seen, engine.identity.executor_id)
        steps = engine.sysdb.load_steps_many(list(rows))
    except Exception as exc:
        ids = list(seen)
        logger.error(f"Could not recover workflows {ids[0]}..{ids[-1]}: {exc}")
        return None
    metrics.recovered(len(rows))
    return rows, steps


def _functions(ids: List[str], rows: Dict[str, Dict[str, Any]]) -> Dict[str, FunctionInfo]:
    """The function of each claimed workflow; one not registered here is logged and left out."""
    found: Dict[str, FunctionInfo] = {}
    for workflow_id in ids:
        try:
            found[workflow_id] = _function(workflow_id, rows[workflow_id]["name"])
        except Exception as exc:
            logger.error(f"Could not recover workflow {workflow_id}: {exc}")
    return found


def _dead_letter(engine: Engine, functions: Dict[str, FunctionInfo],
                 rows: Dict[str, Dict[str, Any]]) -> Set[str]:
    """Move the claimed workflows past their attempts out of PENDING, all in
    one statement; their IDs. If it fails, they are logged and left out of ``functions``."""
    dead = [w for w, info in functions.items() if _exhausted(info, rows[w])]
    if not dead:
        return set()
    try:
        engine.sysdb.dead_letter_many(dead)
    except Exception as exc:
        logger.error(f"Could not recover workflows {dead[0]}..{dead[-1]}: {exc}")
        for workflow_id in dead:
            del functions[workflow_id]
        return set()
    for workflow_id in dead:
        _dead_lettered(engine, workflow_id, functions[workflow_id])
    return set(dead)


def recover_one(engine: Engine, workflow_id: str) -> WorkflowHandle[Any]:
    row = engine.sysdb.claim_for_recovery(workflow_id, engine.identity.executor_id)
    metrics.recovered(0 if row is None else 1)
    info = None if row is None else function_for(engine, workflow_id, row)
    found = None if row is None or info is None else _prepare(engine, info, workflow_id, row, None)
    return WorkflowHandle(workflow_id) if found is None else _submit(engine, *found)


def _submit(engine: Engine, launch: Launch, run: WorkflowRun) -> WorkflowHandleFuture[Any]:
    return WorkflowHandleFuture(run.workflow_id, submit(engine, launch, run))


def _prepare(engine: Engine, info: FunctionInfo, workflow_id: str, row: Dict[str, Any],
             steps: Optional[Dict[int, StepRecord]]) -> Optional[Prepared]:
    """What it takes to run a claimed workflow from its recorded steps; None
    if its arguments failed its validator. ``steps`` None: read them now."""
    launch = launch_from_row(engine, info, workflow_id, row)
    if launch is None:
        return None
    if steps is None:
        steps = engine.sysdb.load_steps(workflow_id)
    return launch, run_from_row(info, workflow_id, row, steps)


def run_from_row(info: FunctionInfo, workflow_id: str, row: Dict[str, Any],
                 steps: Dict[int, StepRecord]) -> WorkflowRun:
    """The state of a claimed workflow's next execution: its recorded steps, deadline and format."""
    return WorkflowRun(workflow_id, info.name, steps, row.get("workflow_deadline_epoch_ms"),
                       serialization=row.get("serialization"))


def _arguments(info: FunctionInfo, column: Optional[str], args: Tuple[Any, ...],
               kwargs: Dict[str, Any]) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    """What the body gets: its validator's answer, else, for portable JSON
    (which has no dates), the arguments turned back into what its hints ask for."""
    if info.validate_args is None and column == PORTABLE_JSON:
        return coerce_to_hints(info.func, args, kwargs, bound=info.method_kind in ("class", "instance"))
    return validated(info, args, kwargs)


def function_for(engine: Engine, workflow_id: str, row: Dict[str, Any]) -> Optional[FunctionInfo]:
    """The function to run a claimed workflow with; None if it is out of attempts."""
    info = _function(workflow_id, row["name"])
    if not _exhausted(info, row):
        return info
    engine.sysdb.dead_letter(workflow_id)
    _dead_lettered(engine, workflow_id, info)
    return None


def _exhausted(info: FunctionInfo, row: Dict[str, Any]) -> bool:
    """Whether a claimed row has counted more recovery attempts than its function allows."""
    limit = info.max_recovery_attempts
    return limit is not None and int(row["recovery_attempts"]) > limit + 1


def _dead_lettered(engine: Engine, workflow_id: str, info: FunctionInfo) -> None:
    engine.waiters.wake(workflow_id)
    logger.warning(
        f"Workflow {workflow_id} exceeded its {info.max_recovery_attempts} recovery attempts and was moved "
        "to MAX_RECOVERY_ATTEMPTS_EXCEEDED"
    )


def _function(workflow_id: str, name: str) -> FunctionInfo:
    info = get_registry().functions.get(name)
    if info is None or info.kind != "workflow":
        raise DBOSWorkflowFunctionNotFoundError(
            workflow_id, f"no workflow named {name!r} is registered in this process"
        )
    return info


def launch_from_row(engine: Engine, info: FunctionInfo, workflow_id: str,
                    row: Dict[str, Any]) -> Optional[Launch]:
    """How to run a claimed workflow; None if its arguments failed its validator
    (the workflow then ends in ERROR with that failure, without running)."""
    codec = engine.codec.for_stored(row.get("serialization"))
    args, kwargs = codec.load_inputs(row["inputs"])
    try:
        args, kwargs = _arguments(info, codec.column, args, kwargs)
    except Exception as exc:
        _refuse(engine, workflow_id, exc)
        return None
    target = _target(workflow_id, info, row.get("class_name"), row.get("config_name"))
    if target is not None:
        args = (target, *args)
    caller = DBOSContext(
        authenticated_user=row.get("authenticated_user"),
        authenticated_roles=_roles(row.get("authenticated_roles")),
        assumed_role=row.get("assumed_role"),
    )
    return Launch(info, workflow_id, args, kwargs, caller, trace=parent_of(row.get("attributes")),
                  queue_name=row.get("queue_name"))


def _refuse(engine: Engine, workflow_id: str, error: Exception) -> None:
    logger.error(f"Workflow {workflow_id} failed its argument validation and ends in ERROR: {error}")
    engine.sysdb.record_outcome(workflow_id, "ERROR", None, engine.codec.dump_error(error))
    engine.waiters.wake(workflow_id)


def _roles(text: Optional[str]) -> Optional[List[str]]:
    return json.loads(text) if text else None


def _target(workflow_id: str, info: FunctionInfo, class_name: Optional[str],
            config_name: Optional[str]) -> Any:
    """The class or configured instance a recovered method runs on."""
    registry = get_registry()
    if info.method_kind == "instance":
        key = f"{class_name}/{config_name}"
        if key not in registry.instances:
            raise DBOSWorkflowFunctionNotFoundError(
                workflow_id, f"no configured instance {key!r} is registered in this process"
            )
        return registry.instances[key]
    if info.method_kind == "class":
        return registry.classes[class_name or ""]
    return None
