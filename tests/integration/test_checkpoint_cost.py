"""A fresh workflow writes without reading: one statement, one commit per step."""

from __future__ import annotations

import re
import threading
from collections import Counter

from typing import Any, Iterator, List, Sequence, Tuple

import pytest

from dbos import DBOS, SetWorkflowID
from dbos._sysdb import SystemDatabase

# psycopg2.extensions.TRANSACTION_STATUS_IDLE, named without importing the driver.
TRANSACTION_STATUS_IDLE = 0

Statement = Tuple[str, bool]  # (SQL, sent inside an explicit transaction)
_TARGET = re.compile(r'(?:INTO|UPDATE|FROM)\s+(?:"[^"]+"\.)?"?(\w+)"?')


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[List[Statement]]:
    """Every statement the storage layer sends, as it reaches the driver."""
    log: List[Statement] = []
    original = SystemDatabase.execute
    original_on = SystemDatabase.execute_on

    def watched() -> bool:
        # Background threads (recovery, queue workers) poll on their own.
        return not threading.current_thread().name.startswith(("dbos-recovery", "dbos-queue"))

    def execute(self: SystemDatabase, sql: str, params: Sequence[Any] = ()) -> Any:
        if watched():
            log.append((sql, bool(self._db.in_transaction())))
        return original(self, sql, params)

    def execute_on(self: SystemDatabase, conn: Any, sql: str, params: Sequence[Any]) -> Any:
        # A statement sent on a connection taken straight from the pool:
        # in a transaction if the driver has one open.
        if watched():
            status = getattr(conn, "get_transaction_status", None)  # psycopg2's; sqlite3 has in_transaction
            log.append((sql, status() != TRANSACTION_STATUS_IDLE if status else bool(conn.in_transaction)))
        return original_on(self, conn, sql, params)

    monkeypatch.setattr(SystemDatabase, "execute", execute)
    monkeypatch.setattr(SystemDatabase, "execute_on", execute_on)
    yield log


def kinds(log: List[Statement]) -> List[str]:
    """Each statement as "VERB table"."""
    out = []
    for sql, _ in log:
        target = _TARGET.search(sql)
        out.append(f"{sql.split()[0]} {target.group(1) if target else '?'}")
    return out


def test_fresh_workflow_costs_one_autocommit_write_per_step(
    dbos: type[DBOS], statements: List[Statement]
) -> None:
    @DBOS.step()
    def step(n: int) -> int:
        return n

    @DBOS.workflow()
    def three_steps() -> int:
        return step(1) + step(2) + step(3)

    statements.clear()
    with SetWorkflowID("cheap"):
        assert three_steps() == 6
    assert kinds(statements) == [
        "INSERT workflow_status",
        "INSERT operation_outputs",
        "INSERT operation_outputs",
        "INSERT operation_outputs",
        "UPDATE workflow_status",
    ]
    assert not any(in_txn for _, in_txn in statements), "each write commits by itself"


def test_recovered_workflow_reads_its_steps_once(dbos: type[DBOS], statements: List[Statement]) -> None:
    from dbos._engine.engine import peek_engine
    from dbos._engine.recovery import recover_one
    from tests.probe import execute, qualified

    @DBOS.step()
    def step(n: int) -> int:
        return n

    @DBOS.workflow()
    def three_steps() -> int:
        return step(1) + step(2) + step(3)

    with SetWorkflowID("again"):
        three_steps()
    engine = peek_engine()
    assert engine is not None
    url = engine.sysdb.url.render()
    execute(url, f"UPDATE {qualified(url, 'workflow_status')} SET status = 'PENDING' WHERE workflow_uuid = 'again'")
    execute(url, f"DELETE FROM {qualified(url, 'operation_outputs')} WHERE workflow_uuid = 'again' AND function_id = 3")
    statements.clear()
    assert recover_one(engine, "again").get_result() == 6
    assert kinds(statements) == [
        "UPDATE workflow_status",  # claim: count the recovery attempt
        "SELECT operation_outputs",  # the recorded steps, once
        "INSERT operation_outputs",  # only step 3 runs again
        "UPDATE workflow_status",
    ]


def test_recovery_claims_and_reads_steps_once_per_batch(
    dbos: type[DBOS], statements: List[Statement]
) -> None:
    from dbos._engine.engine import peek_engine
    from dbos._engine.recovery import recover_pending
    from tests.probe import execute, qualified

    @DBOS.step()
    def step(n: int) -> int:
        return n

    @DBOS.workflow()
    def two_steps(n: int) -> int:
        return step(n) + step(10 * n)

    ids = [f"batch-{n}" for n in range(1, 4)]
    for n, workflow_id in enumerate(ids, start=1):
        with SetWorkflowID(workflow_id):
            two_steps(n)
    engine = peek_engine()
    assert engine is not None
    url = engine.sysdb.url.render()
    execute(url, f"UPDATE {qualified(url, 'workflow_status')} SET status = 'PENDING'")
    execute(url, f"DELETE FROM {qualified(url, 'operation_outputs')} WHERE function_id = 2")
    pending = engine.sysdb.pending_attempts(engine.identity.executor_id, engine.identity.app_version)
    statements.clear()
    handles = recover_pending(engine, {w: pending[w] for w in ids})
    assert [h.get_result() for h in handles] == [11, 22, 33]
    # On SQLite the three workflows' checkpoints may share a transaction
    # (group commit), each in a savepoint: still one INSERT or UPDATE apiece.
    found = [kind for kind in kinds(statements) if kind.split()[0] not in ("SAVEPOINT", "RELEASE")]
    assert found[:2] == ["UPDATE workflow_status", "SELECT operation_outputs"]
    assert sorted(found[2:]) == ["INSERT operation_outputs"] * 3 + ["UPDATE workflow_status"] * 3


def _recovery_kind(sql: str) -> str:
    """What a statement of a recovery pass is for, by what it writes."""
    if "MAX_RECOVERY_ATTEMPTS_EXCEEDED" in sql:
        return "dead letter"
    if "recovery_attempts =" in sql:
        return "claim"
    return kinds([(sql, False)])[0]


def test_recovery_costs_three_statements_a_batch_and_each_workflows_own_writes(
    dbos: type[DBOS], statements: List[Statement], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recovering N workflows in batches of B: a claim, a read of the recorded
    steps and a dead-lettering per batch (O(N/B)), then only what each
    workflow that runs again writes itself (its step and its outcome)."""
    from dbos._engine import recovery
    from dbos._engine.engine import peek_engine
    from dbos.error import DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded
    from tests.integration.sysdb_sql import status_row, sys_sql, wait_for_launch_recovery

    wait_for_launch_recovery()
    monkeypatch.setattr(recovery, "RECOVERY_BATCH", 4)

    @DBOS.step()
    def step(n: int) -> int:
        return n

    @DBOS.workflow(max_recovery_attempts=1)
    def limited(n: int) -> int:
        return step(n)

    @DBOS.workflow()
    def unlimited(n: int) -> int:
        return step(n)

    ids = [f"w-{n}" for n in range(10)]  # batches of 4, 4 and 2, each with both kinds
    for n, workflow_id in enumerate(ids):
        with SetWorkflowID(workflow_id):
            (limited if n % 2 == 0 else unlimited)(n)
    # As if every one had been running when its process died; the limited ones
    # have already been recovered twice, so this claim is one too many.
    sys_sql("UPDATE {status} SET status = 'PENDING', output = NULL")
    sys_sql("UPDATE {status} SET recovery_attempts = 2 WHERE name LIKE ?", ("%limited%",))
    sys_sql("UPDATE {status} SET recovery_attempts = 0 WHERE name LIKE ?", ("%unlimited%",))
    sys_sql("DELETE FROM {steps}")
    engine = peek_engine()
    assert engine is not None
    pending = engine.sysdb.pending_attempts(engine.identity.executor_id, engine.identity.app_version)
    statements.clear()
    handles = recovery.recover_pending(engine, {w: pending[w] for w in ids})
    assert [h.workflow_id for h in handles] == ids
    assert [h.get_result() for h in handles[1::2]] == [1, 3, 5, 7, 9]  # ran here: read nothing
    sent = list(statements)
    for handle in handles[::2]:
        with pytest.raises(DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded):
            handle.get_result()
    # Writes that share a transaction (SQLite's group commit) are framed in
    # savepoints: framing, not statements of their own.
    framing = ("SAVEPOINT", "RELEASE", "ROLLBACK")
    assert Counter(_recovery_kind(sql) for sql, _ in sent if sql.split()[0] not in framing) == {
        "claim": 3, "SELECT operation_outputs": 3, "dead letter": 3,  # one each per batch
        "INSERT operation_outputs": 5, "UPDATE workflow_status": 5,  # each workflow that ran: step, outcome
    }
    assert {w: status_row(w)["status"] for w in ids[:4]} == {
        "w-0": "MAX_RECOVERY_ATTEMPTS_EXCEEDED", "w-1": "SUCCESS", "w-2": "MAX_RECOVERY_ATTEMPTS_EXCEEDED",
        "w-3": "SUCCESS"}


def test_a_queue_poll_with_nothing_delayed_writes_nothing(
    dbos: type[DBOS], statements: List[Statement]
) -> None:
    from dbos._engine.engine import peek_engine

    engine = peek_engine()
    assert engine is not None
    statements.clear()
    assert engine.sysdb.promote_delayed("no-such-queue") == 0
    assert kinds(statements) == ["SELECT workflow_status"]
