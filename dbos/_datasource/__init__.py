"""The application database, as ``@DBOS.transaction`` sees it.

``interface.py`` is the contract; ``outputs.py`` keeps ``transaction_outputs``
in SQL for every adapter; ``peewee.py`` (the default) and ``dbapi.py`` are
the adapters that need no optional library. SQLAlchemy's and the Django
ORM's live in ``dbos.contrib``.
"""

from .dbapi import DBAPIDatasource
from .interface import (
    DATASOURCE_KINDS,
    ISOLATION_LEVELS,
    Datasource,
    Dialect,
    IsolationLevel,
    Row,
    default_kind,
)
from .outputs import SQLDatasource, check_level
from .peewee import PeeweeDatasource
from .retries import is_retryable_error

__all__ = [
    "DATASOURCE_KINDS", "DBAPIDatasource", "Datasource", "Dialect", "ISOLATION_LEVELS",
    "IsolationLevel", "PeeweeDatasource", "Row", "SQLDatasource", "check_level", "default_kind",
    "is_retryable_error",
]
