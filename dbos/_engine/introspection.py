"""Reading workflow statuses: rows turned into ``WorkflowStatus`` objects."""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, Optional, Tuple

from .context import WorkflowRun, current_run
from .engine import Engine
from .._serialization import Codec
from .._status import WorkflowStatus
from .._sysdb.records import StepRecord, StepWrite
from .workflow import checkpoint_step, replayed

logger = logging.getLogger("dbos")

GET_STATUS = "DBOS.getStatus"

_RENAMED = {
    "workflow_uuid": "workflow_id",
    "application_version": "app_version",
    "application_id": "app_id",
    "started_at_epoch_ms": "dequeued_at",
}
_NOT_SHOWN = {"request", "inputs", "output", "error", "owner_xid", "serialization",
              "rate_limited", "debounce_deadline_epoch_ms", "is_debounced"}


def status_from_row(codec: Codec, row: Dict[str, Any]) -> WorkflowStatus:
    """A status object; data that cannot be read back is shown raw, with a warning."""
    fields = {_RENAMED.get(k, k): v for k, v in row.items() if k not in _NOT_SHOWN}
    fields["authenticated_roles"] = _json(row.get("authenticated_roles"))
    fields["attributes"] = _json(row.get("attributes"))
    fields["was_forked_from"] = bool(row.get("was_forked_from"))
    fields["input"] = _defensive(lambda: _inputs(codec, row.get("inputs")), row.get("inputs"))
    fields["output"] = _defensive(lambda: codec.load_value(row.get("output")), row.get("output"))
    error = row.get("error")
    fields["error"] = codec.load_error(error) if error else None
    return WorkflowStatus(**fields)


def _inputs(codec: Codec, text: Optional[str]) -> Optional[Dict[str, Any]]:
    if text is None:
        return None
    args, kwargs = codec.load_inputs(text)
    return {"args": args, "kwargs": kwargs}


def _defensive(load: Any, raw: Any) -> Any:
    try:
        return load()
    except Exception as exc:
        logger.warning(f"Could not deserialize a recorded value ({exc}); showing it raw")
        return raw


def _json(text: Optional[str]) -> Any:
    return json.loads(text) if text else None


def workflow_status(engine: Engine, workflow_id: str) -> Optional[WorkflowStatus]:
    """The status, or None; inside a workflow the answer is checkpointed."""
    run = current_run()
    if run is None:
        return _read(engine, workflow_id)
    function_id, record = _reserve(run)
    if record is not None:
        return _replayed(engine, record)
    return _read_and_record(engine, run, function_id, workflow_id)


async def workflow_status_async(engine: Engine, workflow_id: str) -> Optional[WorkflowStatus]:
    """``workflow_status`` for async code: the function ID is taken before the first ``await``."""
    run = current_run()
    if run is None:
        return await engine.in_pool(_read, engine, workflow_id)
    function_id, record = _reserve(run)
    if record is not None:
        return _replayed(engine, record)
    return await engine.in_pool(_read_and_record, engine, run, function_id, workflow_id)


def _reserve(run: WorkflowRun) -> Tuple[int, Optional[StepRecord]]:
    function_id = run.next_function_id()
    return function_id, run.recorded_step(function_id, GET_STATUS)


def _replayed(engine: Engine, record: StepRecord) -> Optional[WorkflowStatus]:
    result: Optional[WorkflowStatus] = replayed(engine, record)
    return result


def _read_and_record(engine: Engine, run: WorkflowRun, function_id: int,
                     workflow_id: str) -> Optional[WorkflowStatus]:
    status = _read(engine, workflow_id)
    output = engine.codec.dump_value(status, what=f"the status of workflow {workflow_id}")
    write = StepWrite(run.workflow_id, function_id, GET_STATUS, output=output)
    checkpoint_step(engine, write)
    return status


def _read(engine: Engine, workflow_id: str) -> Optional[WorkflowStatus]:
    row = engine.sysdb.workflows.get(workflow_id)
    return status_from_row(engine.codec, row) if row else None
