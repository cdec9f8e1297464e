"""Cancellation and workflow timeouts, on the backend chosen with ``--backend``.

A cancelled workflow stops at its next DBOS operation: a ``recv`` or ``sleep``
it is blocked in wakes at once, a step it is inside finishes (and is
recorded) but the next one never starts, and nothing the body does afterwards
takes it out of CANCELLED. A timeout is an absolute deadline that children
inherit and that recovery re-arms.

Threads and workflows hand off through events and handles; the engine's
waiter registry is tapped (``TappedWaiters``) so a test cancels only once the
workflow really waits. Every wait that only a cancellation should end lasts
``NEVER_S``, longer than the ``WAIT_S`` bound on each outcome, and waiters
never poll (huge polling interval), so a missed wake-up fails the test instead
of passing late. Rows are read through the test's own connections
(``tests.probe``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from dbos import DBOS, DBOSConfig, SetWorkflowID, SetWorkflowTimeout
from dbos._engine.engine import Engine, peek_engine
from dbos._engine.waiters import Waiters
from dbos.error import DBOSAwaitedWorkflowCancelledError, DBOSWorkflowCancelledError
from dbos._engine.recovery import recover_one
from dbos._sysdb.notifications import cancel_key
from tests.integration.sysdb_sql import set_pending, sys_sql, wait_for_launch_recovery
from tests.probe import qualified, query

WAIT_S = 30.0
NEVER_S = 120.0  # longer than WAIT_S: only a cancellation ends such a wait in time
TIMEOUT_S = 0.5

StepRow = Tuple[int, str, Any]


# ----------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------


def engine() -> Engine:
    found = peek_engine()
    assert found is not None, "DBOS is not launched"
    return found


class TappedWaiters(Waiters):
    """The engine's real waiter registry, also telling the test when a workflow
    starts waiting (registers for its cancellation) inside recv, sleep..."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: Dict[str, threading.Event] = {}
        self._guard = threading.Lock()

    def waiting(self, workflow_id: str) -> threading.Event:
        with self._guard:
            return self._waiting.setdefault(cancel_key(workflow_id), threading.Event())

    def register(self, key: str, event: Optional[threading.Event] = None) -> threading.Event:
        registered = super().register(key, event)
        with self._guard:
            self._waiting.setdefault(key, threading.Event()).set()
        return registered


def recorded_besides_sleep(url: str, workflow_id: str) -> List[str]:
    """The steps recorded, without a recv's wake-up time, which a wait that
    ends early (here: by cancellation) does not record."""
    return [name for name in step_names(url, workflow_id) if name != "DBOS.sleep"]


@pytest.fixture
def config(migrated_sys_db_url: str) -> DBOSConfig:
    """Waiters never poll within a test's patience: only a wake-up ends a wait in time."""
    return DBOSConfig(name="test-app", system_database_url=migrated_sys_db_url,
                      notification_listener_polling_interval_sec=1000.0)


@pytest.fixture
def launched(dbos: type[DBOS]) -> Iterator[type[DBOS]]:
    """A launched DBOS whose start-up recovery pass is over (tests rewrite rows)."""
    wait_for_launch_recovery()
    yield dbos


@pytest.fixture
def tap(launched: type[DBOS]) -> TappedWaiters:
    """Installed before any workflow runs, so every waiter registers with it."""
    tapped = TappedWaiters()
    engine().waiters = tapped
    return tapped


def name_of(func: Callable[..., Any]) -> str:
    return str(getattr(func, "dbos_function_name"))


def column(url: str, workflow_id: str, name: str) -> Any:
    table = qualified(url, "workflow_status")
    rows = query(url, f"SELECT {name} FROM {table} WHERE workflow_uuid = %s", (workflow_id,))
    assert len(rows) == 1, f"expected one row for {workflow_id}, found {len(rows)}"
    return rows[0][0]


def status(url: str, workflow_id: str) -> str:
    return str(column(url, workflow_id, "status"))


def row_count(url: str, workflow_id: str) -> int:
    table = qualified(url, "workflow_status")
    sql = f"SELECT COUNT(*) FROM {table} WHERE workflow_uuid = %s"
    return int(query(url, sql, (workflow_id,))[0][0])


def steps(url: str, workflow_id: str) -> List[StepRow]:
    """(function_id, function_name, decoded output) of every recorded step."""
    table = qualified(url, "operation_outputs")
    sql = (
        f"SELECT function_id, function_name, output FROM {table} "
        "WHERE workflow_uuid = %s ORDER BY function_id"
    )
    codec = engine().codec
    return [(int(r[0]), str(r[1]), codec.load_value(r[2])) for r in query(url, sql, (workflow_id,))]


def step_names(url: str, workflow_id: str) -> List[str]:
    return [name for _, name, _ in steps(url, workflow_id)]


def settle(call: Callable[[], Any]) -> Dict[str, Any]:
    """Run ``call`` on a thread; its result or exception, within ``WAIT_S``."""
    box: Dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:  # the test inspects whatever came out
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(WAIT_S)
    assert not thread.is_alive(), f"still waiting after {WAIT_S} s: the workflow was never woken"
    return box


def awaited_cancel(call: Callable[[], Any]) -> None:
    """``call`` (waiting for a workflow) raises ``DBOSAwaitedWorkflowCancelledError`` in time."""
    box = settle(call)
    assert isinstance(box.get("error"), DBOSAwaitedWorkflowCancelledError), box


async def awaited_cancel_async(result: Awaitable[Any]) -> None:
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(result, WAIT_S)


class Trail:
    """What a workflow body went through, filled in by the body itself."""

    def __init__(self) -> None:
        self.entered = threading.Event()  # the body reached a point to cancel it at
        self.seen: List[BaseException] = []  # cancellation errors raised inside the body
        self.ran: List[str] = []  # steps that actually executed

    def cancellations(self) -> int:
        assert all(isinstance(e, DBOSWorkflowCancelledError) for e in self.seen), self.seen
        return len(self.seen)


def assert_cancelled(url: str, workflow_id: str, trail: Trail, seen: int = 1) -> None:
    assert status(url, workflow_id) == "CANCELLED"
    assert column(url, workflow_id, "output") is None
    assert trail.cancellations() == seen
    assert trail.ran == [], "no step after the cancellation point ran"


# ----------------------------------------------------------------------
# Cancelling a running workflow
# ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_cancel_wakes_a_workflow_blocked_in_recv(tap: TappedWaiters, sys_db_url: str,
                                                 mode: str) -> None:
    trail = Trail()
    workflow_id = f"recv-{mode}"

    @DBOS.step()
    def arrive() -> None:
        pass

    @DBOS.step()
    def afterwards() -> None:
        trail.ran.append("afterwards")

    @DBOS.workflow()
    def waiter() -> Any:
        arrive()
        try:
            got = DBOS.recv("go", timeout_seconds=NEVER_S)
        except DBOSWorkflowCancelledError as exc:
            trail.seen.append(exc)
            raise
        afterwards()
        return got

    @DBOS.workflow()
    async def waiter_async() -> Any:
        arrive()
        try:
            got = await DBOS.recv_async("go", timeout_seconds=NEVER_S)
        except DBOSWorkflowCancelledError as exc:
            trail.seen.append(exc)
            raise
        afterwards()
        return got

    if mode == "sync":
        with SetWorkflowID(workflow_id):
            handle = DBOS.start_workflow(waiter)
        assert tap.waiting(workflow_id).wait(WAIT_S)
        DBOS.cancel_workflow(workflow_id)
        awaited_cancel(handle.get_result)
    else:

        async def main() -> None:
            with SetWorkflowID(workflow_id):
                handle = await DBOS.start_workflow_async(waiter_async)
            assert await asyncio.to_thread(tap.waiting(workflow_id).wait, WAIT_S)
            await DBOS.cancel_workflow_async(workflow_id)
            await awaited_cancel_async(handle.get_result())

        asyncio.run(main())

    assert_cancelled(sys_db_url, workflow_id, trail)
    # The recv never completed: neither a message nor a timeout was recorded
    # (its wake-up time may be, depending on how long it waited).
    assert recorded_besides_sleep(sys_db_url, workflow_id) == [name_of(arrive)]
    # Anyone else waiting for the result reads the cancellation from the database.
    awaited_cancel(DBOS.retrieve_workflow(workflow_id).get_result)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_cancel_wakes_a_workflow_in_a_durable_sleep(tap: TappedWaiters, sys_db_url: str,
                                                    mode: str) -> None:
    trail = Trail()
    workflow_id = f"sleep-{mode}"

    @DBOS.step()
    def arrive() -> None:
        pass

    @DBOS.step()
    def afterwards() -> None:
        trail.ran.append("afterwards")

    @DBOS.workflow()
    def sleeper() -> None:
        arrive()
        try:
            DBOS.sleep(NEVER_S)
        except DBOSWorkflowCancelledError as exc:
            trail.seen.append(exc)
            raise
        afterwards()

    @DBOS.workflow()
    async def sleeper_async() -> None:
        arrive()
        try:
            await DBOS.sleep_async(NEVER_S)
        except DBOSWorkflowCancelledError as exc:
            trail.seen.append(exc)
            raise
        afterwards()

    if mode == "sync":
        with SetWorkflowID(workflow_id):
            handle = DBOS.start_workflow(sleeper)
        assert tap.waiting(workflow_id).wait(WAIT_S)
        DBOS.cancel_workflow(workflow_id)
        awaited_cancel(handle.get_result)
    else:

        async def main() -> None:
            with SetWorkflowID(workflow_id):
                handle = await DBOS.start_workflow_async(sleeper_async)
            assert await asyncio.to_thread(tap.waiting(workflow_id).wait, WAIT_S)
            await DBOS.cancel_workflow_async(workflow_id)
            await awaited_cancel_async(handle.get_result())

        asyncio.run(main())

    assert_cancelled(sys_db_url, workflow_id, trail)
    recorded = steps(sys_db_url, workflow_id)
    assert [name for _, name, _ in recorded] == [name_of(arrive), "DBOS.sleep"]
    assert recorded[1][2] > time.time() + NEVER_S / 2, "the sleep was cut short, not completed"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_step_in_progress_finishes_and_is_recorded_but_the_next_never_runs(
    launched: type[DBOS], sys_db_url: str, mode: str
) -> None:
    trail = Trail()
    release = threading.Event()
    workflow_id = f"between-{mode}"

    @DBOS.step()
    def slow() -> str:
        trail.entered.set()
        assert release.wait(WAIT_S)
        return "slow-done"

    @DBOS.step()
    async def slow_async() -> str:
        trail.entered.set()
        assert await asyncio.to_thread(release.wait, WAIT_S)
        return "slow-done"

    @DBOS.step()
    def following() -> str:
        trail.ran.append("following")
        return "following-done"

    @DBOS.workflow()
    def two_steps() -> str:
        try:
            slow()
            return following()
        except DBOSWorkflowCancelledError as exc:
            trail.seen.append(exc)
            raise

    @DBOS.workflow()
    async def two_steps_async() -> str:
        try:
            await slow_async()
            return following()
        except DBOSWorkflowCancelledError as exc:
            trail.seen.append(exc)
            raise

    if mode == "sync":
        with SetWorkflowID(workflow_id):
            handle = DBOS.start_workflow(two_steps)
        assert trail.entered.wait(WAIT_S)
        DBOS.cancel_workflow(workflow_id)
        release.set()
        awaited_cancel(handle.get_result)
        slow_name = name_of(slow)
    else:

        async def main() -> None:
            with SetWorkflowID(workflow_id):
                handle = await DBOS.start_workflow_async(two_steps_async)
            assert await asyncio.to_thread(trail.entered.wait, WAIT_S)
            await DBOS.cancel_workflow_async(workflow_id)
            release.set()
            await awaited_cancel_async(handle.get_result())

        asyncio.run(main())
        slow_name = name_of(slow_async)

    assert_cancelled(sys_db_url, workflow_id, trail)
    assert steps(sys_db_url, workflow_id) == [(1, slow_name, "slow-done")]


def test_a_cancelled_workflow_stays_cancelled_whatever_its_body_does(
    tap: TappedWaiters, sys_db_url: str
) -> None:
    trail = Trail()

    @DBOS.step()
    def arrive() -> None:
        pass

    @DBOS.step()
    def afterwards() -> None:
        trail.ran.append("afterwards")

    @DBOS.workflow()
    def stubborn() -> str:
        arrive()
        try:
            DBOS.recv("go", timeout_seconds=NEVER_S)
        except DBOSWorkflowCancelledError as exc:
            trail.seen.append(exc)  # swallowed: the body carries on
        try:
            afterwards()
        except DBOSWorkflowCancelledError as exc:
            trail.seen.append(exc)  # a step after the cancellation refuses to run
        return "survived"

    with SetWorkflowID("stubborn"):
        handle = DBOS.start_workflow(stubborn)
    assert tap.waiting("stubborn").wait(WAIT_S)
    DBOS.cancel_workflow("stubborn")
    awaited_cancel(handle.get_result)

    assert_cancelled(sys_db_url, "stubborn", trail, seen=2)
    assert recorded_besides_sleep(sys_db_url, "stubborn") == [name_of(arrive)]
    awaited_cancel(DBOS.retrieve_workflow("stubborn").get_result)


def test_cancelling_a_finished_workflow_changes_nothing(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    def quick(x: int) -> int:
        return x + 1

    with SetWorkflowID("finished"):
        assert quick(41) == 42
    before = [column(sys_db_url, "finished", c) for c in ("status", "output", "completed_at")]

    DBOS.cancel_workflow("finished")
    DBOS.cancel_workflows(["finished"])

    after = [column(sys_db_url, "finished", c) for c in ("status", "output", "completed_at")]
    assert after == before
    assert after[0] == "SUCCESS"
    assert DBOS.retrieve_workflow("finished").get_result() == 42


def test_cancelling_an_unknown_workflow_is_harmless(launched: type[DBOS], sys_db_url: str) -> None:
    DBOS.cancel_workflow("no-such-workflow")
    DBOS.cancel_workflows(["no-such-workflow", "nor-this-one"])
    asyncio.run(DBOS.cancel_workflow_async("no-such-workflow"))
    assert row_count(sys_db_url, "no-such-workflow") == 0
    assert row_count(sys_db_url, "nor-this-one") == 0


def test_cancel_inside_a_workflow_is_a_checkpointed_step(tap: TappedWaiters, sys_db_url: str) -> None:
    trail = Trail()

    @DBOS.step()
    def arrive() -> None:
        pass

    @DBOS.workflow()
    def target() -> Any:
        arrive()
        try:
            return DBOS.recv("go", timeout_seconds=NEVER_S)
        except DBOSWorkflowCancelledError as exc:
            trail.seen.append(exc)
            raise

    @DBOS.workflow()
    def canceller(victim: str) -> str:
        DBOS.cancel_workflow(victim)
        return "cancelled it"

    with SetWorkflowID("victim"):
        victim = DBOS.start_workflow(target)
    assert tap.waiting("victim").wait(WAIT_S)
    with SetWorkflowID("canceller"):
        assert canceller("victim") == "cancelled it"
    awaited_cancel(victim.get_result)
    assert_cancelled(sys_db_url, "victim", trail)
    assert steps(sys_db_url, "canceller") == [(1, "DBOS.cancelWorkflow", None)]

    # A replay of the canceller returns the recorded step instead of cancelling again.
    sys_sql("UPDATE {status} SET status = 'PENDING' WHERE workflow_uuid = ?", ("victim",))
    set_pending("canceller")
    assert settle(recover_one(engine(), "canceller").get_result) == {"result": "cancelled it"}
    assert status(sys_db_url, "victim") == "PENDING"
    assert steps(sys_db_url, "canceller") == [(1, "DBOS.cancelWorkflow", None)]


@pytest.mark.parametrize("api", ["sync", "async"])
def test_cancel_workflows_cancels_every_listed_workflow(tap: TappedWaiters, sys_db_url: str,
                                                        api: str) -> None:
    ids = [f"many-{api}-{n}" for n in range(3)]
    trail = Trail()

    @DBOS.workflow()
    def waiter() -> Any:
        try:
            return DBOS.recv("go", timeout_seconds=NEVER_S)
        except DBOSWorkflowCancelledError as exc:
            trail.seen.append(exc)
            raise

    @DBOS.workflow()
    def quick() -> str:
        return "done"

    with SetWorkflowID(f"done-{api}"):
        assert quick() == "done"
    handles = []
    for workflow_id in ids:
        with SetWorkflowID(workflow_id):
            handles.append(DBOS.start_workflow(waiter))
    for workflow_id in ids:
        assert tap.waiting(workflow_id).wait(WAIT_S)

    targets = ids + [f"done-{api}", "never-existed"]
    if api == "sync":
        DBOS.cancel_workflows(targets)
    else:
        asyncio.run(DBOS.cancel_workflows_async(targets))

    for handle in handles:
        awaited_cancel(handle.get_result)
    assert [status(sys_db_url, w) for w in ids] == ["CANCELLED"] * 3
    assert trail.cancellations() == 3
    assert status(sys_db_url, f"done-{api}") == "SUCCESS"
    assert row_count(sys_db_url, "never-existed") == 0


# ----------------------------------------------------------------------
# Timeouts
# ----------------------------------------------------------------------


def assert_deadline(url: str, workflow_id: str, timeout_ms: int) -> int:
    """The row holds the timeout and a deadline that far past its creation."""
    assert column(url, workflow_id, "workflow_timeout_ms") == timeout_ms
    deadline = int(column(url, workflow_id, "workflow_deadline_epoch_ms"))
    assert deadline == int(column(url, workflow_id, "created_at")) + timeout_ms
    return deadline


@pytest.mark.parametrize("how", ["start", "call", "async"])
def test_a_timeout_cancels_the_workflow(launched: type[DBOS], sys_db_url: str, how: str) -> None:
    trail = Trail()
    workflow_id = f"timeout-{how}"

    @DBOS.workflow()
    def waits() -> Any:
        try:
            return DBOS.recv("go", timeout_seconds=NEVER_S)
        except DBOSWorkflowCancelledError as exc:
            trail.seen.append(exc)
            raise

    @DBOS.workflow()
    async def sleeps() -> None:
        try:
            await DBOS.sleep_async(NEVER_S)
        except DBOSWorkflowCancelledError as exc:
            trail.seen.append(exc)
            raise

    def call() -> Any:
        with SetWorkflowID(workflow_id), SetWorkflowTimeout(TIMEOUT_S):
            return waits()

    if how == "start":
        with SetWorkflowID(workflow_id), SetWorkflowTimeout(TIMEOUT_S):
            handle = DBOS.start_workflow(waits)
        awaited_cancel(handle.get_result)
    elif how == "call":
        awaited_cancel(call)
    else:

        async def main() -> None:
            with SetWorkflowID(workflow_id), SetWorkflowTimeout(TIMEOUT_S):
                handle = await DBOS.start_workflow_async(sleeps)
            await awaited_cancel_async(handle.get_result())

        asyncio.run(main())

    assert_cancelled(sys_db_url, workflow_id, trail)
    assert_deadline(sys_db_url, workflow_id, int(TIMEOUT_S * 1000))


def test_children_inherit_the_absolute_deadline(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.step()
    def later() -> None:
        # Let the clock move on, so a child that computed its own deadline
        # from the parent's timeout would get a different one.
        time.sleep(0.02)

    @DBOS.workflow()
    def child(x: int) -> int:
        return x

    @DBOS.workflow()
    def parent() -> int:
        later()
        called = child(1)  # parent-2, result at 3
        started = DBOS.start_workflow(child, 2).get_result()  # parent-4, result at 5
        with SetWorkflowTimeout(60):
            overridden = DBOS.start_workflow(child, 3).get_result()  # parent-6, result at 7
        return called + started + overridden

    with SetWorkflowID("parent"), SetWorkflowTimeout(30):
        assert parent() == 6

    deadline = assert_deadline(sys_db_url, "parent", 30_000)
    for child_id in ("parent-2", "parent-4"):
        assert column(sys_db_url, child_id, "workflow_deadline_epoch_ms") == deadline
        assert int(column(sys_db_url, child_id, "created_at")) > int(column(sys_db_url, "parent", "created_at"))
    # An explicit timeout inside the parent gives that child a deadline of its own.
    assert assert_deadline(sys_db_url, "parent-6", 60_000) > deadline


@pytest.mark.parametrize("how", ["call", "start"])
def test_a_timeout_cancels_the_child_too(launched: type[DBOS], sys_db_url: str, how: str) -> None:
    trail = Trail()
    parent_id = f"timed-parent-{how}"
    child_id = f"{parent_id}-1"

    @DBOS.workflow()
    def child() -> Any:
        try:
            return DBOS.recv("go", timeout_seconds=NEVER_S)
        except DBOSWorkflowCancelledError as exc:
            trail.seen.append(exc)
            raise

    @DBOS.workflow()
    def parent() -> Any:
        if how == "call":
            return child()
        return DBOS.start_workflow(child).get_result()

    with SetWorkflowID(parent_id), SetWorkflowTimeout(TIMEOUT_S):
        handle = DBOS.start_workflow(parent)
    awaited_cancel(handle.get_result)
    awaited_cancel(DBOS.retrieve_workflow(child_id).get_result)

    assert status(sys_db_url, parent_id) == "CANCELLED"
    assert_cancelled(sys_db_url, child_id, trail)
    deadline = assert_deadline(sys_db_url, parent_id, int(TIMEOUT_S * 1000))
    assert column(sys_db_url, child_id, "workflow_deadline_epoch_ms") == deadline


def test_a_none_timeout_detaches_a_child_from_the_parent_deadline(
    launched: type[DBOS], sys_db_url: str
) -> None:
    trail = Trail()

    @DBOS.workflow()
    def child() -> Any:
        return DBOS.recv("go", timeout_seconds=NEVER_S)

    @DBOS.workflow()
    def parent() -> Any:
        with SetWorkflowTimeout(None):
            DBOS.start_workflow(child)  # detached-1
        try:
            return DBOS.recv("go", timeout_seconds=NEVER_S)
        except DBOSWorkflowCancelledError as exc:
            trail.seen.append(exc)
            raise

    with SetWorkflowID("detached"), SetWorkflowTimeout(1.0):
        handle = DBOS.start_workflow(parent)
    awaited_cancel(handle.get_result)
    assert_cancelled(sys_db_url, "detached", trail)

    # The parent's deadline has passed and the child is still running.
    assert column(sys_db_url, "detached-1", "workflow_deadline_epoch_ms") is None
    assert column(sys_db_url, "detached-1", "workflow_timeout_ms") is None
    assert status(sys_db_url, "detached-1") == "PENDING"
    DBOS.send("detached-1", "carry on", "go")
    box = settle(DBOS.retrieve_workflow("detached-1").get_result)
    assert box == {"result": "carry on"}
    assert status(sys_db_url, "detached-1") == "SUCCESS"


@pytest.mark.parametrize("seconds", [0, -1, -0.25])
def test_a_non_positive_timeout_is_refused(launched: type[DBOS], sys_db_url: str,
                                           seconds: float) -> None:
    @DBOS.workflow()
    def plain() -> str:
        return "ran"

    with pytest.raises(Exception):
        SetWorkflowTimeout(seconds)
    # Nothing of the refused timeout stays behind; positive and None are accepted.
    with SetWorkflowTimeout(None), SetWorkflowID("untimed"):
        assert plain() == "ran"
    assert column(sys_db_url, "untimed", "workflow_deadline_epoch_ms") is None
    SetWorkflowTimeout(0.001)


@pytest.mark.parametrize("offset_ms", [800, -1000], ids=["deadline-ahead", "deadline-past"])
def test_recovery_rearms_the_recorded_deadline(launched: type[DBOS], sys_db_url: str,
                                               offset_ms: int) -> None:
    trail = Trail()
    blocking = {"on": False}  # the first execution finishes; the recovered one waits

    @DBOS.step()
    def mark() -> str:
        trail.ran.append("mark")
        return "marked"

    @DBOS.workflow()
    def guarded() -> str:
        try:
            mark()
            if blocking["on"]:
                DBOS.recv("go", timeout_seconds=NEVER_S)
        except DBOSWorkflowCancelledError as exc:
            trail.seen.append(exc)
            raise
        return "done"

    with SetWorkflowID("rearmed"):
        assert guarded() == "done"
    assert trail.ran == ["mark"]
    trail.ran.clear()

    blocking["on"] = True
    deadline = int(time.time() * 1000) + offset_ms
    sys_sql(
        "UPDATE {status} SET status = 'PENDING', output = NULL, workflow_deadline_epoch_ms = ? "
        "WHERE workflow_uuid = ?",
        (deadline, "rearmed"),
    )
    handle = recover_one(engine(), "rearmed")
    awaited_cancel(handle.get_result)

    assert_cancelled(sys_db_url, "rearmed", trail)  # mark() replayed, not re-run
    assert column(sys_db_url, "rearmed", "workflow_deadline_epoch_ms") == deadline
    assert int(column(sys_db_url, "rearmed", "recovery_attempts")) == 2
