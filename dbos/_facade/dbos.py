"""The ``DBOS`` class: the public face of the runtime of this process.

Every member is a classmethod (or class property), grouped by area in the
mixins of this package; each hands its work to the layer below it (the
runtime, the engine, the queues, the operations tools). ``DBOS(config=...)``
constructs the runtime once per process: a second construction returns the
same instance and ignores its arguments, as in DBOS Transact.
"""

from __future__ import annotations

from typing import Any, Optional

from .. import _runtime as runtime
from .._config import DBOSConfig
from .context import ContextAPI
from .lifecycle import LifecycleAPI
from .management import ManagementAPI
from .messaging import MessagingAPI
from .patches import PatchAPI
from .queues import QueueAPI
from .schedules import ScheduleAPI
from .workflows import WorkflowAPI

_instance: Optional["DBOS"] = None


class DBOS(LifecycleAPI, WorkflowAPI, MessagingAPI, QueueAPI, ScheduleAPI, ManagementAPI, ContextAPI,
           PatchAPI):
    """The durable-execution runtime of this process (one instance at a time)."""

    _runtime: runtime.Runtime

    def __new__(
        cls,
        *,
        config: Optional[DBOSConfig] = None,
        fastapi: Optional[Any] = None,
        flask: Optional[Any] = None,
        conductor_url: Optional[str] = None,
        conductor_key: Optional[str] = None,
    ) -> "DBOS":
        global _instance
        with runtime.lock:
            # The frameworks before anything exists: a wrong app leaves nothing.
            current = runtime.construct_from(config, lambda: _install_frameworks(fastapi, flask))
            if _instance is None or _instance._runtime is not current:
                _instance = super().__new__(cls)
                _instance._runtime = current
            return _instance

    def __init__(
        self,
        *,
        config: Optional[DBOSConfig] = None,
        fastapi: Optional[Any] = None,
        flask: Optional[Any] = None,
        conductor_url: Optional[str] = None,
        conductor_key: Optional[str] = None,
    ) -> None:
        """Construct DBOS from ``config`` (or ``dbos_config.yaml``, or the defaults),
        installing it in a FastAPI or Flask app if given; ``DBOSConfigError`` names a bad field."""


def _install_frameworks(fastapi: Any, flask: Any) -> None:
    # Imported here: the framework glue is optional, and the core never imports a framework.
    if fastapi is not None:
        from ..contrib.fastapi import setup_fastapi

        setup_fastapi(fastapi)
    if flask is not None:
        from ..contrib.flask import setup_flask

        setup_flask(flask)
