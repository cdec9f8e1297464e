"""Wake-ups between processes sharing one SQLite file, with no server.

Each listening process binds a Unix-domain datagram socket in a directory
beside the database file (``<file>.dbos-notify/<pid>-<random>.sock``). After
committing a write others may wait for, a writer sends the keys it notified
(``notifications.py``; one datagram, one key a line) to every socket there,
and each listener's thread hands them to its waiters, as the PostgreSQL
listener does. A datagram is only a hint to read the database again: a lost
one (a full receive queue, a peer not yet known) costs a waiter its polling
interval, never a result, so waiters keep polling at the configured interval.

A socket left by a dead process refuses datagrams; the first sender to meet
it unlinks it. Where Unix sockets are missing (Windows) or the directory
cannot be created (a read-only one), there is no channel and waiters poll.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
import time
import uuid
from typing import Callable, List, Optional, Sequence, Set

from .notifications import LISTENING

logger = logging.getLogger("dbos")

SUFFIX = ".dbos-notify"
# A sender lists the directory again when its modification time changes (one
# stat per ring, no listing), and at least this often.
REFRESH_S = 1.0
# File systems stamp times from a coarse clock (a few ms): a socket added in
# the tick of a listing leaves the time unchanged, so a listing that recent
# is not trusted until the tick is over.
SAME_TICK_NS = 50_000_000
# sun_path holds 108 bytes; longer directories are reached through a descriptor.
MAX_PATH = 100
# A datagram this big would be refused; receivers re-read everything instead.
MAX_PAYLOAD = 4096
_DEAD = (errno.ECONNREFUSED, errno.ENOTSOCK)
_FULL = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS)


def directory_for(database_file: str) -> str:
    return os.path.abspath(database_file) + SUFFIX


class Doorbell:
    """Sends keys to every socket in one directory; cheap for the writer.

    The peer list is cached, and listed again when the directory changes;
    while the directory is missing (nobody listens) a ring costs one stat."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._base = directory  # what socket paths are built on (see ``reach``)
        self._dir_fd: Optional[int] = None
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)
        self._peers: List[str] = []
        self._listed_at = -REFRESH_S
        self._seen = -1  # the directory's mtime (ns) the cached list reflects
        self.own: Optional[str] = None  # this process's socket, never rung
        self._owed: Set[str] = set()  # peers whose queue was full: owed a "look at everything"
        self._lock = threading.Lock()

    def reach(self) -> None:
        """Make the directory's sockets addressable: a path too long for
        sun_path goes through a descriptor of the directory, opened anew
        each time (the directory may have been removed and made again)."""
        if len(self.directory) + 48 <= MAX_PATH:
            return
        old, self._dir_fd = self._dir_fd, os.open(self.directory, os.O_RDONLY)
        self._base = f"/proc/self/fd/{self._dir_fd}"
        if old is not None:
            os.close(old)
        if not os.path.isdir(self._base):
            raise OSError(f"cannot address sockets in {self.directory!r}: its path is too long")

    def path(self, name: str) -> str:
        return f"{self._base}/{name}"

    def ring(self, keys: Sequence[str]) -> None:
        payload = "\n".join(dict.fromkeys(keys)).encode()
        if len(payload) > MAX_PAYLOAD:
            payload = LISTENING.encode()
        for name in self._current_peers():
            if name != self.own:
                self._ring_one(name, payload)

    def _current_peers(self) -> List[str]:
        try:
            changed = os.stat(self.directory).st_mtime_ns
        except OSError:
            return []  # no directory: nobody listens
        if changed != self._seen or time.monotonic() - self._listed_at >= REFRESH_S:
            with self._lock:
                self._relist(changed)
        return self._peers

    def _relist(self, changed: int) -> None:
        listed_at = time.time_ns()
        try:
            self.reach()
            self._peers = [name for name in os.listdir(self.directory) if name.endswith(".sock")]
        except OSError:
            self._peers = []
        self._listed_at = time.monotonic()
        self._seen = changed if listed_at - changed > SAME_TICK_NS else -1

    def _ring_one(self, name: str, payload: bytes) -> None:
        if name in self._owed:
            self._owed.discard(name)
            payload = LISTENING.encode() + b"\n" + payload
        try:
            self._sender.sendto(payload, self.path(name))
        except OSError as exc:
            if exc.errno in _FULL:
                self._owed.add(name)
            elif exc.errno in _DEAD or exc.errno == errno.ENOENT:
                self._forget(name, unlink=exc.errno in _DEAD)

    def _forget(self, name: str, unlink: bool) -> None:
        """Stop ringing a socket; unlink it if its process is dead."""
        try:
            if unlink:
                os.unlink(self.path(name))
        except OSError:
            pass
        with self._lock:
            self._peers = [peer for peer in self._peers if peer != name]

    def close(self) -> None:
        self._sender.close()
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None


def open_doorbell(database_file: str) -> Optional[Doorbell]:
    """A doorbell for the processes sharing ``database_file``; None where
    Unix-domain sockets are missing."""
    if not hasattr(socket, "AF_UNIX"):
        return None
    return Doorbell(directory_for(database_file))


class DoorbellListener(threading.Thread):
    """This process's socket in the doorbell's directory, and the thread
    that hands the keys rung there to ``on_key``."""

    # Datagrams can be lost (see the module's docstring): waiters keep polling.
    reliable = False

    def __init__(self, doorbell: Doorbell, on_key: Callable[[str], None]) -> None:
        super().__init__(name="dbos-doorbell", daemon=True)
        self._doorbell = doorbell
        self._on_key = on_key
        self._halt = threading.Event()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._wake_r, self._wake_w = os.pipe()
        self.name_in_directory = ""
        self.ready = threading.Event()  # set once the socket is in the directory, where senders find it

    def bind(self) -> None:
        """Create the directory and this process's socket."""
        doorbell = self._doorbell
        name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        # Bound under a name senders ignore, then renamed: a sender never
        # meets the file before the socket is bound (and unlinks it as dead).
        for tries_left in (1, 0):  # the last listener to stop may remove the directory meanwhile
            os.makedirs(doorbell.directory, exist_ok=True)
            try:
                doorbell.reach()
                self._socket.bind(doorbell.path(name + ".tmp"))
                break
            except FileNotFoundError:
                if not tries_left:
                    raise
        os.rename(doorbell.path(name + ".tmp"), doorbell.path(name + ".sock"))
        self.name_in_directory = doorbell.own = name + ".sock"
        self.ready.set()

    def stop(self) -> None:
        self._halt.set()
        os.write(self._wake_w, b"x")
        if self.is_alive():
            self.join(timeout=10)
        if self.name_in_directory:
            self._leave()
        self._doorbell.own = None
        self._socket.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _leave(self) -> None:
        """Unlink this socket; the last one out removes the directory too."""
        try:
            os.unlink(self._doorbell.path(self.name_in_directory))
            os.rmdir(self._doorbell.directory)
        except OSError:
            pass  # gone already, or other sockets remain

    def run(self) -> None:
        while not self._halt.is_set():
            readable, _, _ = select.select([self._socket.fileno(), self._wake_r], [], [])
            if self._socket.fileno() in readable and not self._halt.is_set():
                self._hand_over(self._socket.recv(65536))

    def _hand_over(self, payload: bytes) -> None:
        for key in payload.decode(errors="replace").split("\n"):
            if not key:
                continue
            try:
                self._on_key(key)
            except Exception:
                logger.warning("A waiter's wake-up failed", exc_info=True)


def listen_on(doorbell: Doorbell, on_key: Callable[[str], None]) -> Optional[DoorbellListener]:
    """Start listening on the doorbell's directory; None (waiters poll) where
    the socket cannot be made."""
    listener = DoorbellListener(doorbell, on_key)
    try:
        listener.bind()
    except OSError as exc:
        logger.debug(f"No wake-ups between processes through {doorbell.directory!r} ({exc}); waiters poll")
        listener.stop()
        return None
    listener.start()
    return listener
