"""Patching: changing a workflow's code under the workflows already running it.

``DBOS.patch(name)`` asks, at one point of a workflow's code, whether this
execution takes the new code path. The answer is decided once and kept as
a checkpoint, the marker ``DBOS.patch-<name>`` at the workflow's next
function ID, so every replay gets the answer the first execution got:

- nothing recorded there (a workflow started on the patched code, or one
  that had not reached this point yet): the marker is recorded, True;
- the marker recorded there: True again, replayed;
- another operation recorded there (a workflow that passed this point on
  the old code): False, and the ID is left to that operation, so the old
  code path replays where it was recorded.

``DBOS.deprecate_patch(name)`` is for code from which the old path is gone:
it never records a marker, steps over one an earlier execution recorded,
and always answers True. Once no workflow holding a marker is left, the
call can go too.

Each answer is taken before any ``await``, from what the workflow already
holds in memory (a fresh workflow has nothing recorded, a recovered one has
read its steps), so ``patch_async`` among sibling tasks is numbered in the
order the tasks begin, like any other operation.
"""

from __future__ import annotations

from typing import Optional

from .._sysdb.records import StepRecord
from ..error import DBOSException, DBOSPatchNondeterminismError
from .context import WorkflowRun, current_run
from .engine import Engine
from .operation import Operation
from .step import refuse_running_loop

MARKER_PREFIX = "DBOS.patch-"


def patch(engine: Engine, name: str) -> bool:
    """``DBOS.patch``: True on the new code path, False on the old one."""
    refuse_running_loop("patch")
    op = _decide(engine, name, "DBOS.patch")
    if op is None:
        return False
    if not op.replaying:
        _record_marker(op)
    return True


async def patch_async(engine: Engine, name: str) -> bool:
    """``DBOS.patch_async``: decided before the first ``await``."""
    op = _decide(engine, name, "DBOS.patch_async")
    if op is None:
        return False
    if not op.replaying:
        await engine.in_pool(_record_marker, op)
    return True


def deprecate_patch(engine: Engine, name: str) -> bool:
    """``DBOS.deprecate_patch``: always True."""
    refuse_running_loop("deprecate_patch")
    return _step_over_marker(engine, name, "DBOS.deprecate_patch")


async def deprecate_patch_async(engine: Engine, name: str) -> bool:
    """``DBOS.deprecate_patch_async``: nothing to wait for, nothing is written."""
    return _step_over_marker(engine, name, "DBOS.deprecate_patch_async")


def _step_over_marker(engine: Engine, name: str, api: str) -> bool:
    _patching_run(engine, api)
    marker = MARKER_PREFIX + name
    Operation.begin_if(engine, marker, lambda record: _is_marker(record, marker))
    return True


def _decide(engine: Engine, name: str, api: str) -> Optional[Operation]:
    """The marker's operation if this execution takes the new path; None for the old."""
    run = _patching_run(engine, api)
    marker = MARKER_PREFIX + name
    if name in run.patches:
        raise DBOSPatchNondeterminismError(
            run.workflow_id, marker,
            f"{api}({name!r}) was already called in this workflow (it answered {run.patches[name]}); "
            "call it once per workflow and keep its answer in a variable, or give each patch point "
            "a name of its own",
        )
    op = Operation.begin_if(engine, marker, lambda record: record is None or _is_marker(record, marker))
    run.patches[name] = op is not None
    return op


def _patching_run(engine: Engine, api: str) -> WorkflowRun:
    """The workflow whose code calls ``api``, once it is sure patching may be used."""
    if not engine.patching:
        raise DBOSException(f"{api}() needs patching enabled: set \"enable_patching\": True in the "
                            "DBOS configuration (the application version becomes PATCHING_ENABLED "
                            "unless application_version is set)")
    run = current_run()
    if run is None:
        raise DBOSException(f"{api}() must be called from a workflow's own code, not outside a "
                            "workflow nor inside a step: it decides which code path the workflow takes")
    return run


def _is_marker(record: Optional[StepRecord], marker: str) -> bool:
    return record is not None and record.function_name == marker


def _record_marker(op: Operation) -> None:
    """The marker checkpoint: no output, done as it starts."""
    op.checkpoint(completed_at_ms=op.started_at_ms)
