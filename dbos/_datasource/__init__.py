"""The application database, as transactions see it.

``interface.py`` is the contract; ``steps.py`` the 2.x API every datasource
has (``@ds.transaction()``, ``run_tx_step``, ``sql_session``); ``tables.py``
the two outputs tables and ``outputs.py`` the SQL that keeps them for every
adapter; ``peewee.py`` (the default) and ``dbapi.py`` are the adapters that
need no optional library. SQLAlchemy's and the Django ORM's live in
``dbos.contrib``.
"""

from .dbapi import DBAPIDatasource
from .interface import DATASOURCE_KINDS, AsyncDatasource, Datasource, Dialect, Recorded, Row, default_kind
from .levels import ISOLATION_LEVELS, IsolationLevel, check_level
from .outputs import SQLDatasource
from .peewee import PeeweeDatasource
from .retries import is_retryable_error
from .steps import DatasourceOptions, install_runners
from .tables import DATASOURCE_OUTPUTS, TRANSACTION_OUTPUTS, Outcome, OutputsTable

__all__ = [
    "DATASOURCE_KINDS", "DATASOURCE_OUTPUTS", "AsyncDatasource", "DBAPIDatasource", "Datasource",
    "DatasourceOptions", "Dialect", "ISOLATION_LEVELS", "IsolationLevel", "Outcome", "OutputsTable",
    "PeeweeDatasource", "Recorded", "Row", "SQLDatasource", "TRANSACTION_OUTPUTS", "check_level",
    "default_kind", "install_runners", "is_retryable_error",
]
