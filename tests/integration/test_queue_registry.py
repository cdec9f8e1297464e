"""Queues kept in the database, their setters and partition limits, deduplication
policies and enqueueing by name, on the backend chosen with ``--backend``.

The helpers (``Gauge``, ``Gates``, ``launch``, ``wait_polls``) are those of
``test_queues.py``: jobs report how many run at once, wait at gates the test
opens, and a test waits for a worker's polls before asserting that nothing
more started.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from dbos import DBOS, DBOSClient, Queue, SetEnqueueOptions, SetWorkflowID, SetWorkflowTimeout
from dbos.error import DBOSException, DBOSInvalidArgumentError, DBOSQueueDeduplicatedError
from tests.integration.sysdb_sql import recover, status_row, sys_sql
from tests.integration.test_queues import POLL_S, Gates, Gauge, engine, gates, launch, wait_polls
from tests.threads import result

__all__ = ["gates", "launch"]  # fixtures, used by name


def queue_rows() -> List[Dict[str, Any]]:
    rows = engine().sysdb.list_queues()
    return [{k: v for k, v in row.items() if k not in ("created_at", "updated_at")} for row in rows]


def row(name: str) -> Dict[str, Any]:
    found = engine().sysdb.get_queue(name)
    assert found is not None, f"queue {name} is not registered"
    return found


@pytest.fixture
def client(sys_db_url: str) -> Iterator[DBOSClient]:
    made = DBOSClient(system_database_url=sys_db_url, application_name="test-app")
    yield made
    made.destroy()


# ----------------------------------------------------------------------
# Registering, retrieving, listing, deleting
# ----------------------------------------------------------------------


BAD_REGISTRATIONS: List[Tuple[Dict[str, Any], str]] = [
    ({"concurrency": 2, "global_concurrency": 2}, "concurrency"),
    ({"partition_queue": True, "partition_concurrency": 1}, "partition_queue"),
    ({"partition_queue": True, "global_concurrency": 3}, "global_concurrency"),
    ({"partition_concurrency": 0}, "partition_concurrency"),
    ({"partition_worker_concurrency": -1}, "partition_worker_concurrency"),
    ({"limiter": {"limit": 3}}, "limiter"),
    ({"partition_limiter": {"period": 1.0}}, "partition_limiter"),
    ({"global_concurrency": 2, "worker_concurrency": 3}, "worker_concurrency"),
    ({"partition_concurrency": 1, "partition_worker_concurrency": 2}, "partition_worker_concurrency"),
    ({"worker_concurrency": 1, "partition_concurrency": 4, "partition_worker_concurrency": 2},
     "partition_worker_concurrency"),
    ({"global_concurrency": 2, "partition_concurrency": 3}, "partition_concurrency"),
    ({"polling_interval_sec": 0}, "polling_interval_sec"),
    ({"polling_interval_sec": -1.5}, "polling_interval_sec"),
    ({"worker_concurrency": "3"}, "worker_concurrency"),
    ({"global_concurrency": 2.5}, "global_concurrency"),
    ({"priority_enabled": "yes"}, "priority_enabled"),
    ({"on_conflict": "sometimes"}, "on_conflict"),
]


def test_bad_registrations_raise_naming_the_argument_and_write_nothing(launch: Callable[..., None]) -> None:
    launch()
    DBOS.register_queue("kept", global_concurrency=2, polling_interval_sec=POLL_S)
    before = queue_rows()
    for settings, argument in BAD_REGISTRATIONS:
        for name in ("fresh", "kept"):
            with pytest.raises(DBOSInvalidArgumentError, match=argument) as caught:
                DBOS.register_queue(name, **{"on_conflict": "always_update", **settings})
            assert isinstance(caught.value, ValueError) and caught.value.argument == argument
        if argument != "on_conflict":
            with pytest.raises(ValueError, match=argument):
                Queue(f"in-code-{argument}", **settings)
    with pytest.raises(DBOSInvalidArgumentError, match="name"):
        DBOS.register_queue("")
    assert queue_rows() == before


def test_register_reads_back_and_on_conflict_decides_whether_to_update(
    launch: Callable[..., None], caplog: pytest.LogCaptureFixture,
) -> None:
    launch()
    with caplog.at_level(logging.INFO, logger="dbos"):
        queue = DBOS.register_queue("modes", global_concurrency=4, worker_concurrency=2,
                                    limiter={"limit": 5, "period": 2.0}, polling_interval_sec=POLL_S)
    assert "Registered new queue modes" in caplog.text
    assert queue.database_backed_queue and queue.name == "modes"
    assert (queue.global_concurrency, queue.concurrency, queue.worker_concurrency) == (4, 4, 2)
    assert queue.limiter == {"limit": 5, "period": 2.0} and queue.application_name == "test-app"
    assert (queue.partition_queue, queue.partition_concurrency, queue.polling_interval_sec) == (False, None, POLL_S)

    assert DBOS.register_queue("modes", global_concurrency=6).global_concurrency == 6  # latest version
    DBOS.register_queue("modes", global_concurrency=7, on_conflict="never_update")
    assert row("modes")["concurrency"] == 6
    DBOS.register_queue("modes", global_concurrency=8, on_conflict="always_update")
    assert row("modes")["concurrency"] == 8

    # Another version became the latest: this one no longer overwrites by default.
    engine().sysdb.register_application_version("a-newer-version", "test-app")
    time.sleep(0.002)
    engine().sysdb.set_latest_application_version("a-newer-version")
    assert DBOS.register_queue("modes", global_concurrency=9).global_concurrency == 8
    assert DBOS.register_queue("modes", global_concurrency=9, on_conflict="always_update").global_concurrency == 9

    # A queue of another application is theirs, whatever the mode.
    engine().sysdb.save_queue({"name": "theirs", "concurrency": 1, "polling_interval_sec": 1.0}, False,
                              "other-app")
    before = queue_rows()
    for mode in ("update_if_latest_version", "always_update", "never_update"):
        with pytest.raises(DBOSException, match="other-app"):
            DBOS.register_queue("theirs", global_concurrency=3, on_conflict=mode)
    assert queue_rows() == before


def test_retrieve_list_and_delete_with_async_twins(launch: Callable[..., None]) -> None:
    launch()
    DBOS.register_queue("mine-a", polling_interval_sec=POLL_S)
    DBOS.register_queue("mine-b", worker_concurrency=1, polling_interval_sec=POLL_S)
    sysdb = engine().sysdb
    sysdb.save_queue({"name": "other", "polling_interval_sec": 1.0}, False, "other-app")
    sysdb.save_queue({"name": "unclaimed", "polling_interval_sec": 1.0}, False, None)

    assert [q.name for q in DBOS.list_queues()] == ["mine-a", "mine-b", "unclaimed"]
    assert [q.name for q in DBOS.list_queues(application_name="other-app")] == ["other", "unclaimed"]
    assert [q.name for q in DBOS.list_queues(application_name=["other-app", "test-app"])] == [
        "mine-a", "mine-b", "other", "unclaimed"]
    found = DBOS.retrieve_queue("mine-b")
    assert found is not None and found.worker_concurrency == 1 and DBOS.retrieve_queue("nope") is None

    async def twins() -> None:
        queue = await DBOS.register_queue_async("async-q", global_concurrency=3, polling_interval_sec=POLL_S)
        assert await queue.get_global_concurrency_async() == 3
        assert [q.name for q in await DBOS.list_queues_async()] == ["async-q", "mine-a", "mine-b", "unclaimed"]
        again = await DBOS.retrieve_queue_async("async-q")
        assert again is not None and await again.get_polling_interval_sec_async() == POLL_S
        await DBOS.delete_queue_async("async-q")
        assert await DBOS.retrieve_queue_async("async-q") is None

    asyncio.run(twins())
    DBOS.delete_queue("mine-a")
    DBOS.delete_queue("mine-a")  # gone already: nothing happens
    assert [q.name for q in DBOS.list_queues()] == ["mine-b", "unclaimed"]
    with pytest.raises(DBOSException, match="mine-a"):
        found = Queue("mine-a", database_backed_queue=True)
        found.set_global_concurrency(3)


# ----------------------------------------------------------------------
# Queues declared in code, and setters
# ----------------------------------------------------------------------


def test_queue_in_code_takes_the_new_limits_and_refuses_setters(launch: Callable[..., None]) -> None:
    parted = Queue("in-code-parted", global_concurrency=10, worker_concurrency=4, partition_concurrency=2,
                   partition_worker_concurrency=1, partition_limiter={"limit": 3, "period": 1.0})
    legacy = Queue("in-code-legacy", partition_queue=True, concurrency=1)
    plain = Queue("in-code-plain", concurrency=5)
    assert (parted.global_concurrency, parted.worker_concurrency, parted.partition_concurrency) == (10, 4, 2)
    assert parted.partition_queue and parted.partition_worker_concurrency == 1
    assert parted.partition_limiter == {"limit": 3, "period": 1.0} and not parted.database_backed_queue
    # The deprecated mode: concurrency applies to each partition.
    assert (legacy.concurrency, legacy.global_concurrency, legacy.partition_concurrency) == (1, None, 1)
    assert legacy.partition_queue and (plain.concurrency, plain.global_concurrency) == (5, 5)
    launch()
    for setter, value in (("set_global_concurrency", 3), ("set_worker_concurrency", 1),
                          ("set_polling_interval_sec", 0.5), ("set_partition_queue", True)):
        with pytest.raises(DBOSException, match="declared in code"):
            getattr(plain, setter)(value)
    assert plain.concurrency == 5


def test_setters_change_the_row_after_checking_it(launch: Callable[..., None]) -> None:
    launch()
    queue = DBOS.register_queue("settable", global_concurrency=4, worker_concurrency=2, polling_interval_sec=POLL_S)
    queue.set_global_concurrency(6)
    queue.set_worker_concurrency(3)
    queue.set_limiter({"limit": 10, "period": 2.5})
    queue.set_polling_interval_sec(0.2)
    queue.set_priority_enabled(True)
    assert (row("settable")["concurrency"], row("settable")["worker_concurrency"]) == (6, 3)
    assert (row("settable")["rate_limit_max"], row("settable")["rate_limit_period_sec"]) == (10, 2.5)
    assert row("settable")["polling_interval_sec"] == 0.2 and queue.priority_enabled
    # A partition limit partitions the queue; clearing the last one un-partitions it.
    queue.set_partition_concurrency(2)
    assert queue.partition_queue and row("settable")["partition_concurrency"] == 2
    queue.set_partition_worker_concurrency(1)
    queue.set_partition_limiter({"limit": 4, "period": 1.0})
    assert queue.partition_limiter == {"limit": 4, "period": 1.0}
    with pytest.raises(DBOSException, match="partition_\\* limits"):
        queue.set_partition_queue(False)
    for setter in ("set_partition_concurrency", "set_partition_worker_concurrency", "set_partition_limiter"):
        getattr(queue, setter)(None)
    assert not queue.partition_queue
    queue.set_concurrency(None)
    assert queue.global_concurrency is None

    bad = [("set_global_concurrency", 2, "global_concurrency"),  # below worker_concurrency 3
           ("set_worker_concurrency", 0, "worker_concurrency"), ("set_limiter", {"limit": 1}, "limiter"),
           ("set_polling_interval_sec", 0, "polling_interval_sec"), ("set_priority_enabled", 1, "priority_enabled"),
           ("set_partition_concurrency", "2", "partition_concurrency")]
    queue.set_global_concurrency(5)
    before = queue_rows()
    for setter, value, argument in bad:
        with pytest.raises(DBOSInvalidArgumentError, match=argument):
            getattr(queue, setter)(value)
    assert queue_rows() == before
    queue.set_partition_concurrency(2)
    before = queue_rows()
    with pytest.raises(DBOSInvalidArgumentError, match="partition_worker_concurrency"):
        queue.set_partition_worker_concurrency(3)  # above partition_concurrency 2
    with pytest.raises(DBOSInvalidArgumentError, match="partition_concurrency"):
        queue.set_partition_concurrency(6)  # above global_concurrency 5
    assert queue_rows() == before

    # The deprecated partition_queue mode scopes every limit per key: queue-wide setters refuse.
    legacy = DBOS.register_queue("legacy", partition_queue=True, concurrency=1, polling_interval_sec=POLL_S)
    for setter, value in (("set_global_concurrency", 1), ("set_worker_concurrency", 1),
                          ("set_limiter", {"limit": 1, "period": 1.0}), ("set_partition_concurrency", 1)):
        with pytest.raises(DBOSException, match="partition_queue"):
            getattr(legacy, setter)(value)
    legacy.set_concurrency(2)
    assert legacy.partition_concurrency == 2 and legacy.global_concurrency is None


def test_async_setters_and_getters(launch: Callable[..., None]) -> None:
    launch()
    queue = DBOS.register_queue("async-settable", polling_interval_sec=POLL_S)

    async def go() -> None:
        await queue.set_global_concurrency_async(5)
        await queue.set_worker_concurrency_async(2)
        await queue.set_partition_concurrency_async(3)
        await queue.set_partition_worker_concurrency_async(1)
        await queue.set_partition_limiter_async({"limit": 2, "period": 1.0})
        await queue.set_limiter_async({"limit": 9, "period": 3.0})
        await queue.set_polling_interval_sec_async(0.25)
        await queue.set_priority_enabled_async(True)
        assert await queue.get_global_concurrency_async() == 5
        assert await queue.get_concurrency_async() == 5
        assert await queue.get_worker_concurrency_async() == 2
        assert await queue.get_partition_concurrency_async() == 3
        assert await queue.get_partition_worker_concurrency_async() == 1
        assert await queue.get_partition_limiter_async() == {"limit": 2, "period": 1.0}
        assert await queue.get_limiter_async() == {"limit": 9, "period": 3.0}
        assert await queue.get_polling_interval_sec_async() == 0.25
        assert await queue.get_priority_enabled_async() is True
        assert await queue.get_partition_queue_async() is True
        with pytest.raises(DBOSInvalidArgumentError):
            await queue.set_global_concurrency_async(0)
        await queue.set_partition_limiter_async(None)
        await queue.set_partition_worker_concurrency_async(None)
        await queue.set_partition_concurrency_async(None)
        await queue.set_concurrency_async(None)
        await queue.set_partition_queue_async(True)
        assert await queue.get_partition_queue_async() is True

    asyncio.run(go())


# ----------------------------------------------------------------------
# Limits that change while workers run
# ----------------------------------------------------------------------


def test_global_concurrency_changed_while_running_applies_within_one_poll(
    launch: Callable[..., None], gates: Gates, client: DBOSClient,
) -> None:
    gauge = Gauge()

    @DBOS.workflow()
    def held(i: int) -> int:
        with gauge.inside(str(i)):
            gates.pass_()
        return i

    launch()
    queue = DBOS.register_queue("resized", global_concurrency=1, polling_interval_sec=POLL_S)
    handles = [queue.enqueue(held, i) for i in range(8)]
    gauge.wait(lambda: gauge.total == 1, "one job runs")
    wait_polls("resized")
    assert gauge.total == 1

    # Registered again with a new limit: the next poll starts one more.
    DBOS.register_queue("resized", global_concurrency=2, polling_interval_sec=POLL_S)
    wait_polls("resized", 2)  # one whole poll began after the change
    gauge.wait(lambda: gauge.total == 2, "two jobs run")
    assert gauge.total_peak == 2

    # Raised by a setter: the very next poll starts one more, and no more than that.
    queue.set_global_concurrency(3)
    wait_polls("resized", 2)
    gauge.wait(lambda: gauge.total == 3, "three jobs run")
    assert gauge.total_peak == 3

    # Raised through a client: the same.
    client_queue = client.retrieve_queue("resized")
    assert client_queue is not None
    client_queue.set_global_concurrency(5)
    wait_polls("resized", 2)
    gauge.wait(lambda: gauge.total == 5, "five jobs run")
    wait_polls("resized")
    assert gauge.total == 5 and gauge.total_peak == 5

    # Lowered: nothing new starts until the running ones fall under the limit.
    client.register_queue("resized", global_concurrency=2, polling_interval_sec=POLL_S)
    wait_polls("resized", 2)
    gates.open()
    assert sorted(result(h) for h in handles) == list(range(8))
    assert gauge.total_peak == 5


def test_partition_limits_apply_per_key_and_queue_wide_limits_across_keys(
    launch: Callable[..., None], gates: Gates,
) -> None:
    gauge = Gauge()

    @DBOS.workflow()
    def part_job(key: str, n: int) -> str:
        with gauge.inside(f"{key}{n}", key):
            gates.pass_(f"{key}{n}")
        return f"{key}{n}"

    launch()
    queue = DBOS.register_queue("per-key", partition_concurrency=2, partition_worker_concurrency=1,
                                global_concurrency=3, polling_interval_sec=POLL_S)
    handles = []
    for n in range(3):
        for key in ("a", "b", "c", "d"):
            with SetEnqueueOptions(queue_partition_key=key):
                handles.append(queue.enqueue(part_job, key, n))
    # One per key in this process (partition_worker_concurrency), three in all (global_concurrency).
    gauge.wait(lambda: gauge.total == 3, "three jobs run")
    wait_polls("per-key")
    assert gauge.total == 3 and max(gauge.peak.values()) == 1

    queue.set_global_concurrency(None)
    gauge.wait(lambda: gauge.total == 4, "one job of each key runs")
    wait_polls("per-key")
    assert gauge.total == 4 and max(gauge.peak.values()) == 1
    queue.set_partition_worker_concurrency(None)  # now partition_concurrency 2 bounds each key
    gauge.wait(lambda: gauge.total == 8, "two jobs of each key run")
    wait_polls("per-key")
    assert gauge.total == 8 and max(gauge.peak.values()) == 2
    gates.open_all()
    assert len({result(h) for h in handles}) == 12
    with pytest.raises(DBOSException, match="Deduplication"):
        with SetEnqueueOptions(queue_partition_key="a", deduplication_id="x"):
            queue.enqueue(part_job, "a", 99)


def test_partition_limiter_limits_starts_per_key(launch: Callable[..., None]) -> None:
    starts: Dict[str, List[float]] = {"a": [], "b": []}
    started = threading.Condition()

    @DBOS.workflow()
    def limited(key: str) -> None:
        with started:
            starts[key].append(time.monotonic())
            started.notify_all()

    launch()
    queue = DBOS.register_queue("key-rate", partition_limiter={"limit": 2, "period": 60.0},
                                polling_interval_sec=POLL_S)
    handles = []
    for key in ("a", "b"):
        for _ in range(4):
            with SetEnqueueOptions(queue_partition_key=key):
                handles.append(queue.enqueue(limited, key))
    # Jobs enqueued in the same millisecond may start in either order, so
    # wait for any two of each key rather than the first two enqueued.
    with started:
        assert started.wait_for(lambda: min(len(v) for v in starts.values()) >= 2, timeout=30)
    wait_polls("key-rate", 3)
    assert (len(starts["a"]), len(starts["b"])) == (2, 2)
    queue.set_partition_limiter(None)
    for h in handles:
        result(h)
    assert (len(starts["a"]), len(starts["b"])) == (4, 4)


# ----------------------------------------------------------------------
# Deduplication policies
# ----------------------------------------------------------------------


def test_return_existing_hands_back_the_holder(launch: Callable[..., None], gates: Gates,
                                               client: DBOSClient) -> None:
    @DBOS.workflow()
    def dedup_job(x: int) -> int:
        gates.pass_()
        return x

    @DBOS.workflow()
    def parent() -> str:
        with SetEnqueueOptions(deduplication_id="held", duplication_policy="return-existing"):
            return queue.enqueue(dedup_job, 3).workflow_id

    queue = Queue("dedup-q", polling_interval_sec=POLL_S)
    launch()
    with SetEnqueueOptions(deduplication_id="held"):
        first = queue.enqueue(dedup_job, 1)
    with SetEnqueueOptions(deduplication_id="held"), pytest.raises(DBOSQueueDeduplicatedError):
        queue.enqueue(dedup_job, 2)
    with SetEnqueueOptions(deduplication_id="held", duplication_policy="reject"), \
            pytest.raises(DBOSQueueDeduplicatedError):
        queue.enqueue(dedup_job, 2)
    with SetEnqueueOptions(deduplication_id="held", duplication_policy="return-existing"):
        again = queue.enqueue(dedup_job, 2)
    assert again.workflow_id == first.workflow_id
    by_client = client.enqueue({"workflow_name": dedup_job.__qualname__, "queue_name": "dedup-q",
                                "deduplication_id": "held", "duplication_policy": "return-existing"}, 4)
    assert by_client.workflow_id == first.workflow_id

    # In a workflow: the holder is recorded as its child, and a replay returns it again.
    with SetWorkflowID("dedup-parent"):
        assert result(DBOS.start_workflow(parent)) == first.workflow_id
    steps = DBOS.list_workflow_steps("dedup-parent")
    assert [s["child_workflow_id"] for s in steps] == [first.workflow_id]

    async def enqueue_async() -> str:
        with SetEnqueueOptions(deduplication_id="held", duplication_policy="return-existing"):
            return (await queue.enqueue_async(dedup_job, 5)).workflow_id

    assert asyncio.run(enqueue_async()) == first.workflow_id
    gates.open()
    assert result(first) == 1
    # Released on completion: the next one with the ID is new.
    with SetEnqueueOptions(deduplication_id="held", duplication_policy="return-existing"):
        fresh = queue.enqueue(dedup_job, 6)
    assert fresh.workflow_id != first.workflow_id and result(fresh) == 6

    with pytest.raises(DBOSException, match="deduplication_id"):
        SetEnqueueOptions(duplication_policy="return-existing")
    with pytest.raises(DBOSInvalidArgumentError, match="duplication_policy"):
        SetEnqueueOptions(deduplication_id="x", duplication_policy="keep-both")  # type: ignore[arg-type]
    with pytest.raises(DBOSException, match="deduplication_id"):
        client.enqueue({"workflow_name": "w", "queue_name": "dedup-q", "duplication_policy": "return-existing"})


def test_a_refused_enqueue_in_a_workflow_is_refused_again_on_replay(launch: Callable[..., None],
                                                                    gates: Gates) -> None:
    @DBOS.workflow()
    def held_job() -> None:
        gates.pass_()

    @DBOS.workflow()
    def parent() -> str:
        try:
            with SetEnqueueOptions(deduplication_id="held"):
                queue.enqueue(held_job)
        except DBOSQueueDeduplicatedError:
            pass
        try:
            DBOS.enqueue_workflow_with_options({"workflow_name": held_job.__qualname__, "queue_name": "refusing",
                                                "deduplication_id": "held"})
        except DBOSQueueDeduplicatedError:
            return "refused"
        return "enqueued"

    queue = Queue("refusing", polling_interval_sec=POLL_S)
    launch()
    with SetEnqueueOptions(deduplication_id="held"):
        holder = queue.enqueue(held_job)
    with SetWorkflowID("refused-parent"):
        assert parent() == "refused"
    steps = DBOS.list_workflow_steps("refused-parent")
    assert [(s["child_workflow_id"], type(s["error"])) for s in steps] == [(None, DBOSQueueDeduplicatedError)] * 2
    gates.open()
    assert result(holder) is None
    # The ID is free now, yet a replay sees what the first execution saw.
    assert recover("refused-parent") == "refused"
    assert len(DBOS.list_workflows(queue_name="refusing")) == 1


def test_a_queue_runs_its_own_applications_and_unclaimed_workflows_only(launch: Callable[..., None],
                                                                        sys_db_url: str) -> None:
    @DBOS.workflow()
    def owned_job(tag: str) -> str:
        return tag

    Queue("shared-name", polling_interval_sec=POLL_S)
    launch()
    clients = {name: DBOSClient(system_database_url=sys_db_url, application_name=name)
               for name in ("test-app", "other-app")}
    anonymous = DBOSClient(system_database_url=sys_db_url)
    try:
        options = {"workflow_name": owned_job.__qualname__, "queue_name": "shared-name"}
        theirs = clients["other-app"].enqueue(options, "theirs")  # type: ignore[arg-type]
        mine = clients["test-app"].enqueue(options, "mine")  # type: ignore[arg-type]
        unclaimed = anonymous.enqueue(options, "unclaimed")  # type: ignore[arg-type]
        assert (result(mine), result(unclaimed)) == ("mine", "unclaimed")
        wait_polls("shared-name")
        assert status_row(theirs.workflow_id)["status"] == "ENQUEUED"  # another application's queue of that name
        assert status_row(unclaimed.workflow_id)["application_name"] == "test-app"  # claimed by the runner
    finally:
        for made in (*clients.values(), anonymous):
            made.destroy()


# ----------------------------------------------------------------------
# Enqueueing by queue name and by workflow name
# ----------------------------------------------------------------------


def test_enqueue_workflow_by_queue_name_and_its_async_twin(launch: Callable[..., None]) -> None:
    @DBOS.workflow()
    def triple(x: int) -> int:
        return 3 * x

    launch()
    DBOS.register_queue("named", polling_interval_sec=POLL_S)
    assert result(DBOS.enqueue_workflow("named", triple, 2)) == 6

    async def go() -> int:
        handle = await DBOS.enqueue_workflow_async("named", triple, 5)
        return int(await handle.get_result())

    assert asyncio.run(go()) == 15
    waiting = DBOS.enqueue_workflow("not-yet", triple, 7)
    assert status_row(waiting.workflow_id)["status"] == "ENQUEUED"
    DBOS.register_queue("not-yet", polling_interval_sec=POLL_S)
    assert result(waiting) == 21


def test_enqueue_with_options_by_workflow_name(launch: Callable[..., None]) -> None:
    @DBOS.workflow(name="by-name")
    def by_name(x: int, suffix: str = "") -> str:
        return f"{x}{suffix}"

    @DBOS.workflow()
    def enqueuer() -> str:
        handle = DBOS.enqueue_workflow_with_options({"workflow_name": "by-name", "queue_name": "opts"}, 4)
        return handle.workflow_id

    launch()
    DBOS.register_queue("opts", polling_interval_sec=POLL_S)
    handle = DBOS.enqueue_workflow_with_options({"workflow_name": "by-name", "queue_name": "opts"}, 1,
                                                suffix="!")
    assert result(handle) == "1!"
    # Unset options come from the context.
    with SetWorkflowID("chosen-id"), SetWorkflowTimeout(30), SetEnqueueOptions(priority=7):
        chosen = DBOS.enqueue_workflow_with_options({"workflow_name": "by-name", "queue_name": "opts"}, 2)
    assert chosen.workflow_id == "chosen-id" and result(chosen) == "2"
    stored = status_row("chosen-id")
    assert (stored["priority"], stored["workflow_timeout_ms"], stored["application_name"]) == (7, 30000, "test-app")
    # The options win over the context.
    with SetEnqueueOptions(priority=7):
        explicit = DBOS.enqueue_workflow_with_options(
            {"workflow_name": "by-name", "queue_name": "opts", "priority": 2, "workflow_id": "explicit"}, 3)
    assert result(explicit) == "3" and status_row("explicit")["priority"] == 2

    # In a workflow: a child, recorded once; the replay returns the same child.
    with SetWorkflowID("enqueuer-1"):
        child_id = result(DBOS.start_workflow(enqueuer))
    assert status_row(child_id)["parent_workflow_id"] == "enqueuer-1"
    steps = DBOS.list_workflow_steps("enqueuer-1")
    assert [(s["function_name"], s["child_workflow_id"]) for s in steps] == [("by-name", child_id)]
    assert recover("enqueuer-1") == child_id
    count = sys_sql("SELECT COUNT(*) FROM {status} WHERE parent_workflow_id = ?", ("enqueuer-1",))
    assert count == [(1,)]

    async def go() -> Any:
        handle = await DBOS.enqueue_workflow_with_options_async(
            {"workflow_name": "by-name", "queue_name": "opts"}, 9, suffix="?")
        return await handle.get_result()

    assert asyncio.run(go()) == "9?"
    with pytest.raises(DBOSException, match="workflow_name"):
        DBOS.enqueue_workflow_with_options({"queue_name": "opts"})
    with pytest.raises(DBOSException, match="priority"):
        DBOS.enqueue_workflow_with_options({"workflow_name": "by-name", "queue_name": "opts", "priority": 0})


# ----------------------------------------------------------------------
# The client's queues
# ----------------------------------------------------------------------


def test_client_registers_and_changes_queues_but_cannot_enqueue_on_them(
    launch: Callable[..., None], client: DBOSClient,
) -> None:
    @DBOS.workflow()
    def client_job(x: int) -> int:
        return x + 1

    launch()
    queue = client.register_queue("from-client", global_concurrency=2, polling_interval_sec=POLL_S)
    assert queue.global_concurrency == 2 and queue.application_name == "test-app"
    assert client.register_queue("from-client", global_concurrency=3).global_concurrency == 3  # always_update
    client.register_queue("from-client", global_concurrency=4, on_conflict="never_update")
    assert row("from-client")["concurrency"] == 3
    before = queue_rows()
    with pytest.raises(DBOSException, match="update_if_latest_version"):
        client.register_queue("from-client", on_conflict="update_if_latest_version")
    with pytest.raises(DBOSInvalidArgumentError, match="worker_concurrency"):
        client.register_queue("from-client", global_concurrency=1, worker_concurrency=2)
    assert queue_rows() == before
    queue.set_worker_concurrency(2)
    assert DBOS.retrieve_queue("from-client") is not None and row("from-client")["worker_concurrency"] == 2
    with pytest.raises(DBOSException, match="DBOSClient.enqueue"):
        queue.enqueue(client_job, 1)
    handle = client.enqueue({"workflow_name": client_job.__qualname__, "queue_name": "from-client"}, 1)
    assert handle.get_result() == 2

    client.register_queue("elsewhere", application_name="other-app")
    assert [q.name for q in client.list_queues()] == ["from-client"]
    assert [q.name for q in client.list_queues(application_name="other-app")] == ["elsewhere"]
    assert client.retrieve_queue("nope") is None
    client.delete_queue("elsewhere")
    assert DBOS.list_queues(application_name="other-app") == []

    async def twins() -> None:
        made = await client.register_queue_async("client-async", worker_concurrency=1)
        assert await made.get_worker_concurrency_async() == 1
        assert [q.name for q in await client.list_queues_async()] == ["client-async", "from-client"]
        assert await client.retrieve_queue_async("client-async") is not None
        await client.delete_queue_async("client-async")
        assert await client.retrieve_queue_async("client-async") is None

    asyncio.run(twins())
