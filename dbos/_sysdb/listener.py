"""LISTEN on PostgreSQL, so waiters wake the moment another process commits."""

from __future__ import annotations

import logging
import os
import select
import threading
from typing import Any, Callable

from .notifications import LISTENING, NOTIFY_CHANNEL
from .url import DatabaseURL

logger = logging.getLogger("dbos")


class Listener(threading.Thread):
    """One dedicated connection; reconnects after a pause when it is lost."""

    def __init__(self, url: DatabaseURL, on_key: Callable[[str], None]) -> None:
        super().__init__(name="dbos-listener", daemon=True)
        self._url = url
        self._on_key = on_key
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
                logger.warning(f"Notification listener lost its connection ({exc}); reconnecting")
                self._halt.wait(1.0)

    def _listen(self) -> None:
        import psycopg2

        conn: Any = psycopg2.connect(dbname=self._url.database, **self._url.connect_kwargs())
        try:
            conn.autocommit = True
            conn.cursor().execute(f"LISTEN {NOTIFY_CHANNEL}")
            self.ready.set()
            self._on_key(LISTENING)
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
