"""A datasource's database URL, checked before anything connects."""

from __future__ import annotations

from .._sysdb.url import DatabaseURL, URLError, mask_url
from ..error import DBOSInvalidArgumentError


def parse_url(database_url: str) -> DatabaseURL:
    """The parsed URL; ``DBOSInvalidArgumentError`` (password hidden) if it cannot be used."""
    if not isinstance(database_url, str):
        raise DBOSInvalidArgumentError("database_url", database_url, "a database URL is a string")
    try:
        return DatabaseURL.parse(database_url)
    except URLError as exc:
        raise DBOSInvalidArgumentError("database_url", mask_url(database_url), str(exc)) from None
