"""Steps: plain calls outside workflows, checkpointed once inside them, and retried.

Each test counts how often a step body really runs, then reads the
``operation_outputs`` rows the run left. Replays are forced the way a crash
would force them: the finished workflow is set back to PENDING and recovered.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

import pytest

from dbos import DBOS, DBOSConfig, SetWorkflowID
from dbos._engine.registry import TEMP_PREFIX, get_registry
from dbos._sysdb import SystemDatabase
from dbos.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSException,
    DBOSMaxStepRetriesExceeded,
    DBOSRecordedError,
    DBOSStepTimeoutError,
    DBOSWorkflowCancelledError,
)
from tests.integration.sysdb_sql import (
    count_rows,
    delete_step,
    loaded_error,
    loaded_output,
    recover,
    status_row,
    step_rows,
    wait_for_launch_recovery,
)


class FlakyError(Exception):
    """What the test steps raise; module level, so it pickles."""


class FatalError(Exception):
    pass


class ContextualError(Exception):
    """Pickles, but cannot be rebuilt from its args, so it records as a stand-in."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


Attempt = Tuple[Optional[int], Optional[int], Optional[int]]
WAIT_S = 30.0  # reached only when a test is already failing


def attempt_seen() -> Attempt:
    """(step_id, current_attempt, max_attempts) as the running step sees them."""
    status = DBOS.step_status
    assert status is not None, "DBOS.step_status is None inside a step"
    return status.step_id, status.current_attempt, status.max_attempts


# ----------------------------------------------------------------------
# Outside a workflow
# ----------------------------------------------------------------------


def test_step_outside_workflow_is_a_plain_call(dbos: type[DBOS]) -> None:
    calls: List[int] = []

    @DBOS.step(retries_allowed=True, max_attempts=5, interval_seconds=0)
    def fails_once_per_call(n: int) -> int:
        calls.append(n)
        if n < 0:
            raise FlakyError("negative")
        return n * 2

    assert fails_once_per_call(21) == 42
    with pytest.raises(FlakyError):  # no retries, no DBOSMaxStepRetriesExceeded
        fails_once_per_call(-1)
    assert calls == [21, -1]
    assert count_rows("status") == 0
    assert count_rows("steps") == 0


def test_async_step_outside_workflow_is_a_plain_call(dbos: type[DBOS]) -> None:
    calls: List[int] = []

    @DBOS.step(retries_allowed=True, interval_seconds=0)
    async def double(n: int) -> int:
        calls.append(n)
        assert DBOS.step_status is None
        return n * 2

    assert asyncio.run(double(4)) == 8
    assert calls == [4]
    assert count_rows("status") == 0
    assert count_rows("steps") == 0


# ----------------------------------------------------------------------
# Checkpointing and replay
# ----------------------------------------------------------------------


def test_step_is_checkpointed_once_and_replayed(dbos: type[DBOS]) -> None:
    wait_for_launch_recovery()
    step_runs: List[int] = []
    body_runs: List[str] = []

    @DBOS.step()
    def square(n: int) -> int:
        step_runs.append(n)
        assert DBOS.workflow_id == "sq"
        assert DBOS.step_id == n
        return n * n

    @DBOS.workflow()
    def squares() -> List[int]:
        body_runs.append("run")
        return [square(1), square(2), square(3)]

    with SetWorkflowID("sq"):
        assert squares() == [1, 4, 9]
    rows = step_rows("sq")
    assert [(r[0], r[1]) for r in rows] == [(i, square.__qualname__) for i in (1, 2, 3)]
    assert [loaded_output(r[2]) for r in rows] == [1, 4, 9]
    assert all(r[3] is None for r in rows)

    assert recover("sq") == [1, 4, 9]
    assert step_runs == [1, 2, 3]  # the replay ran the body, not the steps
    assert body_runs == ["run", "run"]
    assert status_row("sq")["status"] == "SUCCESS"


def test_replay_runs_only_the_step_that_was_not_recorded(dbos: type[DBOS]) -> None:
    wait_for_launch_recovery()
    step_runs: List[int] = []

    @DBOS.step()
    def tag(n: int) -> str:
        step_runs.append(n)
        return f"t{n}"

    @DBOS.workflow()
    def tags() -> str:
        return tag(1) + tag(2)

    with SetWorkflowID("partial"):
        assert tags() == "t1t2"
    delete_step("partial", 2)
    assert recover("partial") == "t1t2"
    assert step_runs == [1, 2, 2]
    assert len(step_rows("partial")) == 2


def test_step_started_as_a_workflow_runs_as_a_temp_workflow(dbos: type[DBOS]) -> None:
    @DBOS.step()
    def triple(n: int) -> int:
        return n * 3

    handle = DBOS.start_workflow(triple, 5)
    assert handle.get_result() == 15
    row = status_row(handle.workflow_id)
    assert row["name"] == TEMP_PREFIX + triple.__qualname__
    assert row["status"] == "SUCCESS"
    rows = step_rows(handle.workflow_id)
    assert [(r[1], loaded_output(r[2])) for r in rows] == [(triple.__qualname__, 15)]


def test_nested_step_is_a_plain_call(dbos: type[DBOS]) -> None:
    inner_seen: List[Attempt] = []

    @DBOS.step(retries_allowed=True, max_attempts=4, interval_seconds=0)
    def inner(fail: bool) -> str:
        inner_seen.append(attempt_seen())
        if fail:
            raise FlakyError("inner")
        return "in"

    @DBOS.step()
    def outer() -> str:
        try:
            inner(True)
        except FlakyError:  # raised as is, once: the nested call has no retries
            pass
        return inner(False) + "+out"

    @DBOS.workflow()
    def wf() -> str:
        return outer()

    with SetWorkflowID("nested"):
        assert wf() == "in+out"
    # The inner calls ran in the outer step's context (step 1, no retry policy).
    assert inner_seen == [(1, None, None), (1, None, None)]
    rows = step_rows("nested")
    assert [(r[0], r[1]) for r in rows] == [(1, outer.__qualname__)]


# ----------------------------------------------------------------------
# Retries
# ----------------------------------------------------------------------


def test_retries_until_the_third_attempt_succeeds(dbos: type[DBOS]) -> None:
    seen: List[Attempt] = []

    @DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0)
    def flaky() -> str:
        seen.append(attempt_seen())
        if len(seen) < 3:
            raise FlakyError(f"attempt {len(seen)}")
        return "finally"

    @DBOS.workflow()
    def wf() -> str:
        return flaky()

    with SetWorkflowID("third-time"):
        assert wf() == "finally"
    assert seen == [(1, 1, 3), (1, 2, 3), (1, 3, 3)]
    [row] = step_rows("third-time")
    assert loaded_output(row[2]) == "finally" and row[3] is None


def test_exhausted_retries_raise_and_record_max_step_retries_exceeded(dbos: type[DBOS]) -> None:
    wait_for_launch_recovery()
    attempts: List[int] = []

    @DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0)
    def always_fails() -> None:
        attempts.append(1)
        raise FlakyError(f"failure {len(attempts)}")

    @DBOS.workflow()
    def wf() -> str:
        try:
            always_fails()
        except DBOSMaxStepRetriesExceeded as exc:
            return f"{type(exc).__name__}:{exc.max_retries}:{len(exc.errors)}"
        return "no error"

    with SetWorkflowID("exhausted"):
        assert wf() == "DBOSMaxStepRetriesExceeded:3:3"
    assert len(attempts) == 3
    [row] = step_rows("exhausted")
    assert row[2] is None
    recorded = loaded_error(row[3])
    assert isinstance(recorded, DBOSMaxStepRetriesExceeded)
    assert recorded.step_name == always_fails.__qualname__

    # The replay raises the recorded error without running the step again.
    assert recover("exhausted").startswith("DBOSMaxStepRetriesExceeded:3:")
    assert len(attempts) == 3


def test_exhausted_retries_fail_the_workflow(dbos: type[DBOS]) -> None:
    @DBOS.step(retries_allowed=True, max_attempts=2, interval_seconds=0)
    def always_fails() -> None:
        raise FlakyError("no")

    @DBOS.workflow()
    def wf() -> None:
        always_fails()

    with SetWorkflowID("failed-wf"), pytest.raises(DBOSMaxStepRetriesExceeded):
        wf()
    assert status_row("failed-wf")["status"] == "ERROR"
    with pytest.raises(DBOSMaxStepRetriesExceeded):
        DBOS.retrieve_workflow("failed-wf").get_result()


def test_exhausted_retries_keep_their_type_when_an_error_cannot_be_stored(
    dbos: type[DBOS],
) -> None:
    @DBOS.step(retries_allowed=True, max_attempts=2, interval_seconds=0)
    def always_fails() -> None:
        raise ContextualError("lost context", 7)

    @DBOS.workflow()
    def wf() -> None:
        always_fails()

    with SetWorkflowID("stand-in"), pytest.raises(DBOSMaxStepRetriesExceeded):
        wf()
    [row] = step_rows("stand-in")
    for recorded in (loaded_error(row[3]), status_row_error("stand-in")):
        assert isinstance(recorded, DBOSMaxStepRetriesExceeded)
        assert [type(e) for e in recorded.errors] == [DBOSRecordedError, DBOSRecordedError]
        assert all("ContextualError" in e.type_name for e in recorded.errors)  # type: ignore[attr-defined]


def status_row_error(workflow_id: str) -> BaseException:
    return loaded_error(status_row(workflow_id)["error"])


def test_should_retry_false_raises_the_original_at_once(dbos: type[DBOS]) -> None:
    attempts: List[str] = []

    def only_flaky(exc: BaseException) -> bool:
        return isinstance(exc, FlakyError)

    @DBOS.step(retries_allowed=True, max_attempts=5, interval_seconds=0, should_retry=only_flaky)
    def flaky_then_fatal() -> None:
        attempts.append("x")
        if len(attempts) == 1:
            raise FlakyError("retry me")
        raise FatalError("do not retry me")

    @DBOS.workflow()
    def wf() -> None:
        flaky_then_fatal()

    with SetWorkflowID("fatal"), pytest.raises(FatalError, match="do not retry me"):
        wf()
    assert len(attempts) == 2
    [row] = step_rows("fatal")
    assert isinstance(loaded_error(row[3]), FatalError)


def test_without_retries_the_original_error_is_raised_and_recorded(dbos: type[DBOS]) -> None:
    wait_for_launch_recovery()
    seen: List[Attempt] = []

    @DBOS.step()
    def fails_once() -> None:
        seen.append(attempt_seen())
        raise FlakyError("only once")

    @DBOS.workflow()
    def wf() -> str:
        try:
            fails_once()
        except FlakyError as exc:
            return f"caught {exc}"
        return "no error"

    with SetWorkflowID("no-retries"):
        assert wf() == "caught only once"
    assert seen == [(1, None, None)]
    [row] = step_rows("no-retries")
    recorded = loaded_error(row[3])
    assert type(recorded) is FlakyError and str(recorded) == "only once"
    assert recover("no-retries") == "caught only once"
    assert len(seen) == 1


def test_sync_step_rejects_an_async_should_retry(dbos: type[DBOS]) -> None:
    async def predicate(exc: BaseException) -> bool:
        return True

    @DBOS.step(retries_allowed=True, interval_seconds=0, should_retry=predicate)
    def fails() -> None:
        raise FlakyError("x")

    @DBOS.workflow()
    def wf() -> None:
        fails()

    with pytest.raises(DBOSException, match="async"):
        wf()


# ----------------------------------------------------------------------
# Async steps
# ----------------------------------------------------------------------


def test_async_step_is_checkpointed_and_replayed(dbos: type[DBOS]) -> None:
    wait_for_launch_recovery()
    step_runs: List[int] = []

    @DBOS.step()
    async def add_one(n: int) -> int:
        step_runs.append(n)
        await asyncio.sleep(0)
        return n + 1

    @DBOS.workflow()
    async def wf(n: int) -> int:
        first = await add_one(n)
        return await add_one(first)

    async def main() -> int:
        with SetWorkflowID("async-steps"):
            return await wf(1)

    assert asyncio.run(main()) == 3
    assert [loaded_output(r[2]) for r in step_rows("async-steps")] == [2, 3]
    assert recover("async-steps") == 3
    assert step_runs == [1, 2]


def test_gathered_async_steps_take_ids_in_the_order_they_start(dbos: type[DBOS]) -> None:
    wait_for_launch_recovery()
    finished: List[str] = []

    @DBOS.step()
    async def slow(done: asyncio.Event) -> str:
        await done.wait()  # finishes only after `fast`
        finished.append("slow")
        return "slow"

    @DBOS.step()
    async def fast(done: asyncio.Event) -> str:
        finished.append("fast")
        done.set()
        return "fast"

    @DBOS.workflow()
    async def wf() -> List[str]:
        done = asyncio.Event()
        return list(await asyncio.gather(slow(done), fast(done)))

    async def main() -> List[str]:
        with SetWorkflowID("gathered"):
            return await wf()

    assert asyncio.run(main()) == ["slow", "fast"]
    assert finished == ["fast", "slow"]
    rows = step_rows("gathered")
    assert [(r[0], loaded_output(r[2])) for r in rows] == [(1, "slow"), (2, "fast")]
    assert recover("gathered") == ["slow", "fast"]
    assert finished == ["fast", "slow"]


def test_async_step_retries_with_an_async_should_retry(dbos: type[DBOS]) -> None:
    seen: List[Attempt] = []
    judged: List[str] = []

    async def retry_flaky(exc: BaseException) -> bool:
        await asyncio.sleep(0)
        judged.append(type(exc).__name__)
        return isinstance(exc, FlakyError)

    @DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0, should_retry=retry_flaky)
    async def flaky() -> str:
        seen.append(attempt_seen())
        if len(seen) < 3:
            raise FlakyError("again")
        return "ok"

    @DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0, should_retry=retry_flaky)
    async def fatal() -> str:
        raise FatalError("stop")

    @DBOS.workflow()
    async def wf() -> Tuple[str, str]:
        first = await flaky()
        try:
            await fatal()
        except FatalError as exc:
            return first, str(exc)
        return first, "no error"

    async def main() -> Tuple[str, str]:
        with SetWorkflowID("async-retry"):
            return await wf()

    assert asyncio.run(main()) == ("ok", "stop")
    assert seen == [(1, 1, 3), (1, 2, 3), (1, 3, 3)]
    assert judged == ["FlakyError", "FlakyError", "FatalError"]
    rows = step_rows("async-retry")
    assert loaded_output(rows[0][2]) == "ok"
    assert isinstance(loaded_error(rows[1][3]), FatalError)


def test_async_step_exhausted_retries_record_max_step_retries_exceeded(dbos: type[DBOS]) -> None:
    wait_for_launch_recovery()
    attempts: List[int] = []

    @DBOS.step(retries_allowed=True, max_attempts=2, interval_seconds=0)
    async def always_fails() -> None:
        attempts.append(1)
        raise FlakyError("async failure")

    @DBOS.workflow()
    async def wf() -> str:
        try:
            await always_fails()
        except DBOSMaxStepRetriesExceeded as exc:
            return type(exc).__name__
        return "no error"

    async def main() -> Any:
        with SetWorkflowID("async-exhausted"):
            return await wf()

    assert asyncio.run(main()) == "DBOSMaxStepRetriesExceeded"
    [row] = step_rows("async-exhausted")
    assert isinstance(loaded_error(row[3]), DBOSMaxStepRetriesExceeded)
    assert recover("async-exhausted") == "DBOSMaxStepRetriesExceeded"
    assert len(attempts) == 2


# ----------------------------------------------------------------------
# Timeouts and preemption (async steps only)
# ----------------------------------------------------------------------


@pytest.mark.parametrize("option", [{"preemptible": True}, {"timeout_seconds": 1.0}])
def test_a_sync_step_refuses_timeout_and_preemption_at_decoration(dbos: type[DBOS],
                                                                  option: Dict[str, Any]) -> None:
    def sync_body() -> None:
        pass

    with pytest.raises(DBOSException, match=next(iter(option))) as raised:
        DBOS.step(**option)(sync_body)
    assert "async" in str(raised.value)
    assert sync_body.__qualname__ not in get_registry().functions  # nothing was registered


@pytest.mark.parametrize("value", [0, -1, math.inf, math.nan, "5", True])
def test_an_async_step_refuses_an_invalid_timeout_at_decoration(dbos: type[DBOS], value: Any) -> None:
    async def async_body() -> None:
        pass

    with pytest.raises(DBOSException, match="timeout_seconds") as raised:
        DBOS.step(timeout_seconds=value)(async_body)
    assert repr(value) in str(raised.value)


def run_async_workflow(workflow_id: str, wf: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        with SetWorkflowID(workflow_id):
            return await asyncio.wait_for(wf(), WAIT_S)

    return asyncio.run(main())


def test_a_timed_out_step_is_cancelled_cleaned_up_and_its_error_recorded(dbos: type[DBOS]) -> None:
    wait_for_launch_recovery()
    trail: List[str] = []

    @DBOS.step(timeout_seconds=0.2)
    async def hangs() -> None:
        trail.append("start")
        try:
            await asyncio.Event().wait()  # only the timeout ends this
        finally:
            await asyncio.sleep(0)  # cleanup that awaits still runs to its end
            trail.append("cleanup")

    @DBOS.workflow()
    async def wf() -> str:
        try:
            await hangs()
        except DBOSStepTimeoutError as exc:
            trail.append("caught")
            return f"{exc.step_name} {exc.timeout_seconds} {exc.dbos_error_code}"
        return "no timeout"

    assert run_async_workflow("timed-out", wf) == f"{hangs.__qualname__} 0.2 18"
    assert trail == ["start", "cleanup", "caught"]
    [row] = step_rows("timed-out")
    recorded = loaded_error(row[3])
    assert isinstance(recorded, DBOSStepTimeoutError)
    assert (recorded.step_name, recorded.timeout_seconds) == (hangs.__qualname__, 0.2)
    assert recover("timed-out") == f"{hangs.__qualname__} 0.2 18"  # replayed, not run again
    assert trail.count("start") == 1


def test_a_timed_out_attempt_is_retried_with_a_fresh_deadline(dbos: type[DBOS]) -> None:
    seen: List[Attempt] = []

    @DBOS.step(timeout_seconds=0.2, retries_allowed=True, max_attempts=3, interval_seconds=0)
    async def hangs_first() -> str:
        seen.append(attempt_seen())
        if len(seen) == 1:
            await asyncio.Event().wait()
        return "second attempt"

    @DBOS.step(timeout_seconds=0.2, retries_allowed=True, max_attempts=2, interval_seconds=0)
    async def always_hangs() -> None:
        await asyncio.Event().wait()

    @DBOS.workflow()
    async def wf() -> Tuple[str, List[str]]:
        first = await hangs_first()
        try:
            await always_hangs()
        except DBOSMaxStepRetriesExceeded as exc:
            return first, [type(e).__name__ for e in exc.errors]
        return first, []

    assert run_async_workflow("retried-timeout", wf) == (
        "second attempt", ["DBOSStepTimeoutError", "DBOSStepTimeoutError"])
    assert seen == [(1, 1, 3), (1, 2, 3)]
    rows = step_rows("retried-timeout")
    assert loaded_output(rows[0][2]) == "second attempt"
    assert isinstance(loaded_error(rows[1][3]), DBOSMaxStepRetriesExceeded)


def test_a_step_that_finishes_past_its_deadline_keeps_its_result(dbos: type[DBOS]) -> None:
    @DBOS.step(timeout_seconds=0.05)
    async def blocks_the_loop() -> str:
        time.sleep(0.2)  # the deadline passes while the loop cannot act on it
        return "finished"

    @DBOS.workflow()
    async def wf() -> str:
        return await blocks_the_loop()

    assert run_async_workflow("late-but-done", wf) == "finished"
    assert [loaded_output(r[2]) for r in step_rows("late-but-done")] == ["finished"]


def test_a_step_timeout_does_not_apply_outside_a_workflow(dbos: type[DBOS]) -> None:
    @DBOS.step(timeout_seconds=0.01)
    async def slow() -> str:
        await asyncio.sleep(0.1)
        return "plain call"

    assert asyncio.run(slow()) == "plain call"


class Preemption:
    """A preemptible step that hangs on its first run, and what happened to it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.trail: List[str] = []

    def workflow(self) -> Callable[[], Awaitable[str]]:
        @DBOS.step(preemptible=True)
        async def hangs_once() -> str:
            self.trail.append("start")
            if self.trail.count("start") == 1:
                self.entered.set()
                try:
                    await asyncio.Event().wait()  # only a preemption ends this
                except asyncio.CancelledError:
                    self.trail.append("step cancelled")
                    raise
            return "resumed"

        @DBOS.workflow()
        async def wf() -> str:
            try:
                return await hangs_once()
            except DBOSWorkflowCancelledError:
                self.trail.append("workflow saw the cancellation")
                raise

        self.step_name = hangs_once.__qualname__
        return wf

    def run_and_cancel(self, workflow_id: str, cancel: Callable[[str], Any]) -> None:
        """Start the workflow, cancel it once its step runs, see the wait end as cancelled."""
        wf = self.workflow()

        async def main() -> None:
            with SetWorkflowID(workflow_id):
                handle = await DBOS.start_workflow_async(wf)
            assert await asyncio.to_thread(self.entered.wait, WAIT_S)
            await asyncio.to_thread(cancel, workflow_id)
            with pytest.raises(DBOSAwaitedWorkflowCancelledError):
                await asyncio.wait_for(handle.get_result(), WAIT_S)

        asyncio.run(main())
        assert self.trail == ["start", "step cancelled", "workflow saw the cancellation"]
        assert step_rows(workflow_id) == []  # the preempted step recorded nothing
        assert status_row(workflow_id)["status"] == "CANCELLED"


def test_a_preemptible_step_stops_when_its_workflow_is_cancelled_and_reruns_on_resume(
    dbos: type[DBOS],
) -> None:
    wait_for_launch_recovery()
    preemption = Preemption()
    preemption.run_and_cancel("preempted", DBOS.cancel_workflow)

    assert DBOS.resume_workflow("preempted").get_result() == "resumed"
    assert preemption.trail.count("start") == 2
    assert [(r[1], loaded_output(r[2])) for r in step_rows("preempted")] == [(preemption.step_name, "resumed")]


def test_a_preemptible_step_notices_a_cancellation_made_by_another_process(sys_db_url: str) -> None:
    # Where nothing notifies this process (SQLite), the step's watch polls.
    DBOS(config=DBOSConfig(name="test-app", system_database_url=sys_db_url,
                           notification_listener_polling_interval_sec=0.1))
    DBOS.launch()
    wait_for_launch_recovery()

    def cancel_elsewhere(workflow_id: str) -> None:
        other = SystemDatabase(sys_db_url)
        try:
            assert other.cancel_workflows([workflow_id]) == [workflow_id]
        finally:
            other.close()

    Preemption().run_and_cancel("cancelled-elsewhere", cancel_elsewhere)


def cancel_from_a_thread(workflow_id: str) -> None:
    """Cancel while blocking the step's loop: the watch cannot react until the step yields."""
    thread = threading.Thread(target=DBOS.cancel_workflow, args=(workflow_id,))
    thread.start()
    thread.join(WAIT_S)


def test_a_preemptible_step_that_finishes_as_its_workflow_is_cancelled_keeps_its_result(
    dbos: type[DBOS],
) -> None:
    @DBOS.step(preemptible=True)
    async def finishes() -> str:
        cancel_from_a_thread("finished-anyway")
        return "done"

    @DBOS.workflow()
    async def wf() -> str:
        return await finishes()

    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        run_async_workflow("finished-anyway", wf)
    assert [loaded_output(r[2]) for r in step_rows("finished-anyway")] == ["done"]
    assert status_row("finished-anyway")["status"] == "CANCELLED"


def test_a_cancellation_outranks_a_timeout_that_passes_at_the_same_moment(dbos: type[DBOS]) -> None:
    seen: List[str] = []

    @DBOS.step(preemptible=True, timeout_seconds=0.05)
    async def cancelled_and_late() -> None:
        cancel_from_a_thread("both")
        time.sleep(0.2)  # the deadline passes too before the loop can act on either
        await asyncio.Event().wait()

    @DBOS.workflow()
    async def wf() -> None:
        try:
            await cancelled_and_late()
        except BaseException as exc:
            seen.append(type(exc).__name__)
            raise

    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        run_async_workflow("both", wf)
    assert seen == ["DBOSWorkflowCancelledError"]
    assert step_rows("both") == []
