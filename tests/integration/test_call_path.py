"""One ``DBOS.recv``, followed through the code as it runs: it goes down the
layers and back, and never calls up into a module it does not import.

A call from module A into module B is a climb when A does not depend on B
(directly or through other imports): B's code was reached by a back door, a
callback or an object handed down, which is exactly what ARCHITECTURE.md
says the layers do not do.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any, Dict, List, Optional, Set, Tuple

from dbos import DBOS, SetWorkflowID
from tests.unit.test_architecture import PACKAGE, REPO, import_graph

Call = Tuple[str, str]  # (caller module, callee module)


def reachable() -> Dict[str, Set[str]]:
    """Each module's dependencies: what it imports, and what those import."""
    graph = import_graph()
    closure: Dict[str, Set[str]] = {}
    for start in graph:
        seen: Set[str] = set()
        todo = [start]
        while todo:
            for target in graph[todo.pop()] - seen:
                seen.add(target)
                todo.append(target)
        closure[start] = seen
    return closure


_modules: Dict[str, Optional[str]] = {}


def module_of(filename: str) -> Optional[str]:
    if filename not in _modules:
        path = Path(filename).resolve()
        name: Optional[str] = None
        if path.is_relative_to(PACKAGE) and path.suffix == ".py":
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        _modules[filename] = name
    return _modules[filename]


# Installed packages and the standard library: a driver or the pool may sit
# between two library calls. Any other code is the application's.
_OUTSIDE = tuple(str(Path(p).resolve()) for p in {sys.prefix, sys.base_prefix})


def caller_of(frame: FrameType) -> Optional[str]:
    """The library module that called ``frame``'s function, through any
    driver or pool code in between; None when the application called it."""
    back = frame.f_back
    while back is not None:
        filename = back.f_code.co_filename
        module = module_of(filename)
        if module is not None:
            return module
        if not str(Path(filename).resolve()).startswith(_OUTSIDE) and not filename.startswith("<"):
            return None
        back = back.f_back
    return None


def traced_recv(dbos: type[DBOS]) -> List[Call]:
    """The calls between library modules of one recv that finds its message waiting."""
    calls: List[Call] = []

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            callee, caller = module_of(frame.f_code.co_filename), caller_of(frame)
            if callee is not None and caller is not None and caller != callee:
                calls.append((caller, callee))

    started, go = threading.Event(), threading.Event()

    @DBOS.workflow()
    def receiver() -> Any:
        started.set()
        assert go.wait(30)
        sys.setprofile(profile)
        try:
            return DBOS.recv("path", timeout_seconds=30)
        finally:
            sys.setprofile(None)

    with SetWorkflowID("traced-receiver"):
        handle = DBOS.start_workflow(receiver)
    assert started.wait(30)
    DBOS.send("traced-receiver", "hello", "path")
    go.set()
    assert handle.get_result() == "hello"
    return calls


def test_a_recv_goes_down_the_layers_and_back(dbos: type[DBOS]) -> None:
    calls = traced_recv(dbos)
    depends = reachable()
    climbs = [f"{caller} -> {callee}" for caller, callee in calls if callee not in depends[caller]]
    entered = {callee for _, callee in calls}
    assert "dbos._engine.messages" in entered and any(m.startswith("dbos._sysdb") for m in entered)
    assert climbs == [], f"calls up the layers: {climbs}"
