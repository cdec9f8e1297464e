"""Versions: the installed package's, and the application's that a launch registers."""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from typing import Any, Callable, Iterable, Optional


@lru_cache(maxsize=1)
def package_version() -> str:
    """The version of the installed ``dbos`` package."""
    try:
        return metadata.version("dbos")
    except metadata.PackageNotFoundError:
        return "0+unknown"


# The application version of every process with patching enabled (and no
# application_version configured): new code recovers the workflows old code
# started, and DBOS.patch() tells each which code path it took.
PATCHING_VERSION = "PATCHING_ENABLED"


@dataclass(frozen=True)
class VersionInfo:
    version_id: str
    version_name: str
    version_timestamp: int
    created_at: int
    application_name: Optional[str]

    def __getitem__(self, key: str) -> Any:
        """``info["version_name"]`` too: DBOS Transact's ``VersionInfo`` is a TypedDict."""
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)


def compute_application_version(functions: Iterable[Callable[..., object]], app_name: str) -> str:
    """A hash of the registered workflows' source, the library version and the app name.

    Code that changes a workflow changes the version, so a process never
    recovers workflows that an older revision of the code started.
    """
    try:
        sources = sorted(inspect.getsource(f) for f in functions)
    except (OSError, TypeError):
        return f"DEFAULT_VERSION-{app_name}"
    digest = hashlib.md5()
    for source in sources:
        digest.update(source.encode())
    digest.update(package_version().encode())
    digest.update(app_name.encode())
    return digest.hexdigest()
