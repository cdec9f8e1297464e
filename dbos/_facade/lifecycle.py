"""``DBOS``'s lifecycle and identity: launch, destroy, reset, versions."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, List, Optional

from .. import _runtime as runtime
from .._config import DBOSConfig
from .._engine.classes import register_instance
from .._logger import dbos_logger
from .._ops.management import latest_application_version
from .._runtime import AlertHandler
from .._versions import VersionInfo
from .classproperty import classproperty


class LifecycleAPI:
    @classmethod
    def launch(cls) -> None:
        """Migrate (or verify) the system database, recover this executor's pending
        workflows and start the queues; raises what stopped it, after logging it."""
        runtime.launch()

    @classmethod
    def destroy(cls, *, destroy_registry: bool = False, workflow_completion_timeout_sec: int = 0) -> None:
        """Stop background work (waiting up to ``workflow_completion_timeout_sec`` for
        running workflows) and close the system database, so DBOS can be built anew."""
        runtime.destroy(destroy_registry=destroy_registry,
                        workflow_completion_timeout_sec=workflow_completion_timeout_sec)

    @classmethod
    def reset_system_database(cls, *, system_database_url: Optional[str] = None,
                              schema: Optional[str] = None, truncate: bool = False) -> None:
        """Drop the system database, or with ``truncate`` empty its tables; before
        launch only (``AssertionError`` after)."""
        runtime.reset_system_database(system_database_url, schema, truncate)

    @classmethod
    def listen_queues(cls, queues: List[Any]) -> None:
        """Serve only these queues (names or ``Queue`` objects) in this process; after
        ``DBOS()`` and before launch, once (``DBOSException`` otherwise)."""
        runtime.listen_queues(queues)

    @classproperty
    def logger(cls) -> logging.Logger:
        """The ``dbos`` logger."""
        return dbos_logger

    @classproperty
    def application_version(cls) -> str:
        """This process's application version (computed at launch unless configured)."""
        return runtime.GlobalParams.app_version

    @classproperty
    def executor_id(cls) -> str:
        """This process's executor ID (``local`` unless configured)."""
        return runtime.GlobalParams.executor_id

    @classproperty
    def config(cls) -> Optional[DBOSConfig]:
        """The configuration DBOS was constructed with; None before ``DBOS()``."""
        return runtime.current_config()

    # ------------------------------------------------------------------
    # Application versions
    # ------------------------------------------------------------------

    @classmethod
    def list_application_versions(cls) -> List[VersionInfo]:
        """Registered application versions, newest first."""
        return runtime.system_database("DBOS.list_application_versions()").list_application_versions()

    @classmethod
    async def list_application_versions_async(cls) -> List[VersionInfo]:
        """``list_application_versions`` for async code."""
        return await asyncio.to_thread(cls.list_application_versions)

    @classmethod
    def get_latest_application_version(cls) -> VersionInfo:
        """The latest registered application version (``DBOSException`` if none)."""
        return latest_application_version(runtime.system_database("DBOS.get_latest_application_version()"))

    @classmethod
    async def get_latest_application_version_async(cls) -> VersionInfo:
        """``get_latest_application_version`` for async code."""
        return await asyncio.to_thread(cls.get_latest_application_version)

    @classmethod
    def set_latest_application_version(cls, version_name: str, *, application_name: Optional[str] = None) -> None:
        """Make ``version_name`` the latest version: queued work for no particular version
        runs on it. Version names are unique across applications here, so
        ``application_name`` is accepted but changes nothing."""
        runtime.system_database("DBOS.set_latest_application_version()").set_latest_application_version(
            version_name)

    @classmethod
    async def set_latest_application_version_async(cls, version_name: str, *,
                                                   application_name: Optional[str] = None) -> None:
        """``set_latest_application_version`` for async code."""
        await asyncio.to_thread(cls.set_latest_application_version, version_name,
                                application_name=application_name)

    # ------------------------------------------------------------------
    # Registration
    # ------------------------------------------------------------------

    @classmethod
    def register_instance(cls, inst: object) -> None:
        """Register an object whose methods are workflows, steps or transactions under
        its class and ``config_name``, so recovery finds it (``DBOSConfiguredInstance``
        does this itself); ``DBOSException`` for another object under the same names."""
        register_instance(inst)

    @classmethod
    def alert_handler(cls, func: AlertHandler) -> AlertHandler:
        """Decorate the function that handles alerts ``(name, message, metadata)``;
        one per process, before launch (``DBOSException`` otherwise). Alerts come
        from DBOS Conductor, which this library does not connect to."""
        runtime.set_alert_handler(func)
        return func
