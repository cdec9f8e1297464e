"""``DBOS.cancel_workflow``: stop a workflow at its next DBOS call, for good.

The row becomes CANCELLED unless the workflow already finished; the body
notices at its next step (at once when it runs in this process or the
PostgreSQL listener hears of it) and stops with ``DBOSWorkflowCancelledError``.
Whoever waits for its result gets ``DBOSAwaitedWorkflowCancelledError``.
"""

from __future__ import annotations

from typing import List

from .context import current_run
from .engine import Engine
from .sysdb.records import StepWrite
from .workflow import checkpoint_step

CANCEL = "DBOS.cancelWorkflow"


def cancel_workflows(engine: Engine, workflow_ids: List[str]) -> None:
    """Inside a workflow the cancellation is a checkpointed step, done once."""
    run = current_run()
    if run is None:
        engine.cancel(workflow_ids)
        return
    function_id = run.next_function_id()
    if run.recorded_step(function_id, CANCEL) is not None:
        return
    engine.cancel(workflow_ids)
    output = engine.codec.dump_value(None, what="a step output")
    write = StepWrite(run.workflow_id, function_id, CANCEL, output=output)
    checkpoint_step(engine, write)
