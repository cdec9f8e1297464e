"""Durable workflows for Python, speaking the DBOS Transact API."""

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
