"""SIGTERM to a real DBOS process: it stops taking work, lets the running
workflow finish for up to ``shutdown_timeout_sec``, then exits as SIGTERM
exits; what did not finish stays PENDING and the next launch finishes it.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator

import pytest

from dbos import DBOSClient

from .child import WAIT_S, Child

pytestmark = pytest.mark.acceptance

APP = str(Path(__file__).with_name("sigterm_app.py"))
WORKFLOW = "sigterm-wf"
BEHIND = [f"{WORKFLOW}-behind-{n}" for n in range(3)]


@pytest.fixture
def client(sys_db_url: str) -> Iterator[DBOSClient]:
    client = DBOSClient(system_database_url=sys_db_url)
    yield client
    client.destroy()


def statuses(client: DBOSClient) -> Dict[str, str]:
    return {w.workflow_id: w.status for w in client.list_workflows(workflow_id_prefix=WORKFLOW)}


def executions(count_file: Path) -> Counter[str]:
    return Counter(count_file.read_text().splitlines()) if count_file.exists() else Counter()


def terminate(child: Child) -> None:
    """SIGTERM, then the process must end by SIGTERM, as a supervisor expects."""
    child.proc.send_signal(signal.SIGTERM)
    assert child.proc.wait(timeout=WAIT_S) == -signal.SIGTERM, child.log_tail()
    assert "SIGTERM received" in child.log.read_text()


def terminated_in_step_2(tmp_path: Path, sys_db_url: str, counts: Path, *settings: str) -> None:
    """Run the app with ``settings`` (its shutdown timeout, then "1" if step 2 hangs) and SIGTERM it in step 2."""
    child = Child(APP, tmp_path, "run", "run", sys_db_url, str(counts), WORKFLOW, *settings)
    try:
        child.expect("IN_STEP 2")
        terminate(child)
    finally:
        child.reap()


def test_sigterm_with_a_short_timeout_leaves_the_workflow_pending_for_the_next_launch(
        sys_db_url: str, tmp_path: Path, client: DBOSClient) -> None:
    counts = tmp_path / "count"
    terminated_in_step_2(tmp_path, sys_db_url, counts, "0.2", "1")
    found = statuses(client)
    assert found[WORKFLOW] == "PENDING"
    assert [found[w] for w in BEHIND] == ["ENQUEUED"] * 3
    assert len(client.list_workflow_steps(WORKFLOW)) == 1  # step 1; step 2 was cut short

    again = Child(APP, tmp_path, "recover", "recover", sys_db_url, str(counts), WORKFLOW)
    try:
        assert again.expect("RESULT") == "RESULT 14"
        assert again.proc.wait(timeout=WAIT_S) == 0, again.log_tail()
    finally:
        again.reap()
    ran = executions(counts)
    assert ran[f"{WORKFLOW} 1"] == 1  # checkpointed before SIGTERM: not run again
    assert ran[f"{WORKFLOW} 2"] == 2  # cut short by the exit, never checkpointed: run again
    assert ran[f"{WORKFLOW} 3"] == 1


def test_sigterm_with_a_long_timeout_lets_the_workflow_finish_and_claims_no_more(
        sys_db_url: str, tmp_path: Path, client: DBOSClient) -> None:
    counts = tmp_path / "count"
    terminated_in_step_2(tmp_path, sys_db_url, counts, "60", "0")
    found = statuses(client)
    assert found[WORKFLOW] == "SUCCESS"
    assert client.retrieve_workflow(WORKFLOW).get_result() == 14
    assert [found[w] for w in BEHIND] == ["ENQUEUED"] * 3  # the freed slot was not used
    assert all(not line.startswith(tuple(BEHIND)) for line in executions(counts))
