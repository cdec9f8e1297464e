"""Durable workflows for Python, speaking the DBOS Transact API.

The public names are those of ``__all__``; everything else lives in private
modules (see ARCHITECTURE.md), and ``dbos.error``, ``dbos.contrib`` are the
public modules.
"""

import importlib.util as _importlib_util
import typing as _typing

from . import error
from ._config import DBOSConfig
from ._datasource import Datasource, DBAPIDatasource, PeeweeDatasource
from ._engine.attributes import SetWorkflowAttributes
from ._engine.classes import DBOSConfiguredInstance
from ._engine.context import DBOSContextEnsure, DBOSContextSetAuth, SetWorkflowID
from ._engine.deadline import SetWorkflowTimeout
from ._engine.handles import WorkflowHandle, WorkflowHandleAsync
from ._engine.messages import SendMessage
from ._engine.propagation import PropagateOtelContext
from ._engine.step import StepOptions
from ._engine.validation import make_pydantic_args_validator, pydantic_args_validator
from ._facade.dbos import DBOS
from ._ops.client import DBOSClient, EnqueueOptions
from ._ops.debouncer_client import DebouncerClient
from ._ops.management import StepInfo
from ._ops.migrate import run_dbos_database_migrations
from ._portable_json import PortableWorkflowError, WorkflowSerializationFormat
from ._queues.debouncer import Debouncer
from ._queues.dedup import DuplicationPolicy
from ._queues.queue import Queue, QueueRateLimit, SetEnqueueOptions
from ._queues.schedules import ClientScheduleInput, ScheduleInput, WorkflowSchedule
from ._serialization import DBOSPortableJSONSerializer, DefaultSerializer, Serializer
from ._status import StepStatus, WorkflowStatus, WorkflowStatusString
from ._versions import VersionInfo

if _typing.TYPE_CHECKING:  # for type checkers
    from .contrib.sqlalchemy import SQLAlchemyDatasource  # noqa: F401
    from .contrib.sqlalchemy_async import AsyncSQLAlchemyDatasource  # noqa: F401

__all__ = [
    "ClientScheduleInput",
    "Debouncer",
    "DebouncerClient",
    "DuplicationPolicy",
    "ScheduleInput",
    "SetWorkflowAttributes",
    "WorkflowSchedule",
    "DBAPIDatasource",
    "DBOS",
    "DBOSClient",
    "DBOSConfig",
    "DBOSConfiguredInstance",
    "DBOSContextEnsure",
    "DBOSContextSetAuth",
    "DBOSPortableJSONSerializer",
    "Datasource",
    "DefaultSerializer",
    "EnqueueOptions",
    "PeeweeDatasource",
    "PortableWorkflowError",
    "PropagateOtelContext",
    "Queue",
    "QueueRateLimit",
    "SendMessage",
    "SetEnqueueOptions",
    "Serializer",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "StepInfo",
    "StepOptions",
    "StepStatus",
    "VersionInfo",
    "WorkflowHandle",
    "WorkflowHandleAsync",
    "WorkflowSerializationFormat",
    "WorkflowStatus",
    "WorkflowStatusString",
    "error",
    "make_pydantic_args_validator",
    "pydantic_args_validator",
    "run_dbos_database_migrations",
]

# SQLAlchemy is optional: its datasources are imported on first use (below),
# and listed only where SQLAlchemy is installed, so `from dbos import *`
# works without it.
if _importlib_util.find_spec("sqlalchemy") is not None:
    __all__ += ["AsyncSQLAlchemyDatasource", "SQLAlchemyDatasource"]


def __getattr__(name: str) -> _typing.Any:
    if name == "SQLAlchemyDatasource":
        from .contrib.sqlalchemy import SQLAlchemyDatasource

        return SQLAlchemyDatasource
    if name == "AsyncSQLAlchemyDatasource":
        from .contrib.sqlalchemy_async import AsyncSQLAlchemyDatasource

        return AsyncSQLAlchemyDatasource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
