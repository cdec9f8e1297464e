"""Direct SQL on the launched DBOS's system database, for tests that inspect or rewrite rows.

SQL here is written with ``?`` markers and ``{status}`` / ``{steps}`` for the
two workflow tables; both are translated for the backend in use.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

from dbos._engine.engine import Engine, peek_engine
from dbos._engine.recovery import recover_one

Row = Tuple[Any, ...]
WAIT_S = 30.0  # an upper bound reached only when a test is already failing


def engine() -> Engine:
    found = peek_engine()
    assert found is not None, "DBOS is not launched"
    return found


def sys_sql(sql: str, params: Sequence[Any] = ()) -> List[Row]:
    sysdb = engine().sysdb
    text = sql.format(
        status=sysdb.backend.qualified("workflow_status"),
        steps=sysdb.backend.qualified("operation_outputs"),
    ).replace("?", sysdb.backend.placeholder)

    def work() -> List[Row]:
        cursor = sysdb.execute(text, list(params))
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []

    return sysdb.run(work, transaction=False)


def status_row(workflow_id: str) -> Dict[str, Any]:
    row = engine().sysdb.workflow_row(workflow_id)
    assert row is not None, f"no workflow_status row for {workflow_id}"
    return row


def step_rows(workflow_id: str) -> List[Row]:
    """(function_id, function_name, output, error) of every checkpointed step, in order."""
    return sys_sql(
        "SELECT function_id, function_name, output, error FROM {steps} "
        "WHERE workflow_uuid = ? ORDER BY function_id",
        (workflow_id,),
    )


def count_rows(table: str) -> int:
    return int(sys_sql(f"SELECT COUNT(*) FROM {{{table}}}")[0][0])


def set_pending(workflow_id: str) -> None:
    """Make a finished workflow look like one whose process died mid-run."""
    sys_sql("UPDATE {status} SET status = 'PENDING', output = NULL, error = NULL "
            "WHERE workflow_uuid = ?", (workflow_id,))


def delete_step(workflow_id: str, function_id: int) -> None:
    sys_sql("DELETE FROM {steps} WHERE workflow_uuid = ? AND function_id = ?",
            (workflow_id, function_id))


def loaded_output(text: Optional[str]) -> Any:
    return engine().codec.load_value(text)


def loaded_error(text: Optional[str]) -> BaseException:
    assert text is not None, "no error was recorded"
    return engine().codec.load_error(text)


def recover(workflow_id: str) -> Any:
    """Set the workflow PENDING again, recover it, and return its result."""
    set_pending(workflow_id)
    return recover_one(engine(), workflow_id).get_result()


def wait_for_launch_recovery() -> None:
    """Let the launch's one-off recovery pass end, so it cannot race a test's own."""
    for thread in threading.enumerate():
        if thread.name == "dbos-recovery":
            thread.join(WAIT_S)
            assert not thread.is_alive(), "the launch's recovery pass did not finish"
