"""DBOS Transact's private module name for the errors; kept so its imports work."""

from .error import *  # noqa: F401,F403
from .error import DBOSErrorCode  # noqa: F401
