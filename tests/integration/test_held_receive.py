"""A receive's consumption held for the workflow's next write, on the backend chosen with ``--backend``.

``DBOS.recv`` in a sync workflow reads its message; the consumption and the
receive's checkpoint are written with the workflow's next write (a send
carries them in its own transaction), before any other operation, or at the
workflow's end. These tests look at the tables through their own
connections (``tests.probe``) while a workflow is held at a gate, and kill a
real process that held a receive.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any, List, Optional, Tuple

import psycopg2
import pytest

from dbos import DBOS, SetWorkflowID
from dbos._engine.engine import peek_engine
from dbos.error import DBOSAwaitedWorkflowCancelledError, DBOSNonExistentWorkflowError
from tests.probe import qualified, query

WAIT_S = 20.0


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def steps(url: str, workflow_id: str) -> List[Tuple[int, str]]:
    found = query(url, f"SELECT function_id, function_name FROM {qualified(url, 'operation_outputs')} "
                       "WHERE workflow_uuid = %s ORDER BY function_id", (workflow_id,))
    return [(int(r[0]), str(r[1])) for r in found]


def consumed(url: str, destination: str) -> List[bool]:
    """Whether each message to ``destination`` is consumed, oldest first."""
    found = query(url, f"SELECT consumed FROM {qualified(url, 'notifications')} "
                       "WHERE destination_uuid = %s ORDER BY created_at_epoch_ms, message_uuid", (destination,))
    return [bool(r[0]) for r in found]


def test_a_received_message_is_consumed_with_the_send_that_answers_it(dbos: type[DBOS], sys_db_url: str) -> None:
    received, go = threading.Event(), threading.Event()

    @DBOS.workflow()
    def answerer(reply_to: str) -> Any:
        message = DBOS.recv("ask", timeout_seconds=WAIT_S)
        received.set()
        assert go.wait(WAIT_S)
        DBOS.send(reply_to, f"re: {message}", "answer")
        return message

    @DBOS.workflow()
    def asker() -> None:
        DBOS.recv("never", timeout_seconds=0)

    asker_id, answerer_id = new_id("asker"), new_id("answerer")
    with SetWorkflowID(asker_id):
        asker()
    with SetWorkflowID(answerer_id):
        handle = DBOS.start_workflow(answerer, asker_id)
    DBOS.send(answerer_id, "question", "ask")
    assert received.wait(WAIT_S)
    # Received, and nothing written yet: the message is unread, the receive unrecorded.
    assert consumed(sys_db_url, answerer_id) == [False]
    assert steps(sys_db_url, answerer_id) == []
    go.set()
    assert handle.get_result() == "question"
    assert consumed(sys_db_url, answerer_id) == [True]
    assert steps(sys_db_url, answerer_id) == [(1, "DBOS.recv"), (3, "DBOS.send")]  # 2: the receive's timer
    assert consumed(sys_db_url, asker_id) == [False]


def test_a_received_message_is_consumed_with_the_event_it_publishes(dbos: type[DBOS], sys_db_url: str) -> None:
    received, go = threading.Event(), threading.Event()

    @DBOS.workflow()
    def publisher() -> None:
        order = DBOS.recv(timeout_seconds=WAIT_S)
        received.set()
        assert go.wait(WAIT_S)
        DBOS.set_event("status", f"{order} accepted")
        DBOS.write_stream("log", order)

    workflow_id = new_id("publisher")
    with SetWorkflowID(workflow_id):
        handle = DBOS.start_workflow(publisher)
    DBOS.send(workflow_id, "o-1")
    assert received.wait(WAIT_S)
    assert consumed(sys_db_url, workflow_id) == [False]
    go.set()
    assert DBOS.get_event(workflow_id, "status", timeout_seconds=WAIT_S) == "o-1 accepted"
    handle.get_result()
    assert consumed(sys_db_url, workflow_id) == [True]
    assert [name for _, name in steps(sys_db_url, workflow_id)] == ["DBOS.recv", "DBOS.setEvent", "DBOS.writeStream"]


def test_a_received_message_is_consumed_before_the_next_step_runs(dbos: type[DBOS], sys_db_url: str) -> None:
    @DBOS.step()
    def look(workflow_id: str) -> List[bool]:
        return consumed(sys_db_url, workflow_id)

    @DBOS.workflow()
    def receiver() -> Tuple[Any, List[bool]]:
        message = DBOS.recv(timeout_seconds=WAIT_S)
        return message, look(DBOS.workflow_id or "")

    workflow_id = new_id("stepper")
    with SetWorkflowID(workflow_id):
        handle = DBOS.start_workflow(receiver)
    DBOS.send(workflow_id, "hello")
    assert handle.get_result() == ("hello", [True])
    names = [name for _, name in steps(sys_db_url, workflow_id)]
    assert names[0] == "DBOS.recv" and names[1].endswith("look") and len(names) == 2


def test_a_workflow_that_ends_holding_a_receive_records_it(dbos: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    def last_word() -> Any:
        return DBOS.recv(timeout_seconds=WAIT_S)

    workflow_id = new_id("last")
    with SetWorkflowID(workflow_id):
        handle = DBOS.start_workflow(last_word)
    DBOS.send(workflow_id, "bye")
    assert handle.get_result() == "bye"
    assert consumed(sys_db_url, workflow_id) == [True]
    assert steps(sys_db_url, workflow_id) == [(1, "DBOS.recv")]


def test_a_failed_send_leaves_the_receive_for_the_next_write(dbos: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    def misdirected() -> Tuple[Any, Any]:
        message = DBOS.recv(timeout_seconds=WAIT_S)
        try:
            DBOS.send("nobody-" + uuid.uuid4().hex, "lost")
        except DBOSNonExistentWorkflowError:
            pass
        return message, DBOS.recv(timeout_seconds=WAIT_S)

    workflow_id = new_id("misdirected")
    with SetWorkflowID(workflow_id):
        handle = DBOS.start_workflow(misdirected)
    DBOS.send(workflow_id, "first")
    DBOS.send(workflow_id, "second")
    assert handle.get_result() == ("first", "second")
    assert consumed(sys_db_url, workflow_id) == [True, True]
    assert [name for _, name in steps(sys_db_url, workflow_id)] == ["DBOS.recv", "DBOS.recv"]


def test_async_receives_at_once_take_a_message_each(dbos: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    async def pair() -> List[Any]:
        return list(await asyncio.gather(DBOS.recv_async(timeout_seconds=WAIT_S),
                                         DBOS.recv_async(timeout_seconds=WAIT_S)))

    async def main() -> Tuple[str, List[Any]]:
        handle = await DBOS.start_workflow_async(pair)
        for message in ("a", "b"):
            await DBOS.send_async(handle.workflow_id, message)
        return handle.workflow_id, await handle.get_result()

    workflow_id, result = asyncio.run(main())
    assert sorted(result) == ["a", "b"]
    assert consumed(sys_db_url, workflow_id) == [True, True]


def test_a_workflow_cancelled_while_holding_a_receive_stops_at_its_next_operation(
    dbos: type[DBOS], sys_db_url: str
) -> None:
    received, go = threading.Event(), threading.Event()

    @DBOS.step()
    def never_runs() -> None:
        raise AssertionError("a cancelled workflow ran its next step")

    @DBOS.workflow()
    def holder() -> None:
        DBOS.recv(timeout_seconds=WAIT_S)
        received.set()
        assert go.wait(WAIT_S)
        never_runs()

    workflow_id = new_id("holder")
    with SetWorkflowID(workflow_id):
        handle = DBOS.start_workflow(holder)
    DBOS.send(workflow_id, "m")
    assert received.wait(WAIT_S)
    DBOS.cancel_workflow(workflow_id)
    go.set()
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert [name for _, name in steps(sys_db_url, workflow_id)] == ["DBOS.recv"]


HOLDER_APP = textwrap.dedent(
    """
    import sys, threading
    from dbos import DBOS, DBOSConfig, SetWorkflowID

    @DBOS.step()
    def after(message):
        return f"after {message}"

    @DBOS.workflow()
    def holder():
        message = DBOS.recv(timeout_seconds=60)
        if mode == "start":
            print("RECEIVED", message, flush=True)
            threading.Event().wait()  # held, unwritten, until killed
        return after(message)

    mode, url, workflow_id = sys.argv[1:4]
    DBOS(config=DBOSConfig(name="holder", system_database_url=url, application_version="v1"))
    DBOS.launch()
    if mode == "start":
        with SetWorkflowID(workflow_id):
            DBOS.start_workflow(holder)
        threading.Event().wait()
    else:
        print(f"RESULT {DBOS.retrieve_workflow(workflow_id).get_result()!r}", flush=True)
        DBOS.destroy()
    """
)


def test_a_process_killed_holding_a_receive_receives_the_same_message_once_recovered(
    dbos: type[DBOS], sys_db_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "holder_app.py"
    script.write_text(HOLDER_APP)
    workflow_id = new_id("held")
    command = [sys.executable, str(script), "start", sys_db_url, workflow_id]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while DBOS.get_workflow_status(workflow_id) is None:
            assert first.poll() is None, first.communicate()[1]
            threading.Event().wait(0.02)
        DBOS.send(workflow_id, "only")
        line = _line(first)
        assert line == "RECEIVED only", line
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=WAIT_S)
    assert consumed(sys_db_url, workflow_id) == [False]  # the kill lost the receive: the message waits
    command[2] = "resume"
    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert "RESULT 'after only'" in second.stdout
    assert consumed(sys_db_url, workflow_id) == [True]
    assert [name for _, name in steps(sys_db_url, workflow_id)] == ["DBOS.recv", "after"]


def _line(child: "subprocess.Popen[str]") -> Optional[str]:
    assert child.stdout is not None
    line = child.stdout.readline()
    return line.strip() if line else None


def test_a_send_to_a_workflow_waiting_here_tells_no_other_process(
    dbos: type[DBOS], sys_db_url: str, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("PostgreSQL's NOTIFY is observable from another connection")
    heard = _listening(sys_db_url)

    @DBOS.workflow()
    def waiter() -> Any:
        return DBOS.recv(timeout_seconds=WAIT_S)

    @DBOS.workflow()
    def sender(destination: str) -> None:
        DBOS.send(destination, "here")

    @DBOS.workflow()
    def idle() -> None:
        pass

    waiting_id, finished_id = new_id("waiting"), new_id("finished")
    with SetWorkflowID(waiting_id):
        handle = DBOS.start_workflow(waiter)
    engine = peek_engine()
    assert engine is not None
    while not engine.waiters.waiting(f"msg::{waiting_id}::__null__topic__"):
        threading.Event().wait(0.01)
    sender(waiting_id)
    assert handle.get_result() == "here"
    with SetWorkflowID(waiting_id + "-again"):
        handle = DBOS.start_workflow(waiter)
    while not engine.waiters.waiting(f"msg::{waiting_id}-again::__null__topic__"):
        threading.Event().wait(0.01)
    DBOS.send(waiting_id + "-again", "from outside a workflow")
    assert handle.get_result() == "from outside a workflow"
    with SetWorkflowID(finished_id):
        idle()  # a workflow that has ended: nothing here waits for its messages
    sender(finished_id)
    payloads = heard()
    assert f"msg::{waiting_id}::__null__topic__" not in payloads  # woken here, not announced
    assert f"msg::{waiting_id}-again::__null__topic__" not in payloads
    assert f"msg::{finished_id}::__null__topic__" in payloads  # nobody here waits: announced


def _listening(url: str) -> Any:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    conn.cursor().execute("LISTEN dbos_notify")

    def heard() -> List[str]:
        conn.poll()
        payloads = [n.payload for n in conn.notifies]
        conn.close()
        return payloads
    return heard
