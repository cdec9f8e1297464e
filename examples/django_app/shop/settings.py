"""Settings of the example shop.

SQLite (``db.sqlite3`` here) by default; set ``DATABASE_URL`` to
``postgresql://user:password@host:5432/name`` (or ``sqlite:////abs/path``)
to use another database. DBOS keeps its own tables in that same database.
"""

import os
from pathlib import Path
from typing import Any, Dict
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-do-not-deploy")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

INSTALLED_APPS = [
    "dbos.contrib.django",  # reads DBOS below; adds dbos_worker, dbos_migrate, dbos_workflow
    "orders",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"  # launches DBOS where requests are served
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Any DBOSConfig key may go here. With no system_database_url, DBOS's tables
# live in the default database below; @DBOS.transaction runs on Django's connection.
DBOS = {"name": "django-example"}


def database_from_url(url: str) -> Dict[str, Any]:
    """A DATABASES entry for a sqlite:/// or postgresql:// URL."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        path = path if path.is_absolute() else BASE_DIR / path
        # Django tests on an in-memory SQLite database by default, which
        # DBOS's own connections could not see: test on a file beside this one.
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(path),
            "TEST": {"NAME": str(path.with_name(f"test_{path.name}"))},
        }
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL must be sqlite:///... or postgresql://..., got {url!r}")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL", "sqlite:///db.sqlite3"))}
