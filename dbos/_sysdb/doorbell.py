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
# A new socket announces itself, so that senders list the directory again at
# once instead of at their next periodic listing.
HELLO = "dbos::hello"
# How long a sender trusts its list of peers (a listing costs a directory read).
REFRESH_S = 1.0
# sun_path holds 108 bytes; longer directories are reached through a descriptor.
MAX_PATH = 100
# A datagram this big would be refused; receivers re-read everything instead.
MAX_PAYLOAD = 4096
_GONE = (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK)
_FULL = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS)


def directory_for(database_file: str) -> str:
    return os.path.abspath(database_file) + SUFFIX


class Doorbell:
    """Sends keys to every socket in one directory; cheap for the writer.

    The peer list is cached and listed again after ``REFRESH_S``, on a
    hello, or never when the directory is missing (nobody listens)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._base = directory  # what socket paths are built on (see ``reach``)
        self._dir_fd: Optional[int] = None
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)
        self._peers: List[str] = []
        self._listed_at = -REFRESH_S
        self.own: Optional[str] = None  # this process's socket, never rung
        self._owed: Set[str] = set()  # peers whose queue was full: owed a "look at everything"
        self._lock = threading.Lock()

    def reach(self) -> None:
        """Make the directory's sockets addressable (sun_path is short)."""
        if len(self.directory) + 48 <= MAX_PATH:
            return
        self._dir_fd = os.open(self.directory, os.O_RDONLY)
        self._base = f"/proc/self/fd/{self._dir_fd}"
        if not os.path.isdir(self._base):
            raise OSError(f"cannot address sockets in {self.directory!r}: its path is too long")

    def path(self, name: str) -> str:
        return f"{self._base}/{name}"

    def stale(self) -> None:
        """A peer said hello: list again at the next ring."""
        self._listed_at = -REFRESH_S

    def ring(self, keys: Sequence[str]) -> None:
        payload = "\n".join(dict.fromkeys(keys)).encode()
        if len(payload) > MAX_PAYLOAD:
            payload = LISTENING.encode()
        for name in self._current_peers():
            if name != self.own:
                self._ring_one(name, payload)

    def _current_peers(self) -> List[str]:
        now = time.monotonic()
        if now - self._listed_at >= REFRESH_S:
            with self._lock:
                if now - self._listed_at >= REFRESH_S:
                    self._peers = self._list()
                    self._listed_at = now
        return self._peers

    def _list(self) -> List[str]:
        try:
            return [name for name in os.listdir(self.directory) if name.endswith(".sock")]
        except OSError:
            return []

    def _ring_one(self, name: str, payload: bytes) -> None:
        if name in self._owed:
            self._owed.discard(name)
            payload = LISTENING.encode() + b"\n" + payload
        try:
            self._sender.sendto(payload, self.path(name))
        except OSError as exc:
            if exc.errno in _FULL:
                self._owed.add(name)
            elif exc.errno in _GONE:
                self._forget(name)

    def _forget(self, name: str) -> None:
        """A dead process's socket: unlink it, and stop ringing it."""
        try:
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

    def bind(self) -> None:
        """Create the directory and this process's socket, and say hello."""
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
        doorbell.stale()
        doorbell.ring([HELLO])

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
            if key == HELLO:
                self._doorbell.stale()
                continue
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
