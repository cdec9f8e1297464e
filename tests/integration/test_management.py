"""Workflow management on the ``DBOS`` class, on the backend chosen with ``--backend``.

Listing with every filter (values are always plain values, never SQL),
steps, cancel, resume, fork, delete, garbage collection and global timeout;
inside a workflow each call is a checkpointed step.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any, Callable, Dict, Iterator, List

import pytest

from dbos import DBOS, DBOSConfig, Queue, SetWorkflowID
from dbos.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSException,
    DBOSNonExistentWorkflowError,
)
from dbos._queues.queue import current_intake
from tests.integration.sysdb_sql import count_rows, engine, set_pending, status_row, sys_sql
from tests.probe import query

WAIT_S = 30.0


@pytest.fixture
def app(config: DBOSConfig) -> Iterator[Dict[str, Any]]:
    """A launched app with a few workflows of each kind; the record of calls made."""
    calls: Dict[str, int] = {}

    def count(name: str) -> None:
        calls[name] = calls.get(name, 0) + 1

    @DBOS.step(name="one")
    def one(x: int) -> int:
        count("one")
        return x + 1

    @DBOS.step(name="fails")
    def fails() -> None:
        count("fails")
        raise ValueError("step failed on purpose")

    @DBOS.workflow(name="adder")
    def adder(x: int) -> int:
        return one(x)

    @DBOS.workflow(name="breaker")
    def breaker() -> None:
        fails()

    DBOS(config=config)
    DBOS.launch()
    yield {"calls": calls, "adder": adder, "breaker": breaker}


def ids(statuses: List[Any]) -> List[str]:
    return [s.workflow_id for s in statuses]


def start_with_id(workflow_id: str, func: Callable[..., Any], *args: Any) -> Any:
    with SetWorkflowID(workflow_id):
        return DBOS.start_workflow(func, *args)


# ----------------------------------------------------------------------
# Listing
# ----------------------------------------------------------------------


def test_list_filters_by_status_name_ids_and_prefix(app: Dict[str, Any]) -> None:
    for i in range(3):
        with SetWorkflowID(f"add-{i}"):
            app["adder"](i)
    with SetWorkflowID("break-1"), pytest.raises(ValueError):
        app["breaker"]()
    assert ids(DBOS.list_workflows()) == ["add-0", "add-1", "add-2", "break-1"]
    assert ids(DBOS.list_workflows(status="ERROR")) == ["break-1"]
    assert ids(DBOS.list_workflows(status=["ERROR", "SUCCESS"], name="adder")) == ["add-0", "add-1", "add-2"]
    assert ids(DBOS.list_workflows(workflow_ids=["add-2", "break-1", "nope"])) == ["add-2", "break-1"]
    assert ids(DBOS.list_workflows(workflow_id_prefix="add-")) == ["add-0", "add-1", "add-2"]
    assert ids(DBOS.list_workflows(workflow_id_prefix=["add-1", "break"])) == ["add-1", "break-1"]


def test_list_orders_pages_and_loads_on_request(app: Dict[str, Any]) -> None:
    for i in range(4):
        with SetWorkflowID(f"w{i}"):
            app["adder"](i)
    assert ids(DBOS.list_workflows(sort_desc=True)) == ["w3", "w2", "w1", "w0"]
    assert ids(DBOS.list_workflows(limit=2)) == ["w0", "w1"]
    assert ids(DBOS.list_workflows(limit=2, offset=1)) == ["w1", "w2"]
    assert ids(DBOS.list_workflows(offset=3)) == ["w3"]
    full = DBOS.list_workflows(workflow_ids=["w2"])[0]
    assert full.input == {"args": (2,), "kwargs": {}} and full.output == 3
    bare = DBOS.list_workflows(workflow_ids=["w2"], load_input=False, load_output=False)[0]
    assert bare.input is None and bare.output is None and bare.status == "SUCCESS"


def test_list_filters_by_time(app: Dict[str, Any]) -> None:
    with SetWorkflowID("early"):
        app["adder"](1)
    created = status_row("early")["created_at"]
    later = created + 60_000
    sys_sql("UPDATE {status} SET created_at = ?, completed_at = ? WHERE workflow_uuid = ?",
            (later, later, "early"))
    with SetWorkflowID("now"):
        app["adder"](2)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(later / 1000))
    assert ids(DBOS.list_workflows(start_time=iso)) == ["early"]
    assert ids(DBOS.list_workflows(end_time=iso)) == ["now"]
    assert ids(DBOS.list_workflows(completed_after=iso)) == ["early"]
    assert ids(DBOS.list_workflows(completed_before=iso)) == ["now"]
    with pytest.raises(DBOSException, match="start_time must be an ISO-8601 time"):
        DBOS.list_workflows(start_time="yesterday")


def test_filter_values_are_plain_values(app: Dict[str, Any]) -> None:
    tricky = ["it's", "100%", "a_b", "x' OR '1'='1", "DROP TABLE workflow_status; --"]
    for workflow_id in tricky + ["itxs", "100 percent", "aXb"]:
        with SetWorkflowID(workflow_id):
            app["adder"](1)
    for workflow_id in tricky:
        assert ids(DBOS.list_workflows(workflow_ids=[workflow_id])) == [workflow_id]
    assert ids(DBOS.list_workflows(workflow_id_prefix="100%")) == ["100%"]
    assert ids(DBOS.list_workflows(workflow_id_prefix="a_")) == ["a_b"]
    assert ids(DBOS.list_workflows(workflow_id_prefix="it'")) == ["it's"]
    assert DBOS.list_workflows(name="adder' OR '1'='1") == []
    assert DBOS.list_workflows(user="%") == []
    assert count_rows("status") == 8


def test_list_refuses_bad_filters(app: Dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="statuss"):
        DBOS.list_workflows(statuss="SUCCESS")
    with pytest.raises(DBOSException, match="Unknown workflow status 'DONE'"):
        DBOS.list_workflows(status="DONE")
    with pytest.raises(DBOSException, match="limit must be a non-negative integer"):
        DBOS.list_workflows(limit=-1)


def test_list_filters_by_lineage_queue_and_owner(app: Dict[str, Any]) -> None:
    @DBOS.workflow(name="parent")
    def parent() -> int:
        return int(app["adder"](5))

    with SetWorkflowID("parent"):
        parent()
    assert ids(DBOS.list_workflows(parent_workflow_id="parent")) == ["parent-1"]
    assert ids(DBOS.list_workflows(has_parent=True)) == ["parent-1"]
    assert ids(DBOS.list_workflows(has_parent=False)) == ["parent"]
    fork = DBOS.fork_workflow("parent", 1)
    assert fork.get_result(polling_interval_sec=0.05) == 6
    assert ids(DBOS.list_workflows(forked_from="parent")) == [fork.workflow_id]
    assert ids(DBOS.list_workflows(was_forked_from=True)) == ["parent"]
    assert ids(DBOS.list_workflows(queue_name="_dbos_internal_queue")) == [fork.workflow_id]
    assert sorted(ids(DBOS.list_workflows(executor_id="local", name="parent"))) == sorted(
        ["parent", fork.workflow_id])
    assert DBOS.list_workflows(app_version="other-version") == []
    sys_sql("UPDATE {status} SET application_name = 'another-app' WHERE workflow_uuid = ?", ("parent",))
    assert "parent" not in ids(DBOS.list_workflows())
    assert ids(DBOS.list_workflows(application_name="another-app", name="parent")) == ["parent"]
    assert ids(DBOS.list_workflows(workflow_ids=["parent"])) == ["parent"]  # ID lookups see every app


def test_list_by_attributes(app: Dict[str, Any], backend: str) -> None:
    with SetWorkflowID("tagged"):
        app["adder"](1)
    with SetWorkflowID("plain"):
        app["adder"](2)
    sys_sql("UPDATE {status} SET attributes = ? WHERE workflow_uuid = ?",
            (json.dumps({"team": "o'brien", "tier": 1}), "tagged"))
    if backend == "sqlite":
        with pytest.raises(DBOSException, match="needs PostgreSQL"):
            DBOS.list_workflows(attributes={"team": "o'brien"})
        return
    assert ids(DBOS.list_workflows(attributes={"team": "o'brien"})) == ["tagged"]
    assert DBOS.list_workflows(attributes={"team": "x"}) == []


def test_list_queued_workflows(app: Dict[str, Any]) -> None:
    idle = Queue("idle-queue", worker_concurrency=1)
    with SetWorkflowID("done"):
        app["adder"](1)
    sys_sql("UPDATE {status} SET queue_name = 'idle-queue' WHERE workflow_uuid = 'done'")
    current_intake().stop()  # nothing claims from here on
    handles = [start_with_enqueue(idle, f"q{i}", app["adder"], i) for i in range(3)]
    assert ids(DBOS.list_queued_workflows()) == [h.workflow_id for h in handles]
    assert ids(DBOS.list_queued_workflows(queue_name="idle-queue", limit=1, sort_desc=True)) == ["q2"]
    assert ids(DBOS.list_queued_workflows(status="SUCCESS")) == ["done"]
    assert ids(DBOS.list_queued_workflows(queue_name="other")) == []


def start_with_enqueue(queue: Queue, workflow_id: str, func: Callable[..., Any], *args: Any) -> Any:
    with SetWorkflowID(workflow_id):
        return queue.enqueue(func, *args)


# ----------------------------------------------------------------------
# Steps
# ----------------------------------------------------------------------


def test_list_steps_shows_every_operation(app: Dict[str, Any]) -> None:
    @DBOS.workflow(name="busy")
    def busy() -> int:
        DBOS.set_event("k", 1)
        value = app["adder"](1)
        DBOS.sleep(0.001)
        DBOS.recv("topic", timeout_seconds=0)
        try:
            app["breaker"]()
        except ValueError:
            pass
        return int(value)

    with SetWorkflowID("busy"):
        busy()
    steps = DBOS.list_workflow_steps("busy")
    names = [s["function_name"] for s in steps]
    # The recv's timeout keeps function ID 6, but a wait that short records no wake-up time.
    assert names == ["DBOS.setEvent", "adder", "DBOS.getResult", "DBOS.sleep", "DBOS.recv",
                     "breaker", "DBOS.getResult"]
    assert [s["function_id"] for s in steps] == [1, 2, 3, 4, 5, 7, 8]
    assert steps[1]["child_workflow_id"] == "busy-2" and steps[2]["output"] == 2
    assert isinstance(steps[6]["error"], ValueError) and steps[6]["output"] is None
    assert all(s["completed_at_epoch_ms"] for s in steps)
    child = DBOS.list_workflow_steps("busy-2")
    assert [(s["function_name"], s["output"]) for s in child] == [("one", 2)]
    bare = DBOS.list_workflow_steps("busy", load_output=False, limit=2, offset=1)
    assert [(s["function_id"], s["output"]) for s in bare] == [(2, None), (3, None)]
    assert DBOS.list_workflow_steps("no-such-workflow") == []


def test_unreadable_step_output_is_shown_raw(app: Dict[str, Any]) -> None:
    with SetWorkflowID("raw"):
        app["adder"](1)
    sys_sql("UPDATE {steps} SET output = 'not a pickle' WHERE workflow_uuid = 'raw'")
    assert DBOS.list_workflow_steps("raw")[0]["output"] == "not a pickle"


# ----------------------------------------------------------------------
# Cancel and resume
# ----------------------------------------------------------------------


def test_resume_a_cancelled_workflow(app: Dict[str, Any]) -> None:
    @DBOS.workflow(name="waiter")
    def waiter() -> str:
        app["adder"](1)
        return f"got {DBOS.recv('go', timeout_seconds=WAIT_S)}"

    handle = start_with_id("waiter", waiter)
    DBOS.cancel_workflow("waiter")
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert DBOS.get_workflow_status("waiter").status == "CANCELLED"
    resumed = DBOS.resume_workflow("waiter")
    row = status_row("waiter")
    assert row["queue_name"] == "_dbos_internal_queue" and row["recovery_attempts"] in (0, 1)
    DBOS.send("waiter", "it", "go")
    assert resumed.get_result(polling_interval_sec=0.05) == "got it"
    assert app["calls"]["one"] == 1  # the step before the cancellation was not re-run


def test_resume_checks_every_id_first(app: Dict[str, Any]) -> None:
    with SetWorkflowID("finished"):
        app["adder"](1)
    set_pending("finished")
    sys_sql("UPDATE {status} SET status = 'CANCELLED' WHERE workflow_uuid = 'finished'")
    with pytest.raises(DBOSNonExistentWorkflowError, match="missing-1"):
        DBOS.resume_workflows(["finished", "missing-1"])
    assert status_row("finished")["status"] == "CANCELLED"


def test_resume_leaves_finished_workflows_alone(app: Dict[str, Any]) -> None:
    with SetWorkflowID("ok"):
        app["adder"](1)
    before = status_row("ok")
    assert DBOS.resume_workflow("ok").get_result() == 2
    assert status_row("ok") == before


def test_resume_a_dead_lettered_workflow(app: Dict[str, Any]) -> None:
    with SetWorkflowID("dead"):
        app["adder"](1)
    set_pending("dead")
    sys_sql("UPDATE {status} SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', recovery_attempts = 102 "
            "WHERE workflow_uuid = 'dead'")
    assert DBOS.resume_workflow("dead").get_result(polling_interval_sec=0.05) == 2
    assert status_row("dead")["recovery_attempts"] == 1
    assert app["calls"]["one"] == 1  # the recorded step replayed


def test_cancel_with_children(app: Dict[str, Any]) -> None:
    started, release = threading.Event(), threading.Event()

    @DBOS.step(name="hold")
    def hold() -> None:
        started.set()
        release.wait(WAIT_S)

    @DBOS.workflow(name="child")
    def child() -> None:
        hold()
        DBOS.recv("never", timeout_seconds=WAIT_S)

    @DBOS.workflow(name="parent")
    def parent() -> None:
        DBOS.start_workflow(child).get_result()

    handle = start_with_id("family", parent)
    assert started.wait(WAIT_S)
    DBOS.cancel_workflow("family", cancel_children=True)
    release.set()
    assert status_row("family")["status"] == "CANCELLED"
    assert status_row("family-1")["status"] == "CANCELLED"
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()


# ----------------------------------------------------------------------
# Fork
# ----------------------------------------------------------------------


@pytest.fixture
def three_steps(app: Dict[str, Any]) -> Dict[str, Any]:
    calls: List[str] = []

    @DBOS.step(name="step")
    def step(name: str) -> str:
        calls.append(name)
        return name.upper()

    @DBOS.workflow(name="pipeline")
    def pipeline(tag: str) -> str:
        a = step(f"a-{tag}")      # function 1
        DBOS.set_event("stage", "one")  # 2
        DBOS.write_stream("log", a)     # 3
        b = step(f"b-{tag}")      # 4
        DBOS.set_event("stage", "two")  # 5
        DBOS.write_stream("log", b)     # 6
        c = step(f"c-{tag}")      # 7
        return "".join([a, b, c])

    with SetWorkflowID("orig"):
        assert pipeline("x") == "A-XB-XC-X"
    calls.clear()
    return {"calls": calls, "pipeline": pipeline}


def test_fork_from_a_middle_step(three_steps: Dict[str, Any]) -> None:
    handle = DBOS.fork_workflow("orig", 4)
    assert handle.get_result(polling_interval_sec=0.05) == "A-XB-XC-X"
    assert three_steps["calls"] == ["b-x", "c-x"]  # step 1 replayed, 4 and 7 ran again
    new = handle.workflow_id
    status = DBOS.get_workflow_status(new)
    assert status.forked_from == "orig" and status.queue_name == "_dbos_internal_queue"
    assert DBOS.get_workflow_status("orig").was_forked_from is True
    assert [s["function_name"] for s in DBOS.list_workflow_steps(new)] == [
        s["function_name"] for s in DBOS.list_workflow_steps("orig")]
    assert DBOS.get_event(new, "stage", 0) == "two"
    assert list(DBOS.read_stream(new, "log")) == ["A-X", "B-X"]


def test_fork_copies_history_before_the_start_step_only(three_steps: Dict[str, Any]) -> None:
    current_intake().stop()  # keep the fork ENQUEUED to look at what it inherited
    new = DBOS.fork_workflow("orig", 4).workflow_id
    assert status_row(new)["status"] == "ENQUEUED"
    assert [s["function_id"] for s in DBOS.list_workflow_steps(new)] == [1, 2, 3]
    assert DBOS.get_event(new, "stage", 0) == "one"
    streams = sys_sql(f"SELECT value FROM {engine().sysdb.backend.qualified('streams')} "
                      "WHERE workflow_uuid = ?", (new,))
    assert len(streams) == 1


def test_restart_runs_everything_again_with_a_chosen_id(three_steps: Dict[str, Any]) -> None:
    with SetWorkflowID("again"):
        handle = DBOS.fork_workflow("orig", 1, application_version=DBOS.application_version)
    assert handle.workflow_id == "again"
    assert handle.get_result(polling_interval_sec=0.05) == "A-XB-XC-X"
    assert three_steps["calls"] == ["a-x", "b-x", "c-x"]
    assert status_row("again")["application_version"] == DBOS.application_version


def test_fork_errors(three_steps: Dict[str, Any]) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError, match="missing"):
        DBOS.fork_workflow("missing", 1)
    with pytest.raises(DBOSException, match="start_step must be an integer of 1 or more"):
        DBOS.fork_workflow("orig", 0)
    with pytest.raises(DBOSException, match="timeout_seconds must be positive"):
        DBOS.fork_workflow("orig", 1, timeout_seconds=0)
    with SetWorkflowID("orig"), pytest.raises(DBOSException, match="different workflow"):
        DBOS.fork_workflow("orig", 1)
    assert count_rows("status") == 1


def test_fork_replaces_children(app: Dict[str, Any]) -> None:
    @DBOS.workflow(name="parent")
    def parent() -> int:
        return int(app["adder"](1)) + 1

    with SetWorkflowID("p"):
        parent()
    current_intake().stop()
    new = DBOS.fork_workflow("p", 3, replacement_children={"p-1": "other-child"}).workflow_id
    assert [s["child_workflow_id"] for s in DBOS.list_workflow_steps(new)] == ["other-child", "other-child"]


# ----------------------------------------------------------------------
# Delete and garbage collection
# ----------------------------------------------------------------------


def test_delete_removes_everything_recorded(app: Dict[str, Any]) -> None:
    @DBOS.workflow(name="parent")
    def parent() -> None:
        DBOS.set_event("e", 1)
        DBOS.write_stream("s", 1)
        app["adder"](1)

    with SetWorkflowID("gone"):
        parent()
    with SetWorkflowID("kept"):
        app["adder"](2)
    DBOS.delete_workflow("gone")
    assert ids(DBOS.list_workflows()) == ["gone-3", "kept"]
    DBOS.delete_workflow("kept")
    with SetWorkflowID("gone2"):
        parent()
    DBOS.delete_workflows(["gone2", "gone-3"], delete_children=True)
    assert DBOS.list_workflows() == []
    for table in ("steps",):
        assert count_rows(table) == 0
    backend = engine().sysdb.backend
    for table in ("workflow_events", "workflow_events_history", "streams"):
        assert sys_sql(f"SELECT COUNT(*) FROM {backend.qualified(table)}")[0][0] == 0


def test_garbage_collect_keeps_active_and_newest(app: Dict[str, Any]) -> None:
    current_intake().stop()
    for i in range(5):
        with SetWorkflowID(f"old-{i}"):
            app["adder"](i)
        sys_sql("UPDATE {status} SET created_at = ? WHERE workflow_uuid = ?", (1000 + i, f"old-{i}"))
    start_with_enqueue(Queue("never-served"), "waiting", app["adder"], 1)
    sys_sql("UPDATE {status} SET created_at = 500 WHERE workflow_uuid = 'waiting'")
    assert DBOS.garbage_collect(rows_threshold=2) == 3
    assert ids(DBOS.list_workflows()) == ["waiting", "old-3", "old-4"]
    assert DBOS.garbage_collect(cutoff_epoch_timestamp_ms=1004) == 1
    assert ids(DBOS.list_workflows()) == ["waiting", "old-4"]
    with pytest.raises(DBOSException, match="cutoff_epoch_timestamp_ms or rows_threshold"):
        DBOS.garbage_collect()


def test_global_timeout_cancels_old_active_workflows(app: Dict[str, Any]) -> None:
    current_intake().stop()
    queue = Queue("never-served")
    start_with_enqueue(queue, "old", app["adder"], 1)
    sys_sql("UPDATE {status} SET created_at = 10 WHERE workflow_uuid = 'old'")
    start_with_enqueue(queue, "new", app["adder"], 2)
    with SetWorkflowID("done"):
        app["adder"](3)
    sys_sql("UPDATE {status} SET created_at = 10 WHERE workflow_uuid = 'done'")
    DBOS.global_timeout(1000)
    assert status_row("old")["status"] == "CANCELLED"
    assert status_row("new")["status"] == "ENQUEUED"
    assert status_row("done")["status"] == "SUCCESS"


# ----------------------------------------------------------------------
# Inside workflows and transactions; async twins
# ----------------------------------------------------------------------


def test_management_calls_are_steps_inside_workflows(app: Dict[str, Any]) -> None:
    @DBOS.workflow(name="operator")
    def operator() -> List[str]:
        seen = ids(DBOS.list_workflows(name="adder"))
        forked = DBOS.fork_workflow("a1", 1).workflow_id
        DBOS.list_workflow_steps("a1")
        return seen + [forked]

    with SetWorkflowID("a1"):
        app["adder"](1)
    with SetWorkflowID("op"):
        first = operator()
    names = [s["function_name"] for s in DBOS.list_workflow_steps("op")]
    assert names == ["DBOS.listWorkflows", "DBOS.forkWorkflow", "DBOS.listWorkflowSteps"]
    with SetWorkflowID("a2"):
        app["adder"](2)
    set_pending("op")
    from dbos._engine.recovery import recover_one

    replay = recover_one(engine(), "op").get_result()
    assert replay == first  # the listing and the fork replayed, not re-run
    assert len(DBOS.list_workflows(forked_from="a1")) == 1


def test_management_calls_are_refused_in_transactions(config: DBOSConfig, tmp_path: Any) -> None:
    config["application_database_url"] = f"sqlite:///{tmp_path}/app.sqlite"

    @DBOS.transaction()
    def sneaky() -> None:
        DBOS.list_workflows()

    @DBOS.workflow(name="wf")
    def wf() -> None:
        sneaky()

    DBOS(config=config)
    DBOS.launch()
    with pytest.raises(DBOSException, match="cannot be called from within a transaction"):
        wf()


def test_async_twins(app: Dict[str, Any]) -> None:
    @DBOS.workflow(name="waiter")
    async def waiter() -> Any:
        return await DBOS.recv_async("go", timeout_seconds=WAIT_S)

    async def scenario() -> Any:
        with SetWorkflowID("aw"):
            handle = await DBOS.start_workflow_async(waiter)
        await DBOS.cancel_workflow_async("aw")
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            await handle.get_result()
        listed = await DBOS.list_workflows_async(status="CANCELLED")
        resumed = await DBOS.resume_workflow_async("aw")
        await DBOS.send_async("aw", 42, "go")
        result = await resumed.get_result(polling_interval_sec=0.05)
        steps = await DBOS.list_workflow_steps_async("aw")
        forked = await DBOS.fork_workflow_async("aw", 1)
        await DBOS.send_async(forked.workflow_id, 43, "go")
        fork_result = await forked.get_result(polling_interval_sec=0.05)
        queued = await DBOS.list_queued_workflows_async()
        await DBOS.delete_workflow_async("aw")
        return ids(listed), result, [s["function_name"] for s in steps], fork_result, queued

    listed, result, steps, fork_result, queued = asyncio.run(scenario())
    assert listed == ["aw"] and result == 42 and fork_result == 43 and queued == []
    # The recv's wake-up time is recorded only if it waited a while.
    assert [name for name in steps if name != "DBOS.sleep"] == ["DBOS.recv"]
    assert DBOS.get_workflow_status("aw") is None


def test_delete_and_collect_remove_transaction_outputs(config: DBOSConfig, tmp_path: Any) -> None:
    app_url = f"sqlite:///{tmp_path}/app.sqlite"
    config["application_database_url"] = app_url

    @DBOS.transaction(name="write")
    def write(x: int) -> int:
        return x * 2

    @DBOS.workflow(name="writer")
    def writer(x: int) -> int:
        return int(write(x))

    DBOS(config=config)
    DBOS.launch()
    for stamp, name in enumerate(("t1", "t2", "t3")):
        with SetWorkflowID(name):
            writer(1)
        sys_sql("UPDATE {status} SET created_at = ? WHERE workflow_uuid = ?", (1000 + stamp, name))

    def recorded() -> List[str]:
        rows = query(app_url, "SELECT workflow_uuid FROM transaction_outputs ORDER BY workflow_uuid")
        return [r[0] for r in rows]

    assert recorded() == ["t1", "t2", "t3"]
    DBOS.delete_workflow("t1")
    assert recorded() == ["t2", "t3"]
    assert DBOS.garbage_collect(rows_threshold=1) == 1
    assert recorded() == ["t3"] and ids(DBOS.list_workflows()) == ["t3"]
