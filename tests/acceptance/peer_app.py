"""A durable app that the cross-process tests run as two or more real processes.

    python peer_app.py talk  SYS_URL POLL_SEC EXECUTOR OWN_ID PEER_ID lead|follow
    python peer_app.py block SYS_URL POLL_SEC EXECUTOR OWN_ID

``talk`` runs one side of a conversation between two workflows in two
processes: the leader sends "ping" and waits for the reply; the follower
replies, then waits for the leader's "ack" event; the leader waits for the
follower's "ready" event. Every wait is longer than the test's patience, so
each one must be woken by the other process's write.

``block`` starts a workflow that waits in ``recv`` for a message that never
comes, prints ``WAITING`` once the wait has registered for wake-ups (so a
cancellation from now on must wake it), and reports how the workflow ended
once another process cancels it.

Each process has its own executor ID, as separate machines would, so one
process's launch never recovers a workflow another is running.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Optional

from dbos import DBOS, DBOSConfig, SetWorkflowID
from dbos._engine.engine import peek_engine
from dbos._engine.waiters import Waiters
from dbos.error import DBOSAwaitedWorkflowCancelledError, DBOSWorkflowCancelledError
from dbos._sysdb.notifications import cancel_key

WAIT_S = 300.0  # far beyond the test's patience: only a wake-up ends these waits in time


@DBOS.workflow()
def talk(peer_id: str, lead: bool) -> str:
    if lead:
        DBOS.send(peer_id, "ping", topic="chat")
        reply = DBOS.recv("chat", timeout_seconds=WAIT_S)
        DBOS.set_event("ack", f"ack:{reply}")
        ready = DBOS.get_event(peer_id, "ready", timeout_seconds=WAIT_S)
        return f"{reply}|{ready}"
    message = DBOS.recv("chat", timeout_seconds=WAIT_S)
    DBOS.send(peer_id, f"{message}-pong", topic="chat")
    ack = DBOS.get_event(peer_id, "ack", timeout_seconds=WAIT_S)
    DBOS.set_event("ready", f"ready:{ack}")
    return f"{message}|{ack}"


class AnnouncingWaiters(Waiters):
    """The real waiter registry; prints WAITING when ``watched`` starts waiting."""

    def __init__(self, watched: str) -> None:
        super().__init__()
        self._key = cancel_key(watched)

    def register(self, key: str, event: Optional[threading.Event] = None) -> threading.Event:
        registered = super().register(key, event)
        if key == self._key:
            print("WAITING", flush=True)
        return registered


@DBOS.workflow()
def blocked() -> Any:
    try:
        return DBOS.recv("never", timeout_seconds=WAIT_S)
    except DBOSWorkflowCancelledError:
        print("BODY_CANCELLED", flush=True)
        raise


def launch(sys_url: str, poll_sec: float, executor: str) -> None:
    DBOS(config=DBOSConfig(
        name="peer-app",
        system_database_url=sys_url,
        application_version="v1",
        executor_id=executor,
        notification_listener_polling_interval_sec=poll_sec,
    ))
    DBOS.launch()
    engine = peek_engine()
    assert engine is not None
    # Whatever the other process writes from now on must reach this one.
    if engine.listener is not None and not engine.listener.ready.wait(30):
        raise SystemExit("the notification listener did not start")


def run_talk(own_id: str, peer_id: str, lead: bool) -> None:
    if lead:
        with SetWorkflowID(own_id):
            result = talk(peer_id, True)
    else:
        with SetWorkflowID(own_id):
            handle = DBOS.start_workflow(talk, peer_id, False)
        print("STARTED", flush=True)  # the row exists: the leader may send to it
        result = handle.get_result()
    print(f"RESULT {result}", flush=True)


def run_block(own_id: str) -> None:
    engine = peek_engine()
    assert engine is not None
    engine.waiters = AnnouncingWaiters(own_id)
    with SetWorkflowID(own_id):
        handle = DBOS.start_workflow(blocked)
    try:
        print(f"RESULT {handle.get_result()}", flush=True)
    except DBOSAwaitedWorkflowCancelledError:
        print("AWAITED_CANCELLED", flush=True)


if __name__ == "__main__":
    mode, sys_url, poll_sec, executor, own_id = sys.argv[1:6]
    launch(sys_url, float(poll_sec), executor)
    if mode == "talk":
        run_talk(own_id, sys.argv[6], sys.argv[7] == "lead")
    else:
        run_block(own_id)
    DBOS.destroy()
