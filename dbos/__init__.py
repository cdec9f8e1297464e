"""Durable workflows for Python, speaking the DBOS Transact API."""

import importlib.util
from typing import TYPE_CHECKING, Any

from . import error
from .client import DBOSClient, EnqueueOptions
from .config import DBOSConfig
from .communication import SendMessage
from .context import DBOSContextEnsure, DBOSContextSetAuth, SetWorkflowID
from .datasource import Datasource, DBAPIDatasource, PeeweeDatasource
from .deadline import SetWorkflowTimeout
from .decorators import DBOSConfiguredInstance
from .handle import WorkflowHandle, WorkflowHandleAsync
from .operations import StepInfo
from .queue import Queue, QueueRateLimit, SetEnqueueOptions
from .runtime import DBOS
from .schema import run_dbos_database_migrations
from .serialization import DefaultSerializer, Serializer
from .status import StepStatus, WorkflowStatus, WorkflowStatusString
from .version import VersionInfo

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
