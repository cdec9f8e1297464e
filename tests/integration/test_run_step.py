"""``DBOS.run_step`` / ``run_step_async``: any callable as a checkpointed step.

Each test counts how often a callable really runs and reads the rows the run
left. A replay is forced the way a crash would force it: the finished
workflow is set back to PENDING and recovered; its steps must come back from
their checkpoints without running again.
"""

from __future__ import annotations

import asyncio
import functools
import math
import threading
from typing import Any, Dict, List, Optional, Tuple

import pytest

from dbos import DBOS, SetWorkflowID
from dbos._engine.step import StepOptions
from dbos.error import DBOSException, DBOSMaxStepRetriesExceeded, DBOSStepTimeoutError
from tests.integration.sysdb_sql import (
    count_rows,
    loaded_error,
    loaded_output,
    recover,
    step_rows,
    wait_for_launch_recovery,
)

WAIT_S = 30.0  # reached only when a test is already failing


class FlakyError(Exception):
    """Raised by the test callables; module level, so it pickles."""


def names_and_outputs(workflow_id: str) -> List[Tuple[int, str, Any]]:
    return [(r[0], r[1], loaded_output(r[2])) for r in step_rows(workflow_id)]


def double(n: int) -> int:
    return n * 2


async def add_ten(n: int) -> int:
    await asyncio.sleep(0)
    return n + 10


# ----------------------------------------------------------------------
# In a workflow: checkpointed, and replayed without running again
# ----------------------------------------------------------------------


def test_run_step_in_a_sync_workflow_checkpoints_sync_async_and_lambda_callables(dbos: type[DBOS]) -> None:
    wait_for_launch_recovery()
    calls: List[str] = []
    threads: List[str] = []

    def triple(n: int) -> int:
        calls.append("triple")
        return n * 3

    async def plus_one(n: int) -> int:
        calls.append("plus_one")
        threads.append(threading.current_thread().name)
        return n + 1

    @DBOS.workflow()
    def wf(n: int) -> List[Any]:
        return [
            DBOS.run_step(None, triple, n),
            DBOS.run_step(None, plus_one, n),
            DBOS.run_step(None, lambda: calls.append("lambda") or "from lambda"),
            DBOS.run_step({"name": "custom-name"}, triple, n=5),
        ]

    with SetWorkflowID("sync-wf"):
        assert wf(2) == [6, 3, "from lambda", 15]
    assert calls == ["triple", "plus_one", "lambda", "triple"]
    assert threads != [threading.current_thread().name]  # the coroutine ran on the background loop
    assert names_and_outputs("sync-wf") == [
        (1, triple.__qualname__, 6),
        (2, plus_one.__qualname__, 3),
        (3, "test_run_step_in_a_sync_workflow_checkpoints_sync_async_and_lambda_callables.<locals>.wf"
            ".<locals>.<lambda>", "from lambda"),
        (4, "custom-name", 15),
    ]

    assert recover("sync-wf") == [6, 3, "from lambda", 15]
    assert len(calls) == 4, "the replay ran a recorded step again"


def test_run_step_async_in_an_async_workflow_checkpoints_sync_async_and_lambda_callables(
    dbos: type[DBOS],
) -> None:
    wait_for_launch_recovery()
    calls: List[str] = []
    loop_thread: List[str] = []
    sync_thread: List[str] = []

    def shout(word: str) -> str:
        calls.append("shout")
        sync_thread.append(threading.current_thread().name)
        return word.upper()

    async def whisper(word: str) -> str:
        calls.append("whisper")
        return word.lower()

    @DBOS.workflow()
    async def wf() -> List[Any]:
        loop_thread.append(threading.current_thread().name)
        return [
            await DBOS.run_step_async(None, shout, "hi"),
            await DBOS.run_step_async(None, whisper, word="LOW"),
            await DBOS.run_step_async({"name": "answer"}, lambda: calls.append("lambda") or 42),
        ]

    async def main() -> List[Any]:
        with SetWorkflowID("async-wf"):
            return await wf()

    assert asyncio.run(main()) == ["HI", "low", 42]
    assert calls == ["shout", "whisper", "lambda"]
    assert sync_thread != loop_thread  # a sync callable under run_step_async runs in a thread
    assert names_and_outputs("async-wf") == [
        (1, shout.__qualname__, "HI"), (2, whisper.__qualname__, "low"), (3, "answer", 42),
    ]
    assert recover("async-wf") == ["HI", "low", 42]
    assert len(calls) == 3, "the replay ran a recorded step again"


def test_gathered_run_step_async_calls_take_ids_in_the_order_they_start(dbos: type[DBOS]) -> None:
    release = threading.Event()

    def waits_for_release() -> str:
        assert release.wait(WAIT_S)
        return "sync"

    async def releases() -> str:
        release.set()
        return "async"

    @DBOS.workflow()
    async def wf() -> List[str]:
        return list(await asyncio.gather(DBOS.run_step_async(None, waits_for_release),
                                         DBOS.run_step_async(None, releases)))

    async def main() -> List[str]:
        with SetWorkflowID("gathered"):
            return await wf()

    assert asyncio.run(main()) == ["sync", "async"]
    assert [(r[0], r[1]) for r in step_rows("gathered")] == [
        (1, waits_for_release.__qualname__), (2, releases.__qualname__),
    ]


def test_run_step_records_the_same_rows_as_a_decorated_step(dbos: type[DBOS]) -> None:
    def body(n: int) -> int:
        return n * 7

    decorated = DBOS.step(name="times-seven")(body)

    @DBOS.workflow()
    def wf() -> Tuple[int, int]:
        return decorated(3), DBOS.run_step({"name": "times-seven"}, body, 3)

    with SetWorkflowID("same-rows"):
        assert wf() == (21, 21)
    listed = [(s["function_id"], s["function_name"], s["output"], s["error"])
              for s in DBOS.list_workflow_steps("same-rows")]
    assert listed == [(1, "times-seven", 21, None), (2, "times-seven", 21, None)]


def test_run_step_of_a_decorated_step_records_one_step(dbos: type[DBOS]) -> None:
    calls: List[int] = []

    @DBOS.step()
    def decorated(n: int) -> int:
        calls.append(n)
        return n + 100

    @DBOS.workflow()
    def wf() -> int:
        return DBOS.run_step(None, decorated, 1)

    with SetWorkflowID("no-double-wrap"):
        assert wf() == 101
    assert calls == [1]
    assert names_and_outputs("no-double-wrap") == [(1, decorated.__qualname__, 101)]


def test_a_partial_and_a_callable_object_are_named_after_what_they_call(dbos: type[DBOS]) -> None:
    class Doubler:
        def __call__(self, n: int) -> int:
            return n * 2

    @DBOS.workflow()
    def wf() -> Tuple[int, int]:
        return DBOS.run_step(None, functools.partial(double, 4)), DBOS.run_step(None, Doubler(), 5)

    with SetWorkflowID("callables"):
        assert wf() == (8, 10)
    assert [r[1] for r in step_rows("callables")] == [double.__qualname__, Doubler.__qualname__]


# ----------------------------------------------------------------------
# Options: retries, errors
# ----------------------------------------------------------------------


def test_run_step_retries_as_its_options_ask(dbos: type[DBOS]) -> None:
    seen: List[Tuple[Optional[int], Optional[int]]] = []

    def flaky() -> str:
        status = DBOS.step_status
        assert status is not None
        seen.append((status.current_attempt, status.max_attempts))
        if len(seen) < 3:
            raise FlakyError(f"attempt {len(seen)}")
        return "third time"

    def always_fails() -> None:
        raise FlakyError("never")

    options: StepOptions = {"retries_allowed": True, "max_attempts": 3, "interval_seconds": 0}

    @DBOS.workflow()
    def wf() -> str:
        first = DBOS.run_step(options, flaky)
        try:
            DBOS.run_step({**options, "max_attempts": 2}, always_fails)
        except DBOSMaxStepRetriesExceeded as exc:
            return f"{first}/{len(exc.errors)}"
        return "no error"

    with SetWorkflowID("retried"):
        assert wf() == "third time/2"
    assert seen == [(1, 3), (2, 3), (3, 3)]
    rows = step_rows("retried")
    assert loaded_output(rows[0][2]) == "third time"
    recorded = loaded_error(rows[1][3])
    assert isinstance(recorded, DBOSMaxStepRetriesExceeded)
    assert recorded.step_name == always_fails.__qualname__


def test_an_error_without_retries_is_recorded_and_replayed(dbos: type[DBOS]) -> None:
    wait_for_launch_recovery()
    calls: List[int] = []

    async def fails() -> None:
        calls.append(1)
        raise FlakyError("once")

    @DBOS.workflow()
    async def wf() -> str:
        try:
            await DBOS.run_step_async(None, fails)
        except FlakyError as exc:
            return f"caught {exc}"
        return "no error"

    async def main() -> str:
        with SetWorkflowID("error-replayed"):
            return await wf()

    assert asyncio.run(main()) == "caught once"
    assert isinstance(loaded_error(step_rows("error-replayed")[0][3]), FlakyError)
    assert recover("error-replayed") == "caught once"
    assert calls == [1]


# ----------------------------------------------------------------------
# Outside a workflow, and the calling conventions
# ----------------------------------------------------------------------


def test_run_step_outside_a_workflow_is_a_direct_call(dbos: type[DBOS]) -> None:
    calls: List[str] = []

    def fails_once() -> str:
        calls.append("fails")
        raise FlakyError("no retries outside a workflow")

    assert DBOS.run_step(None, double, 21) == 42
    assert DBOS.run_step(None, add_ten, 1) == 11  # a coroutine function runs to completion
    assert DBOS.run_step(None, lambda: "lambda") == "lambda"
    with pytest.raises(FlakyError):
        DBOS.run_step({"retries_allowed": True, "max_attempts": 5, "interval_seconds": 0}, fails_once)
    assert calls == ["fails"]

    async def main() -> List[Any]:
        return [await DBOS.run_step_async(None, double, 1), await DBOS.run_step_async(None, add_ten, 2)]

    assert asyncio.run(main()) == [2, 12]
    assert count_rows("status") == 0
    assert count_rows("steps") == 0


def test_run_step_async_outside_a_running_loop_raises_runtime_error(dbos: type[DBOS]) -> None:
    coroutine = DBOS.run_step_async(None, double, 1)
    with pytest.raises(RuntimeError, match="run_step_async"):
        coroutine.send(None)
    coroutine.close()


def test_run_step_inside_a_running_loop_raises_runtime_error(dbos: type[DBOS]) -> None:
    calls: List[int] = []

    async def main() -> None:
        DBOS.run_step(None, lambda: calls.append(1))

    with pytest.raises(RuntimeError, match="run_step_async"):
        asyncio.run(main())
    assert calls == []


# ----------------------------------------------------------------------
# Timeouts and preemption through run_step
# ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, math.inf, math.nan, "5"])
def test_an_invalid_timeout_is_refused_before_anything_is_written(dbos: type[DBOS], value: Any) -> None:
    calls: List[int] = []

    async def step() -> None:
        calls.append(1)

    @DBOS.workflow()
    async def wf() -> str:
        try:
            await DBOS.run_step_async({"timeout_seconds": value}, step)
        except DBOSException as exc:
            return str(exc)
        return "accepted"

    async def main() -> str:
        with SetWorkflowID("bad-timeout"):
            return await wf()

    message = asyncio.run(main())
    assert "timeout_seconds" in message and repr(value) in message
    assert calls == []
    assert step_rows("bad-timeout") == []


@pytest.mark.parametrize("options", [{"timeout_seconds": 1.0}, {"preemptible": True}])
def test_a_sync_callable_refuses_timeout_and_preemption(dbos: type[DBOS], options: Dict[str, Any]) -> None:
    calls: List[int] = []

    @DBOS.workflow()
    def wf() -> str:
        try:
            DBOS.run_step(options, lambda: calls.append(1))  # type: ignore[arg-type]
        except DBOSException as exc:
            return str(exc)
        return "accepted"

    with SetWorkflowID("sync-options"):
        message = wf()
    assert next(iter(options)) in message and "async" in message
    assert calls == []
    assert step_rows("sync-options") == []


def test_run_step_async_times_out_and_retries_with_a_fresh_deadline(dbos: type[DBOS]) -> None:
    attempts: List[str] = []

    async def hangs_first() -> str:
        attempts.append("start")
        if len(attempts) == 1:
            try:
                await asyncio.Event().wait()  # only the timeout ends this attempt
            finally:
                attempts.append("cleanup")
        return "second attempt"

    async def hangs() -> None:
        await asyncio.Event().wait()

    options: StepOptions = {"timeout_seconds": 0.2, "retries_allowed": True, "max_attempts": 2,
                            "interval_seconds": 0}

    @DBOS.workflow()
    async def wf() -> Tuple[str, str]:
        first = await DBOS.run_step_async(options, hangs_first)
        try:
            await DBOS.run_step_async({"timeout_seconds": 0.2, "name": "hangs"}, hangs)
        except DBOSStepTimeoutError as exc:
            return first, f"{exc.step_name}:{exc.timeout_seconds}"
        return first, "no timeout"

    async def main() -> Tuple[str, str]:
        with SetWorkflowID("timed-out"):
            return await asyncio.wait_for(wf(), WAIT_S)

    assert asyncio.run(main()) == ("second attempt", "hangs:0.2")
    assert attempts == ["start", "cleanup", "start"]
    rows = step_rows("timed-out")
    assert loaded_output(rows[0][2]) == "second attempt"
    recorded = loaded_error(rows[1][3])
    assert isinstance(recorded, DBOSStepTimeoutError) and recorded.step_name == "hangs"
