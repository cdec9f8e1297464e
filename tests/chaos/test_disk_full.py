"""The disk holding a SQLite system database fills in the middle of running
work, then frees: work under way pauses and resumes by itself, new work fails
with a DBOS exception saying the disk is full, nothing is lost and no
checkpointed step runs twice.

The disk is a small tmpfs mounted for the test (root only); a ballast file
fills it and is deleted to free it."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator, List, NamedTuple, Tuple

import pytest

from dbos import DBOS, DBOSConfig, Queue
from dbos.error import DBOSDiskFullError, DBOSException
from tests.chaos.support import OUTAGE_END, OUTAGE_WARNING, Records, dbos_log
from tests.integration.sysdb_sql import engine

pytestmark = pytest.mark.chaos
__all__ = ["dbos_log"]  # a fixture, imported for pytest

WORKFLOWS = 6
JOBS = 4  # on a queue of concurrency 2: two under way when the disk fills, two waiting for their claim
STEPS = 12
HELD_FROM = 2  # steps from this index on run once the disk is full
PAYLOAD = "x" * 16_384  # each step's output: the database must keep growing to hold them
DISK = "16m"


@pytest.fixture
def small_disk(backend: str, tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of ``DISK`` bytes, unmounted afterwards."""
    if backend != "sqlite":
        pytest.skip("fills the disk under a SQLite system database")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(path: Path) -> None:
    """Write ``path`` until the disk says it is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


class Flows(NamedTuple):
    long: Callable[[str], int]
    short: Callable[[str], str]
    queue: Queue


class Ledger:
    """What the step bodies did; the later steps wait until the disk is full."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.steps: Counter[Tuple[str, int]] = Counter()
        self.ran = threading.Semaphore(0)
        self.filled = threading.Event()


@pytest.fixture
def launched(small_disk: Path) -> Iterator[Tuple[Ledger, Flows]]:
    ledger = Ledger()
    DBOS(config=DBOSConfig(name="chaos-full", system_database_url=f"sqlite:///{small_disk}/system.sqlite"))

    @DBOS.step()
    def work(tag: str, index: int) -> str:
        with ledger.lock:
            ledger.steps[(tag, index)] += 1
        ledger.ran.release()
        if index >= HELD_FROM:
            assert ledger.filled.wait(timeout=60)
        return PAYLOAD

    @DBOS.workflow()
    def long_workflow(tag: str) -> int:
        return sum(len(work(tag, i)) for i in range(STEPS))

    @DBOS.workflow()
    def short_workflow(tag: str) -> str:
        return f"{tag}:{len(work(tag, 0))}"

    queue = Queue("chaos-full-jobs", concurrency=2, polling_interval_sec=0.1)
    DBOS.launch()
    engine().sysdb.backoff_cap = 0.5  # retry often, so that work resumes soon after space returns
    yield ledger, Flows(long_workflow, short_workflow, queue)
    DBOS.destroy(destroy_registry=True)


def test_a_full_disk_pauses_work_and_refuses_new_work(
    launched: Tuple[Ledger, Flows], small_disk: Path, dbos_log: Records
) -> None:
    ledger, flows = launched
    handles = [DBOS.start_workflow(flows.long, f"long-{i}") for i in range(WORKFLOWS)]
    handles += [flows.queue.enqueue(flows.long, f"job-{i}") for i in range(JOBS)]
    for _ in range((WORKFLOWS + 2) * (HELD_FROM + 1)):  # each workflow is in the step that waits for a full disk
        assert ledger.ran.acquire(timeout=30)
    ballast = small_disk / "ballast"
    fill(ballast)
    ledger.filled.set()
    assert dbos_log.began.wait(timeout=30)  # the workflows under way are pausing
    refused: List[DBOSException] = []
    for attempt in range(3):
        with pytest.raises(DBOSDiskFullError) as caught:
            flows.short(f"refused-{attempt}")
        refused.append(caught.value)
        with pytest.raises(DBOSDiskFullError) as caught:
            flows.queue.enqueue(flows.short, f"refused-job-{attempt}")
        refused.append(caught.value)
    paused = [h for h in handles if h.get_status().status == "PENDING"]  # a full disk still serves reads
    assert paused
    ballast.unlink()
    expected = STEPS * len(PAYLOAD)
    assert [h.get_result() for h in handles] == [expected] * (WORKFLOWS + JOBS)
    assert flows.short("after") == f"after:{len(PAYLOAD)}"  # new work goes through again
    for error in refused:
        assert "disk full" in str(error) and str(small_disk) in str(error)
        assert isinstance(error.__cause__, Exception) and not isinstance(error.__cause__, DBOSException)
    assert [DBOS.get_workflow_status(f"refused-{i}") for i in range(3)] == [None] * 3  # nothing was written
    assert set(ledger.steps.values()) == {1}  # no checkpointed step ran twice
    assert len(ledger.steps) == (WORKFLOWS + JOBS) * STEPS + 1
    statuses = [w.status for w in DBOS.list_workflows()]
    assert statuses == ["SUCCESS"] * (WORKFLOWS + JOBS + 1)
    assert dbos_log.ended.wait(timeout=30)
    assert len(dbos_log.saying(OUTAGE_WARNING)) == 1 and len(dbos_log.saying(OUTAGE_END)) == 1
    assert dbos_log.tracebacks() == []
