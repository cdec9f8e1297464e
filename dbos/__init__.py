"""Durable workflows for Python, speaking the DBOS Transact API."""

import importlib.util
from typing import TYPE_CHECKING, Any

from . import error
from ._ops.client import DBOSClient, EnqueueOptions
from ._config import DBOSConfig
from ._engine.messages import SendMessage
from ._engine.context import DBOSContextEnsure, DBOSContextSetAuth, SetWorkflowID
from ._datasource import Datasource, DBAPIDatasource, PeeweeDatasource
from ._engine.deadline import SetWorkflowTimeout
from ._engine.decorators import DBOSConfiguredInstance
from ._engine.handles import WorkflowHandle, WorkflowHandleAsync
from ._ops.management import StepInfo
from ._queues.queue import Queue, QueueRateLimit, SetEnqueueOptions
from ._facade.dbos import DBOS
from ._ops.migrate import run_dbos_database_migrations
from ._serialization import DefaultSerializer, Serializer
from ._status import StepStatus, WorkflowStatus, WorkflowStatusString
from ._versions import VersionInfo

if TYPE_CHECKING:
    from .contrib.sqlalchemy import SQLAlchemyDatasource  # noqa: F401  (for type checkers)

__all__ = [
    "DBAPIDatasource",
    "DBOS",
    "DBOSClient",
    "DBOSConfig",
    "DBOSConfiguredInstance",
    "DBOSContextEnsure",
    "DBOSContextSetAuth",
    "Datasource",
    "DefaultSerializer",
    "EnqueueOptions",
    "PeeweeDatasource",
    "Queue",
    "QueueRateLimit",
    "SendMessage",
    "SetEnqueueOptions",
    "Serializer",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "StepInfo",
    "StepStatus",
    "VersionInfo",
    "WorkflowHandle",
    "WorkflowHandleAsync",
    "WorkflowStatus",
    "WorkflowStatusString",
    "error",
    "run_dbos_database_migrations",
]


# Listed only where SQLAlchemy is installed, so `from dbos import *` works without it.
if importlib.util.find_spec("sqlalchemy") is not None:
    __all__.append("SQLAlchemyDatasource")


def __getattr__(name: str) -> Any:
    # SQLAlchemy is optional: importing it on first use keeps `import dbos`
    # working without it.
    if name == "SQLAlchemyDatasource":
        from .contrib.sqlalchemy import SQLAlchemyDatasource

        return SQLAlchemyDatasource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
