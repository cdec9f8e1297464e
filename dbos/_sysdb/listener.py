"""LISTEN on PostgreSQL, so waiters wake the moment another process commits."""

from __future__ import annotations

import logging
import os
import select
import threading
from typing import Any, Callable, Optional

from .errors import connecting
from .failures import describe_failure
from .notifications import LISTENING, NOTIFY_CHANNEL
from .outage import Backoff, OutageTracker, is_outage
from .url import DatabaseURL

logger = logging.getLogger("dbos")


class Listener(threading.Thread):
    """One dedicated connection; reconnects with backoff when it is lost.

    An outage is told to the system database's ``OutageTracker``, which logs
    it once for the listener and the pool alike."""

    reliable = True

    def __init__(self, url: DatabaseURL, on_key: Callable[[str], None],
                 outage: Optional[OutageTracker] = None) -> None:
        super().__init__(name="dbos-listener", daemon=True)
        self._url = url
        self._on_key = on_key
        self._outage = outage or OutageTracker(str(url))
        self._backoff: Optional[Backoff] = None
        self._doing = "connecting"  # what the listener was doing, for its error messages
        self._halt = threading.Event()
        self.ready = threading.Event()  # set once LISTEN is in place
        # Writing to this pipe wakes the select() at once when stopping.
        self._wake_r, self._wake_w = os.pipe()

    def stop(self) -> None:
        self._halt.set()
        os.write(self._wake_w, b"x")
        self.join(timeout=10)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self._listen()
            except Exception as exc:
                if self._halt.is_set():
                    return
                self.ready.clear()
                self._halt.wait(self._lost(exc))

    def _lost(self, exc: Exception) -> float:
        """Report the lost connection; how long to wait before reconnecting."""
        self._backoff = self._backoff or Backoff()
        if is_outage(exc):
            self._outage.failed(exc, again=self._backoff.tries > 0)
        else:
            failure = describe_failure(self._url, self._doing, exc)
            logger.warning(f"Notification listener stopped ({failure.message}); reconnecting")
        return self._backoff.next()

    def _listen(self) -> None:
        import psycopg2

        self._doing = "connecting"
        with connecting():
            conn: Any = psycopg2.connect(dbname=self._url.database, **self._url.connect_kwargs())
        try:
            self._doing = "listening for notifications (LISTEN)"
            conn.autocommit = True
            conn.cursor().execute(f"LISTEN {NOTIFY_CHANNEL}")
            self.ready.set()
            self._backoff = None
            self._outage.succeeded()
            self._on_key(LISTENING)
            self._doing = "waiting for notifications"
            while not self._halt.is_set():
                self._drain(conn)
        finally:
            conn.close()

    def _drain(self, conn: Any) -> None:
        readable, _, _ = select.select([conn, self._wake_r], [], [], 5.0)
        if conn not in readable:
            return
        conn.poll()
        while conn.notifies:
            note = conn.notifies.pop(0)
            self._on_key(note.payload)
