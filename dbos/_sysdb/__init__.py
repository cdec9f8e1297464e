"""The system database: the storage interface and its SQL implementations.

The layers above hold a ``Storage`` (``storage.py``) and construct a
``SystemDatabase`` by URL, which is a ``PostgresSystemDatabase`` for a
PostgreSQL URL. See ARCHITECTURE.md for where each statement lives.
"""

from .database import SystemDatabase
from .migrator import latest_version
from .postgres import PostgresSystemDatabase
from .storage import Storage
from .url import DatabaseURL

__all__ = ["DatabaseURL", "PostgresSystemDatabase", "Storage", "SystemDatabase", "latest_version"]
