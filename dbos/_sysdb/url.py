"""Database URLs: parsing, masking, and what a driver needs to connect."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Literal, Optional
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

Backend = Literal["sqlite", "postgresql"]

_SCHEMES: Dict[str, Backend] = {
    "sqlite": "sqlite",
    "postgres": "postgresql",
    "postgresql": "postgresql",
}


class URLError(ValueError):
    """A URL cannot be used; the message says why."""


@dataclass(frozen=True)
class DatabaseURL:
    backend: Backend
    database: str
    host: Optional[str] = None
    port: Optional[int] = None
    user: Optional[str] = None
    password: Optional[str] = None
    query: Dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> "DatabaseURL":
        scheme, sep, rest = url.partition("://")
        backend = _SCHEMES.get(scheme.split("+", 1)[0].lower()) if sep else None
        if backend is None:
            raise URLError(
                f"unsupported database URL '{mask_url(url)}': "
                "use postgresql://user:password@host:port/database or sqlite:///path"
            )
        if backend == "sqlite":
            return cls._parse_sqlite(rest)
        return cls._parse_postgres(url)

    @classmethod
    def _parse_sqlite(cls, rest: str) -> "DatabaseURL":
        path, _, query = rest.partition("?")
        if not path.startswith("/") or path in ("/", "/:memory:"):
            raise URLError(
                "a SQLite URL must name a file, as in sqlite:///app.sqlite "
                "(relative) or sqlite:////var/lib/app.sqlite (absolute); an "
                "in-memory database cannot survive a crash"
            )
        return cls("sqlite", unquote(path[1:]), query=dict(parse_qsl(query)))

    @classmethod
    def _parse_postgres(cls, url: str) -> "DatabaseURL":
        parts = urlsplit(url)
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise URLError(
                f"the database URL '{mask_url(url)}' has no database name: "
                "add one, as in postgresql://postgres@localhost:5432/myapp"
            )
        try:
            port = parts.port
        except ValueError as exc:
            raise URLError(f"the database URL '{mask_url(url)}' has a bad port: {exc}")
        return cls(
            "postgresql",
            database,
            host=unquote(parts.hostname) if parts.hostname else None,
            port=port,
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            query=dict(parse_qsl(parts.query)),
        )

    @property
    def is_sqlite(self) -> bool:
        return self.backend == "sqlite"

    @property
    def sqlite_path(self) -> str:
        return os.path.abspath(self.database)

    def with_database(self, database: str) -> "DatabaseURL":
        return replace(self, database=database)

    def render(self, *, hide_password: bool = False) -> str:
        shown = _hide_password(self.query) if hide_password else self.query
        query = f"?{urlencode(shown, safe='*')}" if self.query else ""
        if self.is_sqlite:
            return f"sqlite:///{self.database}{query}"
        auth = ""
        if self.user is not None:
            auth = quote(self.user, safe="")
            if self.password is not None:
                secret = "***" if hide_password else quote(self.password, safe="")
                auth += f":{secret}"
            auth += "@"
        host = self.host or ""
        port = f":{self.port}" if self.port else ""
        return f"postgresql://{auth}{host}{port}/{quote(self.database)}{query}"

    def __str__(self) -> str:
        return self.render(hide_password=True)

    def connect_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for psycopg2.connect, beside the database name."""
        kwargs: Dict[str, Any] = {"application_name": "dbos_transact", "connect_timeout": 10}
        for key in ("host", "port", "user", "password"):
            value = getattr(self, key)
            if value is not None:
                kwargs[key] = value
        kwargs.update(self.query)
        return kwargs


def mask_url(url: str) -> str:
    """The URL with its password (in the user part or the query) replaced."""
    try:
        parts = urlsplit(url)
        netloc, query = parts.netloc, parts.query
        if parts.password is not None:
            netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key == "password" for key, _ in pairs):
            query = urlencode(list(_hide_password(dict(pairs)).items()), safe="*")
        if (netloc, query) == (parts.netloc, parts.query):
            return url
        return parts._replace(netloc=netloc, query=query).geturl()
    except ValueError:
        return "<unparseable URL>"


def _hide_password(query: Dict[str, str]) -> Dict[str, str]:
    # libpq also takes the password as a query parameter.
    return {k: ("***" if k == "password" else v) for k, v in query.items()}
