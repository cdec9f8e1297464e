"""Wake-ups between processes: SQLite's doorbell (and PostgreSQL's LISTEN).

Both processes poll every 60 s, and every wait gives up long before that:
only a wake-up from the other process lets these tests pass.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import textwrap
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

import pytest

from dbos import DBOS, DBOSConfig
from dbos._sysdb.doorbell import Doorbell, directory_for, listen_on

NEVER_S = 60.0  # the polling interval: longer than any wait below
WAIT_S = 20.0
ROUNDS = 5

PEER_APP = textwrap.dedent(
    """
    import sys
    from dbos import DBOS, DBOSConfig, SetWorkflowID

    @DBOS.workflow()
    def waiter(rounds: int) -> None:
        for i in range(rounds):
            DBOS.set_event(f"got{i}", DBOS.recv("ping", timeout_seconds=30))

    url, workflow_id, poll, rounds = sys.argv[1:5]
    DBOS(config=DBOSConfig(name="doorbell-peer", system_database_url=url,
                           notification_listener_polling_interval_sec=float(poll)))
    DBOS.launch()
    with SetWorkflowID(workflow_id):
        handle = DBOS.start_workflow(waiter, int(rounds))
    print("READY", flush=True)
    handle.get_result()
    DBOS.destroy()
    """
)


@pytest.fixture
def polling_rarely(sys_db_url: str) -> Iterator[type[DBOS]]:
    DBOS(config=DBOSConfig(name="doorbell-test", system_database_url=sys_db_url,
                           notification_listener_polling_interval_sec=NEVER_S))
    DBOS.launch()
    yield DBOS
    DBOS.destroy(destroy_registry=True)


def _start_peer(tmp_path: Path, url: str, workflow_id: str, poll: float, rounds: int) -> "subprocess.Popen[str]":
    """A second process whose workflow, each round, waits for a message and
    then sets an event; returns once the workflow has started."""
    script = tmp_path / "doorbell_peer.py"
    script.write_text(PEER_APP)
    peer = subprocess.Popen([sys.executable, str(script), url, workflow_id, str(poll), str(rounds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert peer.stdout is not None
    line = peer.stdout.readline()
    if line.strip() != "READY":
        peer.kill()
        raise AssertionError(f"the peer did not start: {peer.communicate()[1]}")
    return peer


def _finish(peer: "subprocess.Popen[str]") -> None:
    _, errors = peer.communicate(timeout=60)
    assert peer.returncode == 0, errors


def test_send_wakes_recv_and_set_event_wakes_get_event_in_another_process(
        polling_rarely: type[DBOS], sys_db_url: str, tmp_path: Path) -> None:
    workflow_id = f"doorbell-{uuid.uuid4().hex[:8]}"
    # Several rounds, so that each side is (almost always) already waiting
    # when the other writes, and polling alone would stall a round.
    peer = _start_peer(tmp_path, sys_db_url, workflow_id, NEVER_S, ROUNDS)
    got = []
    try:
        for i in range(ROUNDS):
            DBOS.send(workflow_id, f"hello {i}", "ping")
            got.append(DBOS.get_event(workflow_id, f"got{i}", timeout_seconds=WAIT_S))
    finally:
        _finish(peer)
    assert got == [f"hello {i}" for i in range(ROUNDS)]


def test_a_lost_wakeup_still_delivers_by_polling(
        backend: str, polling_rarely: type[DBOS], sys_db_url: str, tmp_path: Path) -> None:
    if backend != "sqlite":
        pytest.skip("the doorbell is SQLite's")
    workflow_id = f"doorbell-lost-{uuid.uuid4().hex[:8]}"
    peer = _start_peer(tmp_path, sys_db_url, workflow_id, 0.2, 1)
    # The peer's socket goes, so the send's datagram cannot reach it; its recv
    # polls every 0.2 s. (This process still hears the peer's event.)
    directory = directory_for(sys_db_url[len("sqlite:///"):])
    removed = _remove_other_sockets(directory)
    try:
        assert removed, "the peer had a socket to remove"
        DBOS.send(workflow_id, "by polling", "ping")
        got = DBOS.get_event(workflow_id, "got0", timeout_seconds=WAIT_S)
    finally:
        _finish(peer)
    assert got == "by polling"


def _remove_other_sockets(directory: str) -> List[str]:
    mine = f"{os.getpid()}-"
    others = [n for n in os.listdir(directory) if n.endswith(".sock") and not n.startswith(mine)]
    for name in others:
        os.unlink(os.path.join(directory, name))
    return others


@contextmanager
def _collecting(doorbell: Doorbell) -> "Iterator[queue.Queue[str]]":
    """A listener on ``doorbell`` that queues the keys it hears."""
    keys: "queue.Queue[str]" = queue.Queue()
    listener = listen_on(doorbell, keys.put)
    assert listener is not None
    try:
        yield keys
    finally:
        listener.stop()


def test_a_dead_peers_socket_is_unlinked_and_live_ones_hear(tmp_path: Path) -> None:
    directory = directory_for(str(tmp_path / "db.sqlite"))
    os.makedirs(directory)
    dead = os.path.join(directory, "1-dead.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as gone:
        gone.bind(dead)  # closed without unlinking, as a killed process leaves it
    with _collecting(Doorbell(directory)) as keys:
        Doorbell(directory).ring(["evt::a::b", "msg::c::d"])
        assert not os.path.exists(dead)
        assert [keys.get(timeout=WAIT_S), keys.get(timeout=WAIT_S)] == ["evt::a::b", "msg::c::d"]


def test_a_socket_in_a_directory_too_long_for_a_socket_path_still_hears(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    doorbell = Doorbell(directory_for(str(deep / "db.sqlite")))
    assert len(doorbell.directory) > 108
    with _collecting(doorbell) as keys:
        Doorbell(doorbell.directory).ring(["evt::far::away"])
        assert keys.get(timeout=WAIT_S) == "evt::far::away"


def test_no_channel_where_the_directory_cannot_be_made(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    assert listen_on(Doorbell(directory_for(str(not_a_dir / "db.sqlite"))), lambda key: None) is None


def test_use_listen_notify_false_binds_no_socket(backend: str, sys_db_url: str) -> None:
    if backend != "sqlite":
        pytest.skip("the doorbell is SQLite's")
    DBOS(config=DBOSConfig(name="doorbell-off", system_database_url=sys_db_url, use_listen_notify=False))
    DBOS.launch()
    try:
        directory = directory_for(sys_db_url[len("sqlite:///"):])
        assert not os.path.exists(directory) or not os.listdir(directory)
    finally:
        DBOS.destroy(destroy_registry=True)
