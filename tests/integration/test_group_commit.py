"""SQLite's group commit (``_sysdb/grouping.py``), with real files and real threads.

Checkpoints that threads write at the same moment share one transaction;
each thread still returns only once its own write is committed, and a write
that fails fails in its own thread alone, as it would have by itself. These
tests run on SQLite whatever ``--backend`` says: PostgreSQL does not group.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from contextlib import closing
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from dbos._sysdb import SystemDatabase
from dbos._sysdb.grouping import Group, Write
from dbos._sysdb.records import StepWrite
from dbos._sysdb.tries import retries
from dbos.error import DBOSSystemDatabaseError, DBOSWorkflowConflictIDError
from tests.migrated import copy_sqlite

THREADS = 16
STEPS_PER_THREAD = 20
WAIT_S = 30.0


@pytest.fixture
def sqlite_url(sqlite_template: str, tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'grouped.sqlite'}"
    copy_sqlite(sqlite_template, url)
    return url


@pytest.fixture
def store(sqlite_url: str) -> Iterator[SystemDatabase]:
    db = SystemDatabase(sqlite_url)
    yield db
    db.close()


def add_workflows(db: SystemDatabase, ids: List[str]) -> None:
    table = db.models.workflow_status
    for workflow_id in ids:
        db.run(lambda w=workflow_id: table.insert(workflow_uuid=w, status="PENDING",
                                                  created_at=1, updated_at=1).execute())


def step(workflow_id: str, function_id: int, output: str = '"out"') -> StepWrite:
    return StepWrite(workflow_id, function_id, "step", output=output)


def on_threads(work: List[Callable[[], Any]]) -> List[Tuple[str, Any]]:
    """Run each callable on its own thread, all released at once by a barrier;
    each comes back as ("ok", result) or ("error", exception)."""
    gate = threading.Barrier(len(work))
    outcomes: List[Tuple[str, Any]] = [("missing", None)] * len(work)

    def run(index: int) -> None:
        gate.wait()
        try:
            outcomes[index] = ("ok", work[index]())
        except BaseException as exc:  # DBOS's conflict errors are BaseExceptions, as in DBOS Transact
            outcomes[index] = ("error", exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
        assert not thread.is_alive(), "a grouped write never returned"
    return outcomes


class Hooks:
    """Which writes lead and which queue, as they happen (white box: wraps the group's steps)."""

    def __init__(self) -> None:
        self.leading = threading.Event()
        self.queued = threading.Semaphore(0)


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Hooks:
    seen = Hooks()
    park, commit = Write.park, Group._commit

    def parked(self: Write) -> None:
        park(self)
        seen.queued.release()

    def committing(self: Group, batch: List[Write]) -> None:
        seen.leading.set()
        commit(self, batch)

    monkeypatch.setattr(Write, "park", parked)
    monkeypatch.setattr(Group, "_commit", committing)
    return seen


def in_one_batch(store: SystemDatabase, sqlite_url: str, hooks: Hooks,
                 work: List[Callable[[], Any]]) -> List[Tuple[str, Any]]:
    """Run ``work`` as one batch: a write of its own leads first, alone, held
    up by another connection's write lock until all of ``work`` has queued."""
    add_workflows(store, ["blocker"])
    lock = sqlite3.connect(sqlite_url[len("sqlite:///"):], isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN IMMEDIATE")
    blocker = threading.Thread(target=lambda: store.record_step(step("blocker", 1)))
    blocker.start()
    assert hooks.leading.wait(WAIT_S), "the first write did not lead"
    box: Dict[str, List[Tuple[str, Any]]] = {}
    runner = threading.Thread(target=lambda: box.update(out=on_threads(work)))
    runner.start()
    for _ in work:
        assert hooks.queued.acquire(timeout=WAIT_S), "the writes did not queue behind the leader"
    lock.execute("ROLLBACK")
    lock.close()
    for thread in (blocker, runner):
        thread.join(WAIT_S)
    return box["out"]


def test_many_threads_checkpointing_at_once_all_commit_and_read_back(store: SystemDatabase) -> None:
    ids = [f"wf-{n}" for n in range(THREADS)]
    add_workflows(store, ids)
    before = store.group_commit_counts()

    def checkpoints(workflow_id: str) -> Callable[[], List[str]]:
        return lambda: [store.record_step(step(workflow_id, f)) for f in range(1, STEPS_PER_THREAD + 1)]

    outcomes = on_threads([checkpoints(w) for w in ids])
    assert outcomes == [("ok", ["PENDING"] * STEPS_PER_THREAD)] * THREADS
    for workflow_id in ids:
        assert sorted(store.load_steps(workflow_id)) == list(range(1, STEPS_PER_THREAD + 1))
    writes, commits = (after - first for after, first in zip(store.group_commit_counts(), before))
    assert writes == THREADS * STEPS_PER_THREAD
    assert commits < writes, "a burst of checkpoints from many threads should share commits"


def test_writes_queued_behind_a_leader_commit_in_one_batch(
    store: SystemDatabase, sqlite_url: str, hooks: Hooks
) -> None:
    ids = [f"wf-{n}" for n in range(8)]
    add_workflows(store, ids)
    before = store.group_commit_counts()
    outcomes = in_one_batch(store, sqlite_url, hooks, [lambda w=w: store.record_step(step(w, 1)) for w in ids])
    assert outcomes == [("ok", "PENDING")] * len(ids)
    after = store.group_commit_counts()
    assert (after[0] - before[0], after[1] - before[1]) == (len(ids) + 1, 2)  # the blocker alone, then the rest
    assert all(store.load_steps(w)[1].output == '"out"' for w in ids)


def test_a_duplicate_function_id_fails_only_its_own_thread(
    store: SystemDatabase, sqlite_url: str, hooks: Hooks
) -> None:
    ids = [f"wf-{n}" for n in range(6)]
    add_workflows(store, ids + ["alone"])
    store.record_step(step("alone", 1))
    with pytest.raises(DBOSWorkflowConflictIDError) as by_itself:
        store.record_step(step("alone", 1, output='"second"'))
    work = [lambda w=w: store.record_step(step(w, 1)) for w in ids]
    work.append(lambda: store.record_step(step(ids[0], 1, output='"second"')))
    outcomes = in_one_batch(store, sqlite_url, hooks, work)
    # Of the two writes of wf-0's step 1, whichever came second in the batch
    # fails, as it would have by itself; every other write commits.
    first, second = outcomes[0], outcomes[-1]
    assert sorted([first[0], second[0]]) == ["error", "ok"]
    error = first[1] if first[0] == "error" else second[1]
    assert type(error) is type(by_itself.value)
    assert str(error) == str(by_itself.value).replace("alone", ids[0])
    assert outcomes[1:-1] == [("ok", "PENDING")] * (len(ids) - 1)
    kept = '"out"' if first[0] == "ok" else '"second"'
    assert store.load_steps(ids[0])[1].output == kept
    assert all(store.load_steps(w)[1].output == '"out"' for w in ids[1:])


def test_a_failing_statement_rolls_back_alone_with_the_error_it_raises_by_itself(
    store: SystemDatabase, sqlite_url: str, hooks: Hooks
) -> None:
    ids = [f"wf-{n}" for n in range(6)]
    add_workflows(store, ids)
    with pytest.raises(DBOSSystemDatabaseError) as by_itself:
        store.record_step(step("no-such-workflow", 1))  # a foreign key its row lacks
    work = [lambda w=w: store.record_step(step(w, 1)) for w in ids]
    work.insert(3, lambda: store.record_step(step("no-such-workflow", 1)))
    outcomes = in_one_batch(store, sqlite_url, hooks, work)
    kind, error = outcomes[3]
    assert kind == "error" and type(error) is type(by_itself.value) and str(error) == str(by_itself.value)
    assert type(error.__cause__) is type(by_itself.value.__cause__)
    assert [k for i, (k, _) in enumerate(outcomes) if i != 3] == ["ok"] * len(ids)
    assert store.load_steps("no-such-workflow") == {}
    assert all(1 in store.load_steps(w) for w in ids)


def test_a_batch_lost_to_an_outage_runs_each_write_by_itself(
    store: SystemDatabase, sqlite_url: str, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"wf-{n}" for n in range(5)]
    add_workflows(store, ids)
    # The batch's one try is lost (an outage), and none of it was committed;
    # the blocker's lone write, which leads first, goes through.
    once = type(store).once

    def losing_batches(self: SystemDatabase, work: Callable[[], None], *, transaction: bool = True) -> bool:
        return False if transaction else once(self, work, transaction=False)

    monkeypatch.setattr(type(store), "once", losing_batches)

    def checkpoint(workflow_id: str) -> Callable[[], Tuple[str, int]]:
        def write() -> Tuple[str, int]:
            before = retries()
            return store.record_step(step(workflow_id, 1)), retries() - before
        return write

    outcomes = in_one_batch(store, sqlite_url, hooks, [checkpoint(w) for w in ids])
    # Each ran its own write after the lost try, counting it as a repeat of its own.
    assert outcomes == [("ok", ("PENDING", 1))] * len(ids)
    assert all(1 in store.load_steps(w) for w in ids)


def test_a_follower_interrupted_as_it_waits_leaves_the_group_working(
    store: SystemDatabase, sqlite_url: str, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"wf-{n}" for n in range(4)]
    add_workflows(store, ids)
    sleep = Write.sleep
    interrupted = threading.Event()

    def interrupted_once(self: Write[Any]) -> None:
        if self.params[0] == ids[1] and not interrupted.is_set():
            interrupted.set()
            raise KeyboardInterrupt  # as Ctrl-C raises it in the main thread's wait
        sleep(self)

    monkeypatch.setattr(Write, "sleep", interrupted_once)
    outcomes = in_one_batch(store, sqlite_url, hooks, [lambda w=w: store.record_step(step(w, 1)) for w in ids])
    assert outcomes[1][0] == "error" and isinstance(outcomes[1][1], KeyboardInterrupt)
    assert [outcomes[i] for i in (0, 2, 3)] == [("ok", "PENDING")] * 3
    assert store.load_steps(ids[1]) == {}  # withdrawn before any leader took it
    assert store.record_step(step(ids[1], 1)) == "PENDING"  # and the group still has a leader to come


CHILD = textwrap.dedent(
    """
    import sys, threading
    from dbos._sysdb import SystemDatabase
    from dbos._sysdb.records import StepWrite

    url, threads = sys.argv[1], int(sys.argv[2])
    db = SystemDatabase(url)
    lock = threading.Lock()

    def checkpoint(n):
        workflow_id = f"wf-{n}"
        for function_id in range(1, 100000):
            db.record_step(StepWrite(workflow_id, function_id, "step", output='"out"'))
            with lock:  # said only once the write returned: committed
                print(workflow_id, function_id, flush=True)

    for n in range(threads):
        threading.Thread(target=checkpoint, args=(n,)).start()
    """
)


def test_every_checkpoint_a_thread_saw_committed_survives_sigkill(store: SystemDatabase, sqlite_url: str) -> None:
    ids = [f"wf-{n}" for n in range(8)]
    add_workflows(store, ids)
    child = subprocess.Popen([sys.executable, "-c", CHILD, sqlite_url, str(len(ids))],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    seen: List[Tuple[str, int]] = []
    for line in child.stdout:
        workflow_id, function_id = line.split()
        seen.append((workflow_id, int(function_id)))
        if len(seen) >= 400:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with closing(sqlite3.connect(sqlite_url[len("sqlite:///"):])) as conn:
        stored = set(conn.execute("SELECT workflow_uuid, function_id FROM operation_outputs"))
    assert set(seen) <= stored
