"""The heartbeat of this executor, and the takeover of dead executors' work.

Every few seconds the heartbeat marks this executor alive in the system
database. With takeover on, it then looks for executors of the same
application and version silent past the limit, and claims each one's work
(one atomic step in storage, so of many live executors exactly one wins):
its queued workflows go back to their queues, where they stop holding
concurrency slots, and its other PENDING workflows are recovered here.
Executors of another version are left alone: their code may differ.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Optional, Tuple

from .._sysdb.outage import new_work
from .._sysdb.storage import Storage
from .engine import Engine
from .recovery import recover_pending

logger = logging.getLogger("dbos")

# A beat at most this often apart, and at least four beats within the limit,
# so one slow write never makes a live executor look dead.
MAX_BEAT_INTERVAL_SEC = 5.0
BEATS_PER_TIMEOUT = 4
CLAIM_TRIES = 3


def beat_interval(timeout_sec: float) -> float:
    """How long the heartbeat waits between beats, for an executor timeout."""
    return min(MAX_BEAT_INTERVAL_SEC, timeout_sec / BEATS_PER_TIMEOUT)


class Heartbeat(threading.Thread):
    """Beats until stopped; with ``takeover``, claims the work of silent executors."""

    def __init__(self, engine: Engine, timeout_sec: float, takeover: bool) -> None:
        super().__init__(name="dbos-heartbeat", daemon=True)
        self.engine = engine
        self.timeout_ms = int(timeout_sec * 1000)
        self.interval = beat_interval(timeout_sec)
        self.takeover = takeover
        self._stopping = threading.Event()
        self._failing = False

    def beat(self) -> bool:
        """Mark this executor alive; False if its row was missing."""
        identity = self.engine.identity
        return self.engine.sysdb.record_heartbeat(identity.executor_id, identity.app_version,
                                                  identity.app_name, socket.gethostname(), os.getpid())

    def stop_takeover(self) -> None:
        """Claim no more work (shutting down), but keep beating while the running work finishes."""
        self.takeover = False

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=10)

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self._tick()
            except Exception as exc:  # the database may be away: beat again later
                self._report(exc)
            else:
                self._report(None)

    def _tick(self) -> None:
        if not self.beat():
            logger.warning(
                f"Executor {self.engine.identity.executor_id} was silent past its "
                f"{self.timeout_ms / 1000:g} s limit and presumed dead; workflows it still runs "
                "may also be running where they were taken over")
        if self.takeover:
            self.take_over_silent()

    def take_over_silent(self) -> int:
        """Claim and resume the work of every silent executor this process wins; how many it won."""
        identity, sysdb = self.engine.identity, self.engine.sysdb
        won = 0
        for dead in sysdb.stale_executors(identity.executor_id, identity.app_version,
                                          identity.app_name, self.timeout_ms):
            if self._stopping.is_set():
                break
            moved = sysdb.take_over_executor(dead, identity.app_version, self.timeout_ms, identity.executor_id)
            if moved is None:
                continue  # another executor won, or it came back
            won += 1
            logger.warning(f"Executor {dead} was silent for over {self.timeout_ms / 1000:g} s: "
                           f"took over its work ({len(moved)} workflow(s) to recover here)")
            recover_pending(self.engine, moved)
        return won

    def _report(self, failure: Optional[Exception]) -> None:
        """One warning when beating starts to fail, one line when it works again."""
        if failure is not None and not self._failing:
            logger.warning(f"Executor heartbeat failed, retrying every {self.interval:g} s: {failure}")
        elif failure is None and self._failing:
            logger.info("Executor heartbeat recovered")
        self._failing = failure is not None


def start_heartbeat(engine: Engine, timeout_sec: float, takeover: bool) -> Heartbeat:
    """Mark this executor alive now, before it recovers its own work, and
    keep beating until stopped; takeovers end when the engine stops taking work."""
    heartbeat = Heartbeat(engine, timeout_sec, takeover)
    with new_work():  # a launch gives up on a database that is away, not waits forever
        heartbeat.beat()
    heartbeat.start()
    engine.on_close.append(heartbeat.stop_takeover)
    return heartbeat


def claim_executor_id(sysdb: Storage, executor_id: str, app_version: str, app_name: str,
                      timeout_sec: float) -> str:
    """The executor ID this launch runs under: the one configured, unless a
    live process holds it (DBOS Transact's #804: two processes sharing an ID
    recover each other's work in flight, and share one heartbeat, so neither
    is ever taken over); then a new ID derived from it, with a warning."""
    timeout_ms, me = int(timeout_sec * 1000), (socket.gethostname(), os.getpid())
    for _ in range(CLAIM_TRIES):
        holder = sysdb.executor_holder(executor_id, app_version, timeout_ms)
        if holder is not None and _alive_elsewhere(holder):
            break
        if sysdb.claim_executor_id(executor_id, app_version, app_name, *me, timeout_ms, holder):
            return executor_id
    derived = f"{executor_id}-{uuid.uuid4().hex[:12]}"
    logger.warning(
        f"Executor ID {executor_id!r} (version {app_version}) is in use by a live process; this one "
        f"runs as {derived!r}. Give each process its own executor ID (DBOS__VMID or executor_id) so a "
        "restart recovers its own work at once; until then, work left by this one is taken over "
        f"by a live executor of this version after {timeout_sec:g} s")
    return derived


def _alive_elsewhere(holder: Tuple[Optional[str], Optional[int]]) -> bool:
    """Whether the process that holds an executor ID may still be running, and is not this one.
    Another host's holder with a fresh heartbeat is presumed alive."""
    hostname, pid = holder
    if hostname != socket.gethostname() or pid is None:
        return True
    if pid == os.getpid():
        return False
    return _process_alive(pid)


def _process_alive(pid: int) -> bool:
    """Whether ``pid`` runs on this host; a zombie (killed, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True
