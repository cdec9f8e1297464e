"""Local wake-ups: events keyed by what their waiters wait for.

A waiter registers an event under a key (see ``_sysdb.notifications``); a
writer in this process, or the listener for writers elsewhere, notifies the
key once the write is committed, and the waiter looks again at once instead
of at its next poll.
"""

from __future__ import annotations

import threading
from typing import Dict, List, Optional

from .._sysdb.notifications import QUEUE_PREFIX


class Waiters:
    """Wakes local waiters the moment a local execution records an outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: Dict[str, List[threading.Event]] = {}

    def register(self, key: str, event: Optional[threading.Event] = None) -> threading.Event:
        """Set ``event`` (a new one by default) whenever ``key`` is woken."""
        event = event or threading.Event()
        with self._lock:
            self._events.setdefault(key, []).append(event)
        return event

    def unregister(self, key: str, event: threading.Event) -> None:
        with self._lock:
            events = self._events.get(key, [])
            if event in events:
                events.remove(event)
            if not events:
                self._events.pop(key, None)

    def waiting(self, key: str) -> bool:
        """Whether anything here waits on ``key`` now."""
        return key in self._events

    def wake(self, key: str) -> None:
        """Set every event registered under ``key``."""
        with self._lock:
            events = list(self._events.get(key, []))
        for event in events:
            event.set()

    def wake_all(self) -> None:
        """Wake every waiter, to look again at what it waits for; but not the
        queue workers, which look again at their next poll anyway."""
        with self._lock:
            events = [event for key, events in self._events.items() if not key.startswith(QUEUE_PREFIX)
                      for event in events]
        for event in events:
            event.set()
