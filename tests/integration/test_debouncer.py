"""The debouncer (``Debouncer``, ``DebouncerClient``) on the backend chosen with ``--backend``.

Each run of the debounced workflow is counted by the workflow itself, so a
burst that ran twice shows as a count of two; before asserting that nothing
more ran, a test waits for the queue's worker to complete two more polls.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any, Dict, Iterator, List

import pytest

from dbos import DBOS, DBOSClient, DBOSConfig, Queue, SetEnqueueOptions, SetWorkflowID
from dbos._ops.debouncer_client import DebouncerClient
from dbos._queues.debouncer import Debouncer
from dbos._queues.queue import INTERNAL_QUEUE, current_intake
from dbos.error import DBOSException, DBOSInvalidArgumentError, DBOSQueueDeduplicatedError
from tests.integration.sysdb_sql import count_rows, recover, status_row, sys_sql, wait_for_launch_recovery
from tests.threads import result

WAIT_S = 30.0
QUEUE = "debounced"


class Runs:
    """The arguments of each run of the debounced workflow, by key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: List[Any] = []

    def add(self, value: Any) -> None:
        with self.lock:
            self.seen.append(value)

    def count(self) -> Counter[Any]:
        with self.lock:
            return Counter(v[0] if isinstance(v, tuple) else v for v in self.seen)


def wait_polls(queue_name: str = QUEUE, count: int = 2) -> None:
    intake = current_intake()
    assert intake is not None
    worker = intake.worker(queue_name)  # type: ignore[attr-defined]
    assert worker is not None and worker.wait_polls(count, WAIT_S)


@pytest.fixture
def app(config: DBOSConfig) -> Iterator[Dict[str, Any]]:
    runs = Runs()
    Queue(QUEUE, polling_interval_sec=0.05)

    @DBOS.workflow(name="summarise")
    def summarise(key: str, value: Any) -> Any:
        runs.add((key, value))
        return value

    @DBOS.workflow(name="async_summarise")
    async def async_summarise(key: str, value: Any) -> Any:
        runs.add((key, value))
        return value

    @DBOS.workflow(name="caller")
    def caller(key: str) -> List[str]:
        debouncer = Debouncer.create(summarise, queue=QUEUE)
        first = debouncer.debounce(key, 0.5, key, "first").workflow_id
        second = debouncer.debounce(key, 0.5, key, "second").workflow_id
        return [first, second]

    DBOS(config=config)
    DBOS.launch()
    wait_for_launch_recovery()
    yield {"summarise": summarise, "async_summarise": async_summarise, "caller": caller, "runs": runs}


def test_fifty_calls_in_two_seconds_run_once_with_the_last_arguments(app: Dict[str, Any]) -> None:
    debouncer = Debouncer.create(app["summarise"], queue=QUEUE)
    ids = set()
    for i in range(50):
        ids.add(debouncer.debounce("burst", 1.5, "burst", i).workflow_id)
        time.sleep(0.04)  # pacing the burst over two seconds, not waiting for anything
    assert len(ids) == 1, "every call of the burst went to the one workflow"
    workflow_id = ids.pop()
    assert result(DBOS.retrieve_workflow(workflow_id)) == 49
    wait_polls()
    assert app["runs"].count()["burst"] == 1
    row = status_row(workflow_id)
    assert row["is_debounced"] and row["deduplication_id"] is None and row["status"] == "SUCCESS"


def test_the_timeout_caps_the_total_delay(app: Dict[str, Any]) -> None:
    debouncer = Debouncer.create(app["summarise"], queue=QUEUE, debounce_timeout_sec=1.0)
    started = time.monotonic()
    handle = debouncer.debounce("capped", 60, "capped", 0)
    row = status_row(handle.workflow_id)
    assert row["debounce_deadline_epoch_ms"] - row["created_at"] == 1000
    assert row["delay_until_epoch_ms"] == row["debounce_deadline_epoch_ms"]
    later = debouncer.debounce("capped", 60, "capped", 1)  # a bounce never goes past the deadline
    assert later.workflow_id == handle.workflow_id
    assert status_row(handle.workflow_id)["delay_until_epoch_ms"] == row["debounce_deadline_epoch_ms"]
    assert result(handle) == 1
    assert time.monotonic() - started < 20, "the 60 s period was not capped by the 1 s timeout"


def test_concurrent_callers_of_one_key_share_one_workflow(app: Dict[str, Any]) -> None:
    """Callers racing for a free key: one enqueues, every other bounces that one."""
    debouncer = Debouncer.create(app["summarise"], queue=QUEUE)
    ids: List[str] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def call(worker: int) -> None:
        start.wait(WAIT_S)
        for i in range(5):
            workflow_id = debouncer.debounce("race", 1.5, "race", (worker, i)).workflow_id
            with lock:
                ids.append(workflow_id)

    threads = [threading.Thread(target=call, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert len(ids) == 30 and len(set(ids)) == 1
    assert result(DBOS.retrieve_workflow(ids[0]))[1] == 4  # some caller's last call
    wait_polls()
    assert app["runs"].count()["race"] == 1 and count_rows("status") == 1


def test_a_new_cycle_starts_after_the_workflow_runs(app: Dict[str, Any]) -> None:
    debouncer = Debouncer.create(app["summarise"], queue=QUEUE)
    first = debouncer.debounce("cycle", 0.2, "cycle", "a")
    assert result(first) == "a"
    second = debouncer.debounce("cycle", 0.2, "cycle", "b")
    assert second.workflow_id != first.workflow_id
    assert result(second) == "b"
    other_key = debouncer.debounce("other", 0.2, "other", "c")
    assert other_key.workflow_id not in (first.workflow_id, second.workflow_id)
    assert result(other_key) == "c"
    assert app["runs"].count() == Counter({"cycle": 2, "other": 1})


def test_the_default_queue_is_the_internal_one_and_set_workflow_id_names_a_fresh_workflow(
        app: Dict[str, Any]) -> None:
    debouncer = Debouncer.create(app["summarise"])
    with SetWorkflowID("chosen"):
        handle = debouncer.debounce("named", 0.2, "named", 1)
    with SetWorkflowID("ignored"):
        bounced = debouncer.debounce("named", 0.2, "named", 2)
    assert handle.workflow_id == bounced.workflow_id == "chosen"
    assert status_row("chosen")["queue_name"] == INTERNAL_QUEUE
    assert result(handle) == 2
    assert count_rows("status") == 1


def test_async_debounce(app: Dict[str, Any]) -> None:
    debouncer = Debouncer.create_async(app["async_summarise"], queue=QUEUE)

    async def burst() -> Any:
        handles = [await debouncer.debounce_async("async", 0.5, "async", i) for i in range(5)]
        assert len({h.workflow_id for h in handles}) == 1
        return await handles[-1].get_result()

    assert asyncio.run(burst()) == 4
    assert app["runs"].count()["async"] == 1


def test_inside_a_workflow_the_bounce_is_a_step_and_replays(app: Dict[str, Any]) -> None:
    with SetWorkflowID("parent"):
        first, second = app["caller"]("inner")
    assert first == second
    names = [s["function_name"] for s in DBOS.list_workflow_steps("parent")]
    assert names == ["DBOS.debounce_delayed_workflow", "summarise", "DBOS.debounce_delayed_workflow"]
    assert result(DBOS.retrieve_workflow(first)) == "second"
    assert recover("parent") == [first, second]  # replayed from the checkpoints: nothing new
    assert count_rows("status") == 2 and app["runs"].count()["inner"] == 1


def test_a_key_held_by_a_workflow_that_is_not_debounced_is_refused(app: Dict[str, Any]) -> None:
    queue = current_queue()
    with SetEnqueueOptions(deduplication_id="summarise-held", delay_seconds=3600):
        holder = queue.enqueue(app["summarise"], "held", 0)
    debouncer = Debouncer.create(app["summarise"], queue=QUEUE)
    with pytest.raises(DBOSQueueDeduplicatedError) as caught:
        debouncer.debounce("held", 0.1, "held", 1)
    assert caught.value.workflow_id == holder.workflow_id
    assert count_rows("status") == 1


def current_queue() -> Queue:
    from dbos._engine.registry import get_registry
    queue = get_registry().queues[QUEUE]
    assert isinstance(queue, Queue)
    return queue


@pytest.mark.parametrize("options", [
    {"deduplication_id": "mine"}, {"priority": 3}, {"delay_seconds": 5.0},
])
def test_options_a_debounce_owns_are_refused(app: Dict[str, Any], options: Dict[str, Any]) -> None:
    debouncer = Debouncer.create(app["summarise"], queue=QUEUE)
    with SetEnqueueOptions(**options), pytest.raises(DBOSException, match=next(iter(options))):
        debouncer.debounce("refused", 0.1, "refused", 0)
    assert count_rows("status") == 0


def test_bad_arguments_are_refused(app: Dict[str, Any]) -> None:
    debouncer = Debouncer.create(app["summarise"], queue=QUEUE)
    with pytest.raises(DBOSInvalidArgumentError, match="debounce_period_sec -1"):
        debouncer.debounce("k", -1, "k", 0)
    with pytest.raises(DBOSInvalidArgumentError, match="debounce_key 7"):
        debouncer.debounce(7, 1, "k", 0)  # type: ignore[arg-type]
    with pytest.raises(DBOSInvalidArgumentError, match="debounce_timeout_sec 0"):
        Debouncer.create(app["summarise"], debounce_timeout_sec=0)
    assert count_rows("status") == 0
    held = debouncer.debounce("k", 3600, "k", "kept")
    with pytest.raises(DBOSException, match="argument 2"):
        debouncer.debounce("k", 1, "k", threading.Lock())  # cannot be stored: the held one is untouched
    status = DBOS.get_workflow_status(held.workflow_id)
    assert count_rows("status") == 1 and status is not None and status.input is not None
    assert status.input["args"][1] == "kept"

    @DBOS.dbos_class()
    class Owner:
        @DBOS.workflow()
        @classmethod
        def method(cls) -> None:
            pass

    with pytest.raises(TypeError, match="not"):
        Debouncer.create(Owner.method)


def test_no_loop_across_application_versions(app: Dict[str, Any]) -> None:
    """DBOS Transact's issue #702: a workflow left by an older version never holds a key for good."""
    debouncer = Debouncer.create(app["summarise"], queue=QUEUE)
    # A debounced workflow enqueued by an older version is bounced: it takes this
    # version, whose code made its new arguments, and runs here.
    old = debouncer.debounce("v", 3600, "v", "old")
    sys_sql("UPDATE {status} SET application_version = 'old-version' WHERE workflow_uuid = ?", (old.workflow_id,))
    bounced = debouncer.debounce("v", 0.1, "v", "new")
    assert bounced.workflow_id == old.workflow_id
    assert status_row(old.workflow_id)["application_version"] == DBOS.application_version
    assert result(bounced) == "new"
    # One that falls due unbounced frees its key even though no executor here
    # may run it: the next call starts a new workflow at once.
    stale = debouncer.debounce("w", 3600, "w", "stale")
    sys_sql("UPDATE {status} SET application_version = 'old-version', delay_until_epoch_ms = 0 "
            "WHERE workflow_uuid = ?", (stale.workflow_id,))
    # A poll woken by work ending soon after the last promotion skips the
    # promotion (worker.py's ``_promote``): count polls until one promotes.
    deadline = time.monotonic() + WAIT_S
    while status_row(stale.workflow_id)["status"] == "DELAYED" and time.monotonic() < deadline:
        wait_polls(count=1)
    row = status_row(stale.workflow_id)
    assert (row["status"], row["deduplication_id"]) == ("ENQUEUED", None)
    fresh = debouncer.debounce("w", 0.1, "w", "fresh")
    assert fresh.workflow_id != stale.workflow_id
    assert result(fresh) == "fresh"


def test_debouncer_client(app: Dict[str, Any], sys_db_url: str) -> None:
    client = DBOSClient(system_database_url=sys_db_url)
    try:
        debouncer = DebouncerClient(client, {"workflow_name": "summarise", "queue_name": QUEUE})
        handles = [debouncer.debounce("client", 0.5, "client", i) for i in range(10)]
        assert len({h.workflow_id for h in handles}) == 1
        assert handles[-1].get_result(polling_interval_sec=0.05) == 9
        assert app["runs"].count()["client"] == 1

        async def again() -> Any:
            handle = await debouncer.debounce_async("client", 0.1, "client", "async")
            return handle.workflow_id, await handle.get_result(polling_interval_sec=0.05)

        workflow_id, value = asyncio.run(again())
        assert workflow_id != handles[0].workflow_id and value == "async"
        refusing = DebouncerClient(client, {"workflow_name": "summarise", "queue_name": QUEUE, "priority": 2})
        with pytest.raises(DBOSException, match="priority"):
            refusing.debounce("client", 0.1, "client", 0)
        assert count_rows("status") == 2
    finally:
        client.destroy()
