"""Running test code on other threads and collecting what came out."""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Tuple


def in_thread(target: Callable[[], Any], *, daemon: bool = True) -> Tuple[threading.Thread, Dict[str, Any]]:
    """Run ``target`` on a new thread; its result or exception lands in the dict."""
    box: Dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = target()
        except BaseException as exc:  # the test inspects whatever came out
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=daemon)
    thread.start()
    return thread, box


def result(handle: Any, timeout: float = 30.0) -> Any:
    """``handle.get_result()``, failing instead of hanging when it never comes."""
    thread, box = in_thread(handle.get_result)
    thread.join(timeout)
    assert not thread.is_alive(), f"workflow {handle.workflow_id} did not finish in {timeout} s"
    if "error" in box:
        raise box["error"]
    return box["result"]
