"""The one clock every recorded time comes from: epoch milliseconds."""

from __future__ import annotations

import threading
import time


def now_ms() -> int:
    return int(time.time() * 1000)


_last = {"stamp": 0}
_last_lock = threading.Lock()


def unique_now_ms() -> int:
    """Now, in ms, but never the same twice in this process: a claim retried
    after a lost COMMIT finds its own rows by this stamp, never another's."""
    with _last_lock:
        _last["stamp"] = max(now_ms(), _last["stamp"] + 1)
        return _last["stamp"]
