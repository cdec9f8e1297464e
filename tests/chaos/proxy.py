"""A fault-injecting TCP proxy on loopback, between the library and PostgreSQL.

It listens on 127.0.0.1 at an ephemeral port and forwards every connection to
the server (127.0.0.1:5432 by default), with one thread per direction. Faults:

- ``cut()``: close every connection now, as a server restart does.
- ``refuse()`` / ``accept()``: close new connections as soon as they arrive,
  as a server that is down or starting up does, until accepted again.
- ``stall(seconds)``: forward nothing for a while; connections stay open.
- ``drop_on(marker)``: the next client packet containing ``marker`` (say
  ``b"COMMIT"``) is forwarded and then its connection closed, so the server
  acts on it but the client never hears the answer.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import List, Optional, Tuple


class _Pair:
    """One client connection and its upstream twin."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self._closed = False
        self._lock = threading.Lock()
        self.muted = False  # the server's answers are no longer passed on

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for sock in (self.client, self.server):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``target``, with faults on demand."""

    def __init__(self, target: Tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._pairs: List[_Pair] = []
        self._lock = threading.Lock()
        self._refusing = False
        self._flowing = threading.Event()
        self._flowing.set()
        self._drop_marker: Optional[bytes] = None
        self.dropped = threading.Event()  # set when ``drop_on`` has dropped its connection
        self.refused = 0  # connections closed on arrival
        self._refusal = threading.Condition()
        self._stopped = False
        threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True).start()

    # Faults ------------------------------------------------------------

    def cut(self) -> int:
        """Close every open connection; how many there were."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close()
        return len(pairs)

    def refuse(self) -> None:
        """Close each new connection on arrival until ``accept``."""
        self._refusing = True

    def accept(self) -> None:
        self._refusing = False

    def wait_refused(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` connections in all have been refused."""
        with self._refusal:
            return self._refusal.wait_for(lambda: self.refused >= count, timeout)

    def stall(self, seconds: float) -> None:
        """Forward nothing, either way, for ``seconds`` (returns at once)."""
        self._flowing.clear()
        timer = threading.Timer(seconds, self._flowing.set)
        timer.daemon = True
        timer.start()

    def drop_on(self, marker: bytes) -> None:
        """Drop the connection of the next client packet holding ``marker``,
        after forwarding that packet."""
        self.dropped.clear()
        self._drop_marker = marker

    def close(self) -> None:
        self._stopped = True
        self._listener.close()
        self.cut()

    # Forwarding --------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refusing:
                client.close()
                with self._refusal:
                    self.refused += 1
                    self._refusal.notify_all()
                continue
            self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        pair = _Pair(client, server)
        with self._lock:
            self._pairs.append(pair)
        threading.Thread(target=self._pump, args=(pair, client, server, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(pair, server, client, False), daemon=True).start()

    def _pump(self, pair: _Pair, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                while not self._flowing.wait(0.05):
                    pass
                if not upstream and pair.muted:
                    break
                dropping = upstream and self._should_drop(data)
                if dropping:
                    pair.muted = True  # the client must never hear the answer
                sink.sendall(data)
                if dropping:
                    time.sleep(0.2)  # let the server act on it first
                    break
        except OSError:
            pass
        pair.close()

    def _should_drop(self, data: bytes) -> bool:
        marker = self._drop_marker
        if marker is None or marker not in data:
            return False
        self._drop_marker = None
        self.dropped.set()
        return True
