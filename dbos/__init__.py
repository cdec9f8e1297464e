"""Durable workflows for Python, speaking the DBOS Transact API."""

from . import error
from .config import DBOSConfig
from .context import DBOSContextEnsure, DBOSContextSetAuth, SetWorkflowID
from .datasource import Datasource, DBAPIDatasource, PeeweeDatasource
from .decorators import DBOSConfiguredInstance
from .handle import WorkflowHandle, WorkflowHandleAsync
from .runtime import DBOS
from .schema import run_dbos_database_migrations
from .serialization import DefaultSerializer, Serializer
from .status import StepStatus, WorkflowStatus, WorkflowStatusString
from .version import VersionInfo

__all__ = [
    "DBAPIDatasource",
    "DBOS",
    "DBOSConfig",
    "DBOSConfiguredInstance",
    "DBOSContextEnsure",
    "DBOSContextSetAuth",
    "Datasource",
    "DefaultSerializer",
    "PeeweeDatasource",
    "Serializer",
    "SetWorkflowID",
    "StepStatus",
    "VersionInfo",
    "WorkflowHandle",
    "WorkflowHandleAsync",
    "WorkflowStatus",
    "WorkflowStatusString",
    "error",
    "run_dbos_database_migrations",
]
