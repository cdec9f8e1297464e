"""The system database: models, backends, migrations and the storage interface."""

from .migrator import latest_version
from .storage import SystemDatabase
from .url import DatabaseURL

__all__ = ["DatabaseURL", "SystemDatabase", "latest_version"]
