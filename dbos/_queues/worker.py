"""Queue workers: one thread per queue per process, claiming and dispatching.

A worker polls its queue every ``polling_interval_sec``, and at once when a
workflow it dispatched finishes or this process enqueues onto it. It claims
only what its limits allow: the queue's worker concurrency, the process's
dispatch budget (so a backlog of 10,000 never means 10,000 threads), and in
the claim's transaction the queue's global concurrency and rate limit.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from .._engine.engine import Engine
from .._engine.recovery import function_for, launch_from_row, run_from_row
from .._engine.registry import get_registry
from .._engine.workflow import submit
from .._sysdb.notifications import queue_key
from .._sysdb.queues import CLAIMED_FIELDS
from .._sysdb.records import ClaimLimits
from .limits import Limits, QueueConfig
from .queue import INTERNAL, Queue, clear_intake, registered_queues, set_intake

logger = logging.getLogger("dbos")

Slot = Tuple[str, Optional[str]]  # (queue, partition key)


DISCOVERY_INTERVAL_S = 1.0


class QueueWorkers:
    """This process's queue workers, their shared dispatch budget, and a
    manager thread that starts workers for queues appearing after launch
    (registered in the database by any process, or declared in code)."""

    def __init__(self, engine: Engine, max_dispatch: int, listen: Optional[Set[str]] = None) -> None:
        self.engine = engine
        self.max_dispatch = max_dispatch
        self.listen = listen
        self._workers: Dict[str, "QueueWorker"] = {}
        self._lock = threading.RLock()
        self._running: Dict[Slot, int] = {}  # per partition key (None: the queue is not partitioned)
        self._per_queue: Dict[str, int] = {}
        self._total = 0
        # Queues whose worker found no room in the process's budget: woken
        # when room comes back, whichever queue's work gave it back.
        self._starved: Set[str] = set()
        self._claiming: Set[str] = set()  # queues whose worker is claiming now
        self._passed_over: Set[str] = set()  # claiming queues that turned an enqueue away meanwhile
        self._halt = threading.Event()
        self._manager = threading.Thread(target=self._discover, name="dbos-queue-manager", daemon=True)
        self._manager.start()

    def serve(self, queue: Queue) -> None:
        """Start a worker for ``queue`` unless one runs or this process ignores it."""
        if self.listen is not None and queue.name not in self.listen:
            return
        with self._lock:
            if self._halt.is_set() or queue.name in self._workers:
                return
            worker = QueueWorker(self, queue)
            self._workers[queue.name] = worker
        worker.start()

    def retire(self, worker: "QueueWorker") -> None:
        """A worker whose queue is gone stops; the queue may be served again later."""
        with self._lock:
            if self._workers.get(worker.queue.name) is worker:
                del self._workers[worker.queue.name]

    def worker(self, queue_name: str) -> Optional["QueueWorker"]:
        return self._workers.get(queue_name)

    def wake(self, queue_name: str) -> None:
        worker = self._workers.get(queue_name)
        if worker is not None:
            worker.wake.set()

    def admit(self, queue_name: str) -> Optional["Admitted"]:
        """A slot for a job enqueued here to start at once (see ``Intake.admit``)."""
        worker = self._workers.get(queue_name)
        limits = worker.fast_limits() if worker is not None else None
        if worker is None or limits is None or self.engine.intake_stopped:
            return None
        slot: Slot = (queue_name, None)
        if not self.reserve(slot, limits):
            worker.drained = False  # this job waits in the queue: the next ones queue behind it
            return None
        return Admitted(worker, slot)

    def stop(self) -> None:
        with self._lock:
            self._halt.set()
            workers = list(self._workers.values())
        for worker in workers:
            worker.halt.set()
            worker.wake.set()
        self._manager.join(timeout=10)
        for worker in workers:
            worker.join(timeout=10)

    def serve_known(self) -> None:
        """Serve each queue declared in code or registered in the database."""
        for queue in list(get_registry().queues.values()):
            if queue.name not in self._workers:
                self.serve(queue)
        for queue in registered_queues(self.engine):
            if queue.name not in self._workers:
                self.serve(queue)

    def _discover(self) -> None:
        while not self._halt.wait(DISCOVERY_INTERVAL_S):
            try:
                self.serve_known()
            except Exception:
                logger.warning("Looking for new queues failed", exc_info=True)

    # Budget accounting ------------------------------------------------

    def free(self, slot: Slot, limits: Limits) -> int:
        """How many more this process may start in ``slot`` under its own limits."""
        with self._lock:
            free = self.max_dispatch - self._total
            if limits.worker_concurrency is not None:
                free = min(free, limits.worker_concurrency - self._per_queue.get(slot[0], 0))
            if slot[1] is not None and limits.partition_worker_concurrency is not None:
                free = min(free, limits.partition_worker_concurrency - self._running.get(slot, 0))
            return free

    def running(self) -> int:
        """Workflows this process dispatched from its queues that have not ended."""
        with self._lock:
            return self._total

    def reserve(self, slot: Slot, limits: Limits) -> bool:
        """Count one more running in ``slot`` for a job enqueued here, unless
        the limits leave no room or the queue's worker is claiming: what it
        claims was counted against the room there was when it began."""
        with self._lock:
            if slot[0] in self._claiming:
                self._passed_over.add(slot[0])
                return False
            if self.free(slot, limits) <= 0:
                self._starved.add(slot[0])
                return False
            self.started(slot)
            return True

    def begin_claim(self, slot: Slot, limits: Limits) -> int:
        """The room a claim in ``slot`` may fill; jobs enqueued here wait until it ends."""
        with self._lock:
            budget = self.free(slot, limits)
            if budget <= 0:  # under the lock: room given back after this wakes the worker
                self._starved.add(slot[0])
            else:
                self._claiming.add(slot[0])
            return budget

    def end_claim(self, slot: Slot, claimed: int) -> bool:
        """Count what the claim took; whether an enqueue here was turned away
        meanwhile (its row, written after the claim picked, waits in the queue)."""
        with self._lock:
            for _ in range(claimed):
                self.started(slot)
            self._claiming.discard(slot[0])
            passed_over = slot[0] in self._passed_over
            self._passed_over.discard(slot[0])
            return passed_over

    def release(self, slot: Slot, count: int) -> None:
        """Uncount ``count`` that ended (or never started), and wake the queues waiting for room."""
        with self._lock:
            self._running[slot] -= count
            self._per_queue[slot[0]] -= count
            self._total -= count
            starved, self._starved = self._starved, set()
        for queue_name in starved:
            self.wake(queue_name)

    def has_room(self, queue_name: str, limits: Limits) -> bool:
        """Whether the queue may start more here; if not, its worker is woken when it may."""
        with self._lock:
            if self.free((queue_name, None), limits) > 0:
                return True
            self._starved.add(queue_name)
            return False

    def started(self, slot: Slot) -> None:
        with self._lock:
            self._running[slot] = self._running.get(slot, 0) + 1
            self._per_queue[slot[0]] = self._per_queue.get(slot[0], 0) + 1
            self._total += 1

    def ended(self, slot: Slot) -> None:
        """One dispatched from ``slot`` ended: its room may let a waiting job start.
        A drained queue has none waiting here, so its worker sleeps on: waking
        it for every job that ends would keep a claim in flight, which turns
        the next enqueues away from starting at once."""
        self.release(slot, 1)
        worker = self._workers.get(slot[0])
        if worker is not None and not worker.drained:
            worker.wake.set()


class QueueWorker(threading.Thread):
    def __init__(self, workers: QueueWorkers, queue: Queue) -> None:
        super().__init__(name=f"dbos-queue-{queue.name}", daemon=True)
        self.workers = workers
        self.queue = queue
        self.wake = threading.Event()
        self.halt = threading.Event()
        self.polls = 0  # polls completed, successful or not
        self.polled = threading.Condition()
        # Whether this worker's last claim found the queue empty (for this
        # executor) with room to spare; until it does again, jobs enqueued
        # here wait their turn in the queue rather than start at once.
        self.drained = False
        self._limits: Optional[Limits] = None  # as the last poll read them
        self._promoted_at = 0.0

    def fast_limits(self) -> Optional[Limits]:
        """The limits under which a job enqueued here may skip the queue, if it may:
        nothing waits before it, and every limit is this process's own."""
        limits = self._limits
        if (not self.drained or limits is None or self.halt.is_set() or self.queue.database_backed
                or limits.partitioned or limits.global_concurrency is not None or limits.limiter is not None):
            return None
        return limits

    def run(self) -> None:
        # Other processes' enqueues onto this queue wake it too (PostgreSQL's NOTIFY).
        waiters, key = self.workers.engine.waiters, queue_key(self.queue.name)
        waiters.register(key, self.wake)
        try:
            self._loop()
        finally:
            waiters.unregister(key, self.wake)
            self.workers.retire(self)

    def _loop(self) -> None:
        interval = 1.0
        while not self.halt.is_set():
            # Cleared before polling: a wake-up that arrives mid-poll is kept.
            self.wake.clear()
            try:
                config = self.queue.current_config()
                if config is None:
                    logger.info(f"Queue {self.queue.name} was deleted; its worker stops")
                    return
                interval = config.polling_interval_sec
                self.poll(config)
            except Exception:
                logger.warning(f"Polling queue {self.queue.name} failed", exc_info=True)
            with self.polled:
                self.polls += 1
                self.polled.notify_all()
            self.wake.wait(interval * random.uniform(0.95, 1.05))

    def wait_polls(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` more polls have completed (for observers and tests)."""
        with self.polled:
            target = self.polls + count
            return self.polled.wait_for(lambda: self.polls >= target, timeout)

    def poll(self, config: QueueConfig) -> None:
        """Claim and start what the limits, as the queue's configuration says now, allow."""
        sysdb = self.workers.engine.sysdb
        self._promote(sysdb, config.polling_interval_sec)
        limits = config.resolved()
        self._limits = limits
        keys: List[Optional[str]] = [None]
        if limits.partitioned:
            # In random order, so that no partition waits behind the others every time.
            keys = list(sysdb.queue_partitions(self.queue.name))
            random.shuffle(keys)
        for key in keys:
            if self.halt.is_set():
                return
            if not self.workers.has_room(self.queue.name, limits):
                self.drained = False
                return
            self._claim_and_run(limits, key)

    def _promote(self, sysdb: Any, interval: float) -> None:
        """DELAYED rows come due on the polling interval's clock: a poll woken
        by work arriving or ending, which may come every millisecond, skips it."""
        now = time.monotonic()
        if now - self._promoted_at >= interval * 0.9:
            self._promoted_at = now
            sysdb.promote_delayed(self.queue.name)

    def _claim_and_run(self, limits: Limits, key: Optional[str]) -> None:
        slot: Slot = (self.queue.name, key)
        budget = self.workers.begin_claim(slot, limits)
        if budget <= 0:
            self.drained = False
            return
        rows: List[Dict[str, Any]] = []
        try:
            rows = self._claim(limits, key, budget)
        finally:
            passed_over = self.workers.end_claim(slot, len(rows))
        self.drained = len(rows) < budget and not passed_over
        for row in rows:
            self.dispatch(slot, row)

    def _claim(self, limits: Limits, key: Optional[str], budget: int) -> List[Dict[str, Any]]:
        limiter, partition_limiter = limits.limiter, limits.partition_limiter
        claim = ClaimLimits(
            budget, limits.global_concurrency, limiter["limit"] if limiter else None,
            limiter["period"] if limiter else None, key, limits.partition_concurrency,
            partition_limiter["limit"] if partition_limiter else None,
            partition_limiter["period"] if partition_limiter else None)
        identity = self.workers.engine.identity
        return self.workers.engine.sysdb.claim_queued(self.queue.name, claim, identity.executor_id,
                                                      identity.app_version, identity.app_name)

    def dispatch(self, slot: Slot, row: Dict[str, Any]) -> None:
        """Run a claimed row in ``slot``, whose room was counted for it; a row
        that cannot run gives the room back."""
        engine, workflow_id = self.workers.engine, row["workflow_uuid"]
        try:
            info = function_for(engine, workflow_id, row)
            launch = launch_from_row(engine, info, workflow_id, row) if info is not None else None
            if info is None or launch is None:
                return self.workers.ended(slot)
            steps = engine.sysdb.load_steps(workflow_id) if row.get("has_steps") else {}
            run = run_from_row(info, workflow_id, row, steps)
        except Exception:
            logger.error(f"Could not start queued workflow {workflow_id}", exc_info=True)
            return self.workers.ended(slot)
        submit(engine, launch, run).add_done_callback(lambda _: self.workers.ended(slot))


class Admitted:
    """A slot reserved for one job enqueued in this process (``QueueWorkers.admit``)."""

    def __init__(self, worker: QueueWorker, slot: Slot) -> None:
        self.worker = worker
        self.slot = slot

    def start(self, row: Dict[str, Any]) -> None:
        claimed = {field: row.get(field) for field in CLAIMED_FIELDS}
        self.worker.dispatch(self.slot, claimed)

    def cancel(self) -> None:
        self.worker.workers.ended(self.slot)


def start_workers(engine: Engine, max_dispatch: int, listen: Optional[Set[str]] = None) -> QueueWorkers:
    """Serve this process's queues: the internal one, each declared in code,
    each registered in the database; until the engine stops its intake."""
    workers = QueueWorkers(engine, max_dispatch, listen)
    set_intake(workers)

    def stop() -> None:
        workers.stop()
        clear_intake(workers)

    engine.on_close.append(stop)
    workers.serve(INTERNAL)
    workers.serve_known()
    return workers
