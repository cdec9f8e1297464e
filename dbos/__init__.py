"""Durable workflows for Python, speaking the DBOS Transact API."""

from . import error
from .config import DBOSConfig
from .runtime import DBOS
from .schema import run_dbos_database_migrations
from .version import VersionInfo

__all__ = [
    "DBOS",
    "DBOSConfig",
    "VersionInfo",
    "error",
    "run_dbos_database_migrations",
]
