"""The installed package's own version."""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata


@lru_cache(maxsize=1)
def package_version() -> str:
    try:
        return metadata.version("dbos")
    except metadata.PackageNotFoundError:
        return "0+unknown"
