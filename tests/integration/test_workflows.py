"""Workflow execution semantics: function IDs, replay, starts, statuses, handles.

Every test runs on the backend chosen with ``--backend`` and looks at the
system tables through its own connections (``tests.probe``), never through
the library. Threads and workflows hand off through events and handles; the
generous ``WAIT_S`` bounds are only reached when a test is already failing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, cast

import pytest

from tests.threads import in_thread

from dbos import (
    DBOS,
    DBOSConfig,
    DBOSConfiguredInstance,
    DBOSContextEnsure,
    DBOSContextSetAuth,
    SetWorkflowID,
    StepStatus,
    WorkflowHandle,
    WorkflowHandleAsync,
    WorkflowStatus,
)
from dbos._engine.engine import Engine, peek_engine
from dbos.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSNotAuthorizedError,
    DBOSNotLaunchedError,
    DBOSRecordedError,
    DBOSSerializationError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowFunctionNotFoundError,
)
from dbos._engine.recovery import recover_one
from tests.probe import execute, qualified, query

WAIT_S = 30.0
StepRow = Tuple[int, str, Optional[str]]


class OrderError(Exception):
    """An ordinary application error: pickles and unpickles as itself."""


class TwoPartError(Exception):
    """Pickles, but cannot be unpickled: ``__init__`` needs two arguments."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")
        self.code = code


# ----------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------


@pytest.fixture
def launched(dbos: type[DBOS]) -> Iterator[type[DBOS]]:
    """A launched DBOS whose start-up recovery scan is over.

    The scan runs on a background thread; a test that puts a row back to
    PENDING must not race it.
    """
    for thread in threading.enumerate():
        if thread.name == "dbos-recovery":
            thread.join(WAIT_S)
    yield dbos


def engine() -> Engine:
    found = peek_engine()
    assert found is not None, "DBOS is not launched"
    return found


def step_rows(url: str, workflow_id: str) -> List[StepRow]:
    table = qualified(url, "operation_outputs")
    sql = (
        f"SELECT function_id, function_name, child_workflow_id FROM {table} "
        "WHERE workflow_uuid = %s ORDER BY function_id"
    )
    return [(int(r[0]), str(r[1]), r[2]) for r in query(url, sql, (workflow_id,))]


def status_column(url: str, workflow_id: str, column: str) -> Any:
    table = qualified(url, "workflow_status")
    rows = query(url, f"SELECT {column} FROM {table} WHERE workflow_uuid = %s", (workflow_id,))
    assert len(rows) == 1, f"expected one row for {workflow_id}, found {len(rows)}"
    return rows[0][0]


def workflow_count(url: str) -> int:
    return int(query(url, f"SELECT COUNT(*) FROM {qualified(url, 'workflow_status')}")[0][0])


def back_to_pending(url: str, workflow_id: str) -> None:
    """Make a finished workflow look as if its process died mid-run."""
    table = qualified(url, "workflow_status")
    sql = f"UPDATE {table} SET status = 'PENDING', output = NULL, error = NULL WHERE workflow_uuid = %s"
    execute(url, sql, (workflow_id,))


def cancel_by_sql(url: str, workflow_id: str) -> None:
    table = qualified(url, "workflow_status")
    execute(url, f"UPDATE {table} SET status = 'CANCELLED' WHERE workflow_uuid = %s", (workflow_id,))


def name_of(func: Callable[..., Any]) -> str:
    return str(getattr(func, "dbos_function_name"))




def joined(thread: threading.Thread) -> None:
    thread.join(WAIT_S)
    assert not thread.is_alive(), "thread did not finish"


# ----------------------------------------------------------------------
# Function IDs and children
# ----------------------------------------------------------------------


def test_function_ids_follow_program_order(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.step()
    def first() -> str:
        return "a"

    @DBOS.step(name="second-step")
    def second() -> str:
        return "b"

    @DBOS.workflow()
    def child(x: int) -> int:
        return x * 2

    @DBOS.workflow()
    def parent() -> int:
        first()
        called = child(1)
        handle = DBOS.start_workflow(child, 2)
        started = handle.get_result()
        DBOS.get_workflow_status(handle.get_workflow_id())
        assert DBOS.wait_first([handle]) is handle
        again: int = DBOS.get_result(handle.get_workflow_id())
        second()
        return called + started + again

    with SetWorkflowID("order"):
        assert parent() == 10

    c = name_of(child)
    assert step_rows(sys_db_url, "order") == [
        (1, name_of(first), None),
        (2, c, "order-2"),
        (3, "DBOS.getResult", "order-2"),
        (4, c, "order-4"),
        (5, "DBOS.getResult", "order-4"),
        (6, "DBOS.getStatus", None),
        (7, "DBOS.waitFirst", None),
        (8, "DBOS.getResult", "order-4"),
        (9, "second-step", None),
    ]
    for child_id in ("order-2", "order-4"):
        assert status_column(sys_db_url, child_id, "parent_workflow_id") == "order"
        assert status_column(sys_db_url, child_id, "status") == "SUCCESS"
    assert status_column(sys_db_url, "order", "parent_workflow_id") is None


def test_async_function_ids_follow_program_order(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.step()
    async def first() -> str:
        return "a"

    @DBOS.step()
    def sync_step() -> str:
        return "s"

    @DBOS.workflow()
    async def child(x: int) -> int:
        return x * 2

    @DBOS.workflow()
    async def parent() -> int:
        await first()
        called = await child(1)
        handle = await DBOS.start_workflow_async(child, 2)
        started = await handle.get_result()
        await DBOS.get_workflow_status_async(handle.get_workflow_id())
        assert await DBOS.wait_first_async([handle]) is handle
        again: int = await DBOS.get_result_async(handle.get_workflow_id())
        sync_step()
        return called + started + again

    async def main() -> int:
        with SetWorkflowID("async-order"):
            return await parent()

    assert asyncio.run(main()) == 10
    c = name_of(child)
    assert step_rows(sys_db_url, "async-order") == [
        (1, name_of(first), None),
        (2, c, "async-order-2"),
        (3, "DBOS.getResult", "async-order-2"),
        (4, c, "async-order-4"),
        (5, "DBOS.getResult", "async-order-4"),
        (6, "DBOS.getStatus", None),
        (7, "DBOS.waitFirst", None),
        (8, "DBOS.getResult", "async-order-4"),
        (9, name_of(sync_step), None),
    ]
    assert status_column(sys_db_url, "async-order-4", "parent_workflow_id") == "async-order"


def test_async_gather_takes_ids_in_start_order_not_completion_order(
    launched: type[DBOS], sys_db_url: str
) -> None:
    async def main() -> Tuple[List[str], List[str]]:
        a_may_end, b_may_end = asyncio.Event(), asyncio.Event()
        finished: List[str] = []

        @DBOS.step()
        async def step_a() -> str:
            await a_may_end.wait()
            finished.append("a")
            return "a"

        @DBOS.step()
        async def step_b() -> str:
            await b_may_end.wait()
            finished.append("b")
            a_may_end.set()
            return "b"

        @DBOS.step()
        async def step_c() -> str:
            finished.append("c")
            b_may_end.set()
            return "c"

        @DBOS.workflow()
        async def wf() -> List[str]:
            return list(await asyncio.gather(step_a(), step_b(), step_c()))

        with SetWorkflowID("gathered"):
            assert await wf() == ["a", "b", "c"]
        assert finished == ["c", "b", "a"]
        return finished, [name_of(f) for f in (step_a, step_b, step_c)]

    _, names = asyncio.run(main())
    assert step_rows(sys_db_url, "gathered") == [(i + 1, n, None) for i, n in enumerate(names)]


def test_async_waits_take_their_ids_before_they_block(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.step()
    async def quick() -> int:
        return 1

    @DBOS.workflow()
    async def child() -> int:
        return 2

    @DBOS.workflow()
    async def parent() -> None:
        handle = await DBOS.start_workflow_async(child)
        for _ in range(3):
            await asyncio.gather(handle.get_result(), quick())
            await asyncio.gather(handle.get_status(), quick())

    async def main() -> None:
        with SetWorkflowID("waits"):
            await parent()

    asyncio.run(main())
    names = [r[1] for r in step_rows(sys_db_url, "waits")[1:]]
    assert names == ["DBOS.getResult", name_of(quick), "DBOS.getStatus", name_of(quick)] * 3


def test_async_dbos_waits_take_their_ids_before_they_block(
    launched: type[DBOS], sys_db_url: str
) -> None:
    @DBOS.step()
    async def quick() -> int:
        return 1

    @DBOS.workflow()
    async def child() -> int:
        return 2

    @DBOS.workflow()
    async def parent() -> None:
        handle = await DBOS.start_workflow_async(child)
        workflow_id = handle.get_workflow_id()
        for _ in range(3):
            await asyncio.gather(DBOS.get_result_async(workflow_id), quick())
            await asyncio.gather(DBOS.get_workflow_status_async(workflow_id), quick())
            await asyncio.gather(DBOS.wait_first_async([handle]), quick())
            await asyncio.gather(DBOS.retrieve_workflow_async(workflow_id), quick())

    async def main() -> None:
        with SetWorkflowID("dbos-waits"):
            await parent()

    asyncio.run(main())
    names = [r[1] for r in step_rows(sys_db_url, "dbos-waits")[1:]]
    q = name_of(quick)
    assert names == ["DBOS.getResult", q, "DBOS.getStatus", q, "DBOS.waitFirst", q,
                     "DBOS.getStatus", q] * 3


def test_many_async_workflows_waiting_at_once_do_not_starve(
    launched: type[DBOS], sys_db_url: str
) -> None:
    # More waiters than asyncio's default executor has threads on any machine.
    count = 40

    async def main() -> List[int]:
        release = asyncio.Event()
        waiting: List[int] = []

        @DBOS.workflow()
        async def child(i: int) -> int:
            await release.wait()
            return i

        @DBOS.workflow()
        async def parent(i: int) -> int:
            handle = await DBOS.start_workflow_async(child, i)
            waiting.append(i)
            if len(waiting) == count:
                release.set()  # the children resume only once every parent waits
            result: int = await handle.get_result()
            return result

        return list(await asyncio.gather(*(parent(i) for i in range(count))))

    thread, box = in_thread(lambda: asyncio.run(main()))
    thread.join(WAIT_S)
    if thread.is_alive():  # unblock the stuck waiters before failing
        table = qualified(sys_db_url, "workflow_status")
        execute(sys_db_url, f"UPDATE {table} SET status = 'CANCELLED' WHERE status = 'PENDING'")
        joined(thread)
        pytest.fail("async workflows waiting for each other starved the event loop's executor")
    assert box == {"result": list(range(count))}


def test_set_workflow_id_names_a_child_and_keeps_the_parent_link(
    launched: type[DBOS], sys_db_url: str
) -> None:
    @DBOS.workflow()
    def child() -> Optional[str]:
        workflow_id: Optional[str] = DBOS.workflow_id
        return workflow_id

    @DBOS.workflow()
    def parent() -> List[Optional[str]]:
        with SetWorkflowID("chosen-child"):
            named = child()
        return [named, child()]

    with SetWorkflowID("family"):
        assert parent() == ["chosen-child", "family-3"]
    assert status_column(sys_db_url, "chosen-child", "parent_workflow_id") == "family"
    assert [r[2] for r in step_rows(sys_db_url, "family")] == [
        "chosen-child", "chosen-child", "family-3", "family-3"
    ]


# ----------------------------------------------------------------------
# Replay
# ----------------------------------------------------------------------


def test_same_id_returns_the_recorded_result_without_running(
    launched: type[DBOS], sys_db_url: str
) -> None:
    runs: List[str] = []

    @DBOS.step()
    def add_one(x: int) -> int:
        runs.append("step")
        return x + 1

    @DBOS.workflow()
    def wf(x: int) -> int:
        runs.append("body")
        return add_one(x) * 10

    with SetWorkflowID("once"):
        assert wf(1) == 20
    with SetWorkflowID("once"):
        assert wf(1) == 20
    with SetWorkflowID("once"):
        assert wf(5) == 20, "the recorded result wins over new inputs"
    with SetWorkflowID("once"):
        assert DBOS.start_workflow(wf, 1).get_result() == 20
    assert runs == ["body", "step"]
    assert status_column(sys_db_url, "once", "recovery_attempts") == 1
    assert len(step_rows(sys_db_url, "once")) == 1


def test_async_same_id_returns_the_recorded_result_without_running(launched: type[DBOS]) -> None:
    runs: List[str] = []

    @DBOS.step()
    async def add_one(x: int) -> int:
        runs.append("step")
        return x + 1

    @DBOS.workflow()
    async def wf(x: int) -> int:
        runs.append("body")
        return await add_one(x) * 10

    async def main() -> List[int]:
        results = []
        for _ in range(2):
            with SetWorkflowID("async-once"):
                results.append(await wf(1))
        with SetWorkflowID("async-once"):
            handle = await DBOS.start_workflow_async(wf, 1)
        results.append(await handle.get_result())
        return results

    assert asyncio.run(main()) == [20, 20, 20]
    assert runs == ["body", "step"]


def test_same_id_reraises_the_recorded_error_with_its_type(
    launched: type[DBOS], sys_db_url: str
) -> None:
    runs: List[str] = []

    @DBOS.workflow()
    def failing(item: str) -> None:
        runs.append(item)
        raise OrderError(f"out of {item}")

    for _ in range(2):
        with SetWorkflowID("refused"):
            with pytest.raises(OrderError, match="out of apples"):
                failing("apples")
    with pytest.raises(OrderError, match="out of apples"):
        DBOS.retrieve_workflow("refused").get_result()
    with pytest.raises(OrderError, match="out of apples"):
        DBOS.get_result("refused")
    assert runs == ["apples"]
    assert status_column(sys_db_url, "refused", "status") == "ERROR"


def test_async_same_id_reraises_the_recorded_error(launched: type[DBOS]) -> None:
    runs: List[str] = []

    @DBOS.workflow()
    async def failing() -> None:
        runs.append("body")
        raise OrderError("declined")

    async def main() -> None:
        for _ in range(2):
            with SetWorkflowID("async-refused"):
                with pytest.raises(OrderError, match="declined"):
                    await failing()
        with pytest.raises(OrderError, match="declined"):
            await DBOS.get_result_async("async-refused")

    asyncio.run(main())
    assert runs == ["body"]


def test_first_caller_gets_the_original_value_and_exception(launched: type[DBOS]) -> None:
    box: Dict[str, Any] = {}

    @DBOS.workflow()
    def returns_object() -> Dict[str, Any]:
        return box

    @DBOS.workflow()
    def raises_original() -> None:
        failing_deep_inside()

    def failing_deep_inside() -> None:
        raise OrderError("traceable")

    assert returns_object() is box, "the body's own object, not a deserialized copy"
    with pytest.raises(OrderError) as info:
        raises_original()
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "failing_deep_inside" in frames, "the traceback reaches where the error was raised"


def test_replay_of_recorded_steps_and_children_after_recovery(
    launched: type[DBOS], sys_db_url: str
) -> None:
    runs: List[str] = []

    @DBOS.step()
    def charge(amount: int) -> int:
        runs.append("charge")
        return amount

    @DBOS.workflow()
    def receipt(amount: int) -> str:
        runs.append("receipt")
        return f"paid {amount}"

    @DBOS.workflow()
    def checkout(amount: int) -> Tuple[int, str, str, str]:
        runs.append("checkout")
        paid = charge(amount)
        direct = receipt(paid)
        started = DBOS.start_workflow(receipt, paid + 1).get_result()
        status = DBOS.get_workflow_status("checkout-2")
        assert status is not None
        return paid, direct, started, status.status

    with SetWorkflowID("checkout"):
        first = checkout(5)
    assert first == (5, "paid 5", "paid 6", "SUCCESS")
    assert runs == ["checkout", "charge", "receipt", "receipt"]

    # The recorded status must be replayed, not read again.
    table = qualified(sys_db_url, "workflow_status")
    execute(sys_db_url, f"UPDATE {table} SET status = 'ERROR' WHERE workflow_uuid = %s", ("checkout-2",))
    back_to_pending(sys_db_url, "checkout")
    assert recover_one(engine(), "checkout").get_result() == first
    assert runs == ["checkout", "charge", "receipt", "receipt", "checkout"]
    assert status_column(sys_db_url, "checkout", "status") == "SUCCESS"


def test_a_different_step_at_a_recorded_id_raises_unexpected_step(
    launched: type[DBOS], sys_db_url: str
) -> None:
    @DBOS.step()
    def step_a() -> str:
        return "a"

    @DBOS.step()
    def step_b() -> str:
        return "b"

    chosen = [step_a]

    @DBOS.workflow()
    def wf() -> str:
        return chosen[0]()

    with SetWorkflowID("drifted"):
        assert wf() == "a"
    chosen[0] = step_b
    back_to_pending(sys_db_url, "drifted")
    handle = recover_one(engine(), "drifted")
    with pytest.raises(DBOSUnexpectedStepError) as info:
        handle.get_result()
    assert name_of(step_a) in str(info.value) and name_of(step_b) in str(info.value)
    assert status_column(sys_db_url, "drifted", "status") == "ERROR"
    assert step_rows(sys_db_url, "drifted") == [(1, name_of(step_a), None)]


# ----------------------------------------------------------------------
# Starting is an upsert
# ----------------------------------------------------------------------


def test_same_id_for_another_function_conflicts(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    def original() -> str:
        return "original"

    @DBOS.workflow()
    def impostor() -> str:
        return "impostor"

    with SetWorkflowID("taken"):
        assert original() == "original"
    with SetWorkflowID("taken"):
        with pytest.raises(DBOSConflictingWorkflowError):
            impostor()
    with SetWorkflowID("taken"):
        with pytest.raises(DBOSConflictingWorkflowError):
            DBOS.start_workflow(impostor)
    assert status_column(sys_db_url, "taken", "name") == name_of(original)
    assert DBOS.get_result("taken") == "original"


def test_same_id_on_another_configured_instance_conflicts(launched: type[DBOS]) -> None:
    @DBOS.dbos_class("Branch")
    class Branch(DBOSConfiguredInstance):
        @DBOS.workflow(name="branch-open")
        def open(self) -> str:
            return self.config_name

    east, west = Branch("east"), Branch("west")
    with SetWorkflowID("opening"):
        assert east.open() == "east"
    with SetWorkflowID("opening"):
        assert east.open() == "east"
    with SetWorkflowID("opening"):
        with pytest.raises(DBOSConflictingWorkflowError):
            west.open()
    status = DBOS.get_workflow_status("opening")
    assert status is not None
    assert (status.name, status.class_name, status.config_name) == ("branch-open", "Branch", "east")


def test_two_threads_with_one_id_run_the_body_once(launched: type[DBOS]) -> None:
    entered, gate = threading.Event(), threading.Event()
    runs: List[str] = []

    @DBOS.workflow()
    def slow() -> Optional[str]:
        runs.append("body")
        entered.set()
        assert gate.wait(WAIT_S)
        workflow_id: Optional[str] = DBOS.workflow_id
        return workflow_id

    def call() -> Optional[str]:
        with SetWorkflowID("shared"):
            return slow()

    first, first_box = in_thread(call)
    assert entered.wait(WAIT_S)
    second, second_box = in_thread(call)
    second.join(0.3)
    assert second.is_alive(), "the second caller waits for the first one's outcome"
    gate.set()
    joined(first)
    joined(second)
    assert first_box == {"result": "shared"} and second_box == {"result": "shared"}
    assert runs == ["body"]


def test_async_concurrent_calls_with_one_id_run_the_body_once(launched: type[DBOS]) -> None:
    runs: List[str] = []

    async def main() -> List[int]:
        entered, gate = asyncio.Event(), asyncio.Event()

        @DBOS.workflow()
        async def slow() -> int:
            runs.append("body")
            entered.set()
            await gate.wait()
            return 42

        async def call() -> int:
            with SetWorkflowID("async-shared"):
                return await slow()

        calls = [asyncio.ensure_future(call()) for _ in range(2)]
        await entered.wait()
        gate.set()
        return list(await asyncio.gather(*calls))

    assert asyncio.run(main()) == [42, 42]
    assert runs == ["body"]


# ----------------------------------------------------------------------
# Statuses
# ----------------------------------------------------------------------


def test_status_of_a_successful_workflow(launched: type[DBOS]) -> None:
    @DBOS.dbos_class("Shop")
    class Shop(DBOSConfiguredInstance):
        def __init__(self) -> None:
            super().__init__("east")

        @DBOS.workflow()
        @DBOS.required_roles(["clerk"])
        def sell(self, item: str, *, qty: int) -> str:
            return f"{qty} {item}"

    shop = Shop()
    before = int(time.time() * 1000)
    with DBOSContextSetAuth("alice", ["admin", "clerk"]):
        with SetWorkflowID("sale"):
            assert shop.sell("apple", qty=3) == "3 apple"
    after = int(time.time() * 1000)

    status = DBOS.get_workflow_status("sale")
    assert isinstance(status, WorkflowStatus)
    assert (status.workflow_id, status.status, status.name) == ("sale", "SUCCESS", name_of(Shop.sell))
    assert (status.class_name, status.config_name) == ("Shop", "east")
    assert status.authenticated_user == "alice"
    assert status.authenticated_roles == ["admin", "clerk"]
    assert status.assumed_role == "clerk"
    assert status.input == {"args": ("apple",), "kwargs": {"qty": 3}}
    assert (status.output, status.error) == ("3 apple", None)
    assert status.created_at is not None and status.updated_at is not None
    assert before <= status.created_at <= status.updated_at <= after
    assert status.completed_at is not None and status.created_at <= status.completed_at <= after
    assert status.executor_id == DBOS.executor_id
    assert status.app_version == DBOS.application_version and status.app_version
    assert status.recovery_attempts == 1
    assert status.parent_workflow_id is None and status.queue_name is None
    assert status.application_name == "test-app"
    assert status.was_forked_from is False and status.forked_from is None
    assert DBOS.retrieve_workflow("sale").get_status() == status


def test_status_of_a_failed_workflow_and_of_a_child(launched: type[DBOS]) -> None:
    @DBOS.workflow()
    def child() -> None:
        raise OrderError("no stock")

    @DBOS.workflow()
    def parent() -> str:
        try:
            child()
        except OrderError as exc:
            return str(exc)
        return "unreachable"

    with SetWorkflowID("fails"):
        assert parent() == "no stock"
    status = DBOS.get_workflow_status("fails-1")
    assert status is not None
    assert (status.status, status.output) == ("ERROR", None)
    assert isinstance(status.error, OrderError) and str(status.error) == "no stock"
    assert status.parent_workflow_id == "fails"
    assert status.input == {"args": (), "kwargs": {}}
    assert status.completed_at is not None


def test_status_of_a_missing_workflow_is_none(launched: type[DBOS]) -> None:
    assert DBOS.get_workflow_status("no-such-workflow") is None
    assert asyncio.run(DBOS.get_workflow_status_async("no-such-workflow")) is None


def test_status_inside_a_workflow_is_checkpointed(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    def target() -> int:
        return 1

    @DBOS.workflow()
    def observer() -> Tuple[Optional[str], Optional[str], bool]:
        mine = DBOS.get_workflow_status("observer")
        theirs = DBOS.get_workflow_status("target")
        missing = DBOS.get_workflow_status("nobody")
        assert mine is not None and theirs is not None
        DBOS.retrieve_workflow("target")
        with pytest.raises(DBOSNonExistentWorkflowError):
            DBOS.retrieve_workflow("nobody")
        return mine.status, theirs.status, missing is None

    with SetWorkflowID("target"):
        target()
    with SetWorkflowID("observer"):
        assert observer() == ("PENDING", "SUCCESS", True)
    assert [r[1] for r in step_rows(sys_db_url, "observer")] == ["DBOS.getStatus"] * 5


# ----------------------------------------------------------------------
# Starting and handles
# ----------------------------------------------------------------------


def test_start_workflow_returns_a_handle(launched: type[DBOS], sys_db_url: str) -> None:
    gate = threading.Event()

    @DBOS.workflow()
    def add(x: int, *, y: int) -> int:
        assert gate.wait(WAIT_S)
        return x + y

    with SetWorkflowID("started"):
        handle = DBOS.start_workflow(add, 2, y=3)
    assert isinstance(handle, WorkflowHandle)
    assert handle.get_workflow_id() == handle.workflow_id == "started"
    # The row is durable before start_workflow returns, while the body still waits.
    assert status_column(sys_db_url, "started", "status") == "PENDING"
    assert handle.get_status().status == "PENDING"
    gate.set()
    assert handle.get_result() == 5
    assert handle.get_status().status == "SUCCESS"
    assert handle.get_status().input == {"args": (2,), "kwargs": {"y": 3}}
    other = DBOS.start_workflow(add, 1, y=1)
    assert other.get_workflow_id() != "started" and other.get_result() == 2


def test_start_workflow_async_returns_an_async_handle(launched: type[DBOS]) -> None:
    @DBOS.workflow()
    async def double(x: int) -> int:
        return x * 2

    @DBOS.workflow()
    def triple(x: int) -> int:
        return x * 3

    async def main() -> Tuple[int, int, str, str]:
        with SetWorkflowID("async-started"):
            handle = await DBOS.start_workflow_async(double, 4)
        assert isinstance(handle, WorkflowHandleAsync)
        assert handle.get_workflow_id() == "async-started"
        doubled = await handle.get_result()
        sync_handle: WorkflowHandleAsync[int] = await DBOS.start_workflow_async(cast(Any, triple), 4)
        tripled = await sync_handle.get_result()
        retrieved = await DBOS.retrieve_workflow_async("async-started")
        status = await retrieved.get_status()
        return doubled, tripled, status.status, (await sync_handle.get_status()).status

    assert asyncio.run(main()) == (8, 12, "SUCCESS", "SUCCESS")


def test_start_workflow_from_sync_code_runs_an_async_workflow(launched: type[DBOS]) -> None:
    @DBOS.workflow()
    async def greet(name: str) -> str:
        await asyncio.sleep(0)
        return f"hello {name} from {DBOS.workflow_id}"

    with SetWorkflowID("greeting"):
        handle: WorkflowHandle[str] = DBOS.start_workflow(cast(Any, greet), "ann")
    assert handle.get_result() == "hello ann from greeting"


def test_a_step_can_be_started_as_a_temp_workflow(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.step()
    def double(x: int) -> int:
        return x * 2

    with SetWorkflowID("lone-step"):
        handle = DBOS.start_workflow(double, 4)
    assert handle.get_result() == 8
    assert status_column(sys_db_url, "lone-step", "name") == "<temp>." + name_of(double)
    assert step_rows(sys_db_url, "lone-step") == [(1, name_of(double), None)]
    assert double(5) == 10, "called outside a workflow, a step is a plain call"
    assert workflow_count(sys_db_url) == 1


def test_a_transaction_can_be_started_as_a_temp_workflow(
    backend: str, sys_db_url: str, tmp_path: Any
) -> None:
    app_url = f"sqlite:///{tmp_path}/app.sqlite" if backend == "sqlite" else sys_db_url
    DBOS(config=DBOSConfig(name="txn-app", system_database_url=sys_db_url,
                           application_database_url=app_url))
    DBOS.launch()

    @DBOS.transaction()
    def increment(x: int) -> int:
        assert DBOS.sql_session is not None
        return x + 1

    with SetWorkflowID("lone-txn"):
        assert DBOS.start_workflow(increment, 1).get_result() == 2
    assert status_column(sys_db_url, "lone-txn", "name") == "<temp>." + name_of(increment)
    assert step_rows(sys_db_url, "lone-txn") == [(1, name_of(increment), None)]
    with SetWorkflowID("direct-txn"):
        assert increment(5) == 6
    assert status_column(sys_db_url, "direct-txn", "name") == "<temp>." + name_of(increment)


def test_starting_an_undecorated_function_fails(launched: type[DBOS], sys_db_url: str) -> None:
    def plain() -> int:
        return 1

    with pytest.raises(DBOSWorkflowFunctionNotFoundError):
        DBOS.start_workflow(plain)
    assert workflow_count(sys_db_url) == 0


def test_retrieve_workflow_and_get_result(launched: type[DBOS]) -> None:
    gate = threading.Event()

    @DBOS.workflow()
    def slow(x: int) -> int:
        assert gate.wait(WAIT_S)
        return x

    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.retrieve_workflow("absent")
    ghost = DBOS.retrieve_workflow("absent", existing_workflow=False)
    assert ghost.get_workflow_id() == "absent"
    with pytest.raises(DBOSNonExistentWorkflowError):
        ghost.get_status()

    # A polling handle taken before the workflow exists sees it finish.
    early = DBOS.retrieve_workflow("later", existing_workflow=False)
    with SetWorkflowID("later"):
        started = DBOS.start_workflow(slow, 7)
    retrieved = DBOS.retrieve_workflow("later")
    assert retrieved.get_status().status == "PENDING"
    gate.set()
    assert started.get_result() == 7
    assert early.get_result() == 7 and retrieved.get_result() == 7
    assert DBOS.get_result("later") == 7


def test_retrieve_workflow_async(launched: type[DBOS]) -> None:
    @DBOS.workflow()
    def wf() -> str:
        return "done"

    with SetWorkflowID("kept"):
        wf()

    async def main() -> str:
        with pytest.raises(DBOSNonExistentWorkflowError):
            await DBOS.retrieve_workflow_async("absent")
        missing = await DBOS.retrieve_workflow_async("absent", existing_workflow=False)
        assert missing.get_workflow_id() == "absent"
        handle = await DBOS.retrieve_workflow_async("kept")
        result: str = await handle.get_result()
        return result

    assert asyncio.run(main()) == "done"


def test_wait_first_returns_the_first_finished(launched: type[DBOS]) -> None:
    gates = {"a": threading.Event(), "b": threading.Event()}

    @DBOS.workflow()
    def waiter(name: str) -> str:
        assert gates[name].wait(WAIT_S)
        return name

    handle_a = DBOS.start_workflow(waiter, "a")
    handle_b = DBOS.start_workflow(waiter, "b")
    gates["b"].set()
    assert DBOS.wait_first([handle_a, handle_b]) is handle_b
    assert handle_a.get_status().status == "PENDING", "the loser is still running"
    gates["a"].set()
    assert handle_a.get_result() == "a"
    assert DBOS.wait_first([handle_a]) is handle_a


def test_wait_first_async_returns_the_first_finished(launched: type[DBOS]) -> None:
    async def main() -> List[str]:
        gates = {"a": asyncio.Event(), "b": asyncio.Event()}

        @DBOS.workflow()
        async def waiter(name: str) -> str:
            await gates[name].wait()
            return name

        handle_a = await DBOS.start_workflow_async(waiter, "a")
        handle_b = await DBOS.start_workflow_async(waiter, "b")
        gates["a"].set()
        first = await DBOS.wait_first_async([handle_b, handle_a])
        assert first is handle_a
        gates["b"].set()
        return [await handle_a.get_result(), await handle_b.get_result()]

    assert asyncio.run(main()) == ["a", "b"]


def test_wait_first_rejects_empty_and_duplicate_handles(launched: type[DBOS]) -> None:
    @DBOS.workflow()
    def wf() -> int:
        return 1

    handle = DBOS.start_workflow(wf)
    with pytest.raises(ValueError):
        DBOS.wait_first([])
    with pytest.raises(ValueError):
        DBOS.wait_first([handle, DBOS.retrieve_workflow(handle.workflow_id)])
    with pytest.raises(ValueError):
        asyncio.run(DBOS.wait_first_async([]))


def test_set_workflow_id_applies_to_the_next_workflow_only(launched: type[DBOS]) -> None:
    @DBOS.workflow()
    def whoami() -> Optional[str]:
        workflow_id: Optional[str] = DBOS.workflow_id
        return workflow_id

    with SetWorkflowID("first-only"):
        assert whoami() == "first-only"
        second = whoami()
    assert second is not None and second != "first-only"
    uuid.UUID(second)  # a generated ID

    with SetWorkflowID("outer"):
        with SetWorkflowID("inner"):
            assert whoami() == "inner"
        assert whoami() == "outer", "leaving the inner block restores the outer ID"

    for bad in ("", "   "):
        with pytest.raises(DBOSException):
            SetWorkflowID(bad)


# ----------------------------------------------------------------------
# Context properties
# ----------------------------------------------------------------------


def test_context_properties_in_workflows_and_steps(launched: type[DBOS]) -> None:
    seen: Dict[str, Any] = {}

    @DBOS.step()
    def plain_step() -> None:
        seen["step"] = (DBOS.workflow_id, DBOS.step_id, DBOS.step_status)

    @DBOS.step(retries_allowed=True, max_attempts=2, interval_seconds=0)
    def retrying_step() -> None:
        seen["retrying"] = DBOS.step_status

    @DBOS.workflow()
    def wf() -> None:
        seen["workflow"] = (DBOS.workflow_id, DBOS.step_id, DBOS.step_status)
        plain_step()
        retrying_step()

    assert (DBOS.workflow_id, DBOS.step_id, DBOS.step_status) == (None, None, None)
    with SetWorkflowID("ctx"):
        wf()
    assert seen["workflow"] == ("ctx", None, None)
    assert seen["step"] == ("ctx", 1, StepStatus(1, None, None))
    assert seen["retrying"] == StepStatus(2, 1, 2)
    assert (DBOS.workflow_id, DBOS.step_id) == (None, None)
    assert DBOS.logger is logging.getLogger("dbos")


def test_async_context_properties(launched: type[DBOS]) -> None:
    seen: Dict[str, Any] = {}

    @DBOS.step()
    async def plain_step() -> None:
        seen.setdefault("steps", []).append((DBOS.workflow_id, DBOS.step_id))

    @DBOS.workflow()
    async def wf() -> None:
        seen["workflow"] = (DBOS.workflow_id, DBOS.step_id)
        await asyncio.gather(plain_step(), plain_step())

    async def main() -> None:
        with SetWorkflowID("async-ctx"):
            await wf()

    asyncio.run(main())
    assert seen["workflow"] == ("async-ctx", None)
    assert sorted(seen["steps"]) == [("async-ctx", 1), ("async-ctx", 2)]
    assert DBOS.workflow_id is None, "the workflow's context does not outlive it"


def test_auth_properties_need_a_context(launched: type[DBOS]) -> None:
    properties = ("authenticated_user", "authenticated_roles", "assumed_role")
    for prop in properties:
        with pytest.raises(AssertionError):
            getattr(DBOS, prop)
    with DBOSContextEnsure():
        assert [getattr(DBOS, p) for p in properties] == [None, None, None]
    with pytest.raises(AssertionError):
        DBOS.authenticated_user  # the block's context is gone
    with DBOSContextSetAuth("bob", ["reader"]):
        assert (DBOS.authenticated_user, DBOS.authenticated_roles) == ("bob", ["reader"])
        with DBOSContextSetAuth("carol", None):
            assert DBOS.authenticated_user == "carol"
        assert DBOS.authenticated_user == "bob"
        with DBOSContextEnsure():
            assert DBOS.authenticated_user == "bob", "an existing context is kept"
            DBOS.set_authentication("dave", ["admin"])
            assert (DBOS.authenticated_user, DBOS.authenticated_roles) == ("dave", ["admin"])
        assert DBOS.authenticated_user == "bob"
    with pytest.raises(AssertionError):
        DBOS.set_authentication("mallory", None)


def test_auth_is_inherited_and_the_assumed_role_stays_with_its_workflow(
    launched: type[DBOS],
) -> None:
    seen: Dict[str, Any] = {}

    @DBOS.workflow()
    def child() -> None:
        seen["child"] = (DBOS.authenticated_user, DBOS.authenticated_roles, DBOS.assumed_role)

    @DBOS.workflow()
    @DBOS.required_roles(["writer"])
    def guarded() -> None:
        seen["guarded"] = (DBOS.authenticated_user, DBOS.assumed_role)
        child()

    @DBOS.workflow()
    def unguarded() -> Optional[str]:
        role: Optional[str] = DBOS.assumed_role
        return role

    @DBOS.workflow()
    def started() -> Tuple[Optional[str], Optional[List[str]]]:
        return DBOS.authenticated_user, DBOS.authenticated_roles

    with DBOSContextSetAuth("dana", ["reader", "writer"]):
        with SetWorkflowID("guarded"):
            guarded()
        guarded()
        assert DBOS.start_workflow(started).get_result() == ("dana", ["reader", "writer"])
        assert DBOS.assumed_role is None, "the role is assumed by the workflow, not its caller"
        with SetWorkflowID("unguarded"):
            assert unguarded() is None
    assert seen["guarded"] == ("dana", "writer")
    assert seen["child"] == ("dana", ["reader", "writer"], "writer")
    child_status = DBOS.get_workflow_status("guarded-1")
    assert child_status is not None and child_status.authenticated_user == "dana"
    unguarded_status = DBOS.get_workflow_status("unguarded")
    assert unguarded_status is not None and unguarded_status.assumed_role is None

    with DBOSContextSetAuth("eve", ["reader"]):
        with pytest.raises(DBOSNotAuthorizedError):
            guarded()


# ----------------------------------------------------------------------
# Serialization
# ----------------------------------------------------------------------


def test_unpicklable_argument_fails_before_anything_is_written(
    launched: type[DBOS], sys_db_url: str
) -> None:
    runs: List[str] = []

    @DBOS.workflow()
    def takes(a: Any, b: Any = None) -> None:
        runs.append("body")

    @DBOS.workflow()
    async def takes_async(a: Any) -> None:
        runs.append("async body")

    lock = threading.Lock()
    with pytest.raises(DBOSSerializationError, match="argument 2"):
        takes(1, lock)
    with pytest.raises(DBOSSerializationError, match="keyword argument 'b'"):
        takes(1, b=lock)
    with pytest.raises(DBOSSerializationError, match="argument 1"):
        DBOS.start_workflow(takes, lock)
    with pytest.raises(DBOSSerializationError, match="argument 1"):
        asyncio.run(takes_async(lock))
    assert runs == []
    assert workflow_count(sys_db_url) == 0


def test_unpicklable_child_argument_leaves_no_child(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    def child(lock: Any) -> None:
        pass

    @DBOS.workflow()
    def parent() -> str:
        try:
            child(threading.Lock())
        except DBOSSerializationError as exc:
            return exc.what
        return "unreachable"

    with SetWorkflowID("careful"):
        assert "argument 1" in parent()
    assert workflow_count(sys_db_url) == 1
    assert step_rows(sys_db_url, "careful") == []


def test_an_exception_that_cannot_be_unpickled_comes_back_as_recorded_error(
    launched: type[DBOS],
) -> None:
    @DBOS.workflow()
    def explode() -> None:
        raise TwoPartError(7, "jammed")

    with SetWorkflowID("jammed"):
        with pytest.raises(TwoPartError):
            explode()
    with pytest.raises(DBOSRecordedError) as info:
        DBOS.get_result("jammed")
    assert info.value.type_name.endswith("TwoPartError")
    assert "code 7: jammed" in info.value.error_message
    with SetWorkflowID("jammed"):
        with pytest.raises(DBOSRecordedError, match="TwoPartError"):
            explode()
    status = DBOS.get_workflow_status("jammed")
    assert status is not None and status.status == "ERROR"
    assert isinstance(status.error, DBOSRecordedError)


def test_an_unpicklable_return_value_ends_in_error(launched: type[DBOS]) -> None:
    @DBOS.workflow()
    def returns_lock() -> Any:
        return threading.Lock()

    @DBOS.workflow()
    async def returns_lock_async() -> Any:
        return threading.Lock()

    with SetWorkflowID("locked"):
        with pytest.raises(DBOSSerializationError, match="output of workflow"):
            returns_lock()
    with SetWorkflowID("locked-async"):
        with pytest.raises(DBOSSerializationError):
            asyncio.run(returns_lock_async())
    for workflow_id in ("locked", "locked-async"):
        status = DBOS.get_workflow_status(workflow_id)
        assert status is not None and status.status == "ERROR"
        assert isinstance(status.error, DBOSSerializationError)
        with pytest.raises(DBOSSerializationError):
            DBOS.get_result(workflow_id)


# ----------------------------------------------------------------------
# Misuse
# ----------------------------------------------------------------------


def test_workflows_before_construction_and_before_launch(config: DBOSConfig, sys_db_url: str) -> None:
    @DBOS.workflow()
    def wf() -> int:
        return 1

    @DBOS.workflow()
    async def wf_async() -> int:
        return 2

    with pytest.raises(DBOSException, match="initialized"):
        wf()
    with pytest.raises(DBOSException, match="initialized"):
        DBOS.start_workflow(wf)
    DBOS(config=config)
    with pytest.raises(DBOSNotLaunchedError):
        wf()
    with pytest.raises(DBOSNotLaunchedError):
        asyncio.run(wf_async())
    with pytest.raises(DBOSNotLaunchedError):
        DBOS.start_workflow(wf)
    with pytest.raises(DBOSNotLaunchedError):
        DBOS.get_workflow_status("anything")
    DBOS.launch()
    assert wf() == 1 and asyncio.run(wf_async()) == 2


def test_a_workflow_cannot_be_called_from_a_step(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    def inner() -> int:
        return 1

    @DBOS.step()
    def calls_workflow() -> int:
        return inner()

    @DBOS.step()
    def starts_workflow() -> int:
        return DBOS.start_workflow(inner).get_result()

    @DBOS.workflow()
    def outer(which: str) -> None:
        calls_workflow() if which == "call" else starts_workflow()

    for which in ("call", "start"):
        with pytest.raises(DBOSException, match="inside a step"):
            outer(which)
    table = qualified(sys_db_url, "workflow_status")
    names = [r[0] for r in query(sys_db_url, f"SELECT name FROM {table}")]
    assert name_of(inner) not in names


# ----------------------------------------------------------------------
# Cancellation
# ----------------------------------------------------------------------


def test_a_workflow_cancelled_while_running_stops_at_its_next_step(
    launched: type[DBOS], sys_db_url: str
) -> None:
    reached, resume = threading.Event(), threading.Event()
    trail: List[str] = []
    raised: List[type] = []

    @DBOS.step()
    def mark(label: str) -> str:
        trail.append(label)
        return label

    @DBOS.workflow()
    def cancellable() -> None:
        mark("before")
        reached.set()
        assert resume.wait(WAIT_S)
        try:
            mark("next")
        except BaseException as exc:
            raised.append(type(exc))
            raise
        trail.append("after next")
        mark("later")

    def call() -> None:
        with SetWorkflowID("doomed"):
            cancellable()

    thread, box = in_thread(call)
    assert reached.wait(WAIT_S)
    cancel_by_sql(sys_db_url, "doomed")
    resume.set()
    joined(thread)
    assert isinstance(box.get("error"), DBOSAwaitedWorkflowCancelledError)
    assert raised == [DBOSWorkflowCancelledError]
    assert "after next" not in trail and "later" not in trail
    assert status_column(sys_db_url, "doomed", "status") == "CANCELLED"
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        DBOS.retrieve_workflow("doomed").get_result()
    with SetWorkflowID("doomed"):
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            cancellable()
    assert trail.count("before") == 1, "calling a cancelled workflow again does not run it"


def test_an_async_workflow_cancelled_while_running_stops_at_its_next_step(
    launched: type[DBOS], sys_db_url: str
) -> None:
    trail: List[str] = []

    @DBOS.step()
    async def mark(label: str) -> str:
        trail.append(label)
        return label

    async def main() -> None:
        reached, resume = asyncio.Event(), asyncio.Event()

        @DBOS.workflow()
        async def cancellable() -> None:
            await mark("before")
            reached.set()
            await resume.wait()
            await mark("next")
            trail.append("after next")

        with SetWorkflowID("async-doomed"):
            handle = await DBOS.start_workflow_async(cancellable)
        await reached.wait()
        await asyncio.to_thread(cancel_by_sql, sys_db_url, "async-doomed")
        resume.set()
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            await handle.get_result()

    asyncio.run(main())
    assert "after next" not in trail
    assert status_column(sys_db_url, "async-doomed", "status") == "CANCELLED"


def test_a_workflow_cancelled_after_its_last_step_records_no_output(
    launched: type[DBOS], sys_db_url: str
) -> None:
    reached, resume = threading.Event(), threading.Event()

    @DBOS.step()
    def only_step() -> int:
        return 1

    @DBOS.workflow()
    def wf() -> str:
        only_step()
        reached.set()
        assert resume.wait(WAIT_S)
        return "finished anyway"

    with SetWorkflowID("late-cancel"):
        handle = DBOS.start_workflow(wf)
    assert reached.wait(WAIT_S)
    cancel_by_sql(sys_db_url, "late-cancel")
    resume.set()
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert status_column(sys_db_url, "late-cancel", "status") == "CANCELLED"
    assert status_column(sys_db_url, "late-cancel", "output") is None


@pytest.mark.parametrize("how", ["call", "start"])
def test_a_cancelled_workflow_starts_no_child(launched: type[DBOS], sys_db_url: str, how: str) -> None:
    reached, resume = threading.Event(), threading.Event()
    runs: List[str] = []

    @DBOS.workflow()
    def child() -> None:
        runs.append("child")

    @DBOS.workflow()
    def parent() -> None:
        reached.set()
        assert resume.wait(WAIT_S)
        if how == "call":
            child()
        else:
            DBOS.start_workflow(child).get_result()
        runs.append("parent went on")

    workflow_id = f"no-children-{how}"
    with SetWorkflowID(workflow_id):
        handle = DBOS.start_workflow(parent)
    assert reached.wait(WAIT_S)
    cancel_by_sql(sys_db_url, workflow_id)
    resume.set()
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert runs == []
    assert workflow_count(sys_db_url) == 1, "the child's row is not left behind either"
    assert step_rows(sys_db_url, workflow_id) == []
