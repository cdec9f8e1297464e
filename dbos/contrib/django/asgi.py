"""``get_asgi_application()`` for a project's ``asgi.py``, with DBOS launched.

Replace Django's import in ``<project>/asgi.py``::

    from dbos.contrib.django.asgi import get_asgi_application

    application = get_asgi_application()

ASGI servers (uvicorn, daphne, hypercorn) build the application in each
process that serves, so DBOS launches there and nowhere else.
"""

from __future__ import annotations

from typing import Any

from .launching import launch


def get_asgi_application() -> Any:
    """Django's ASGI handler (``django.setup()`` included), after ``launch()``."""
    from django.core.asgi import get_asgi_application as django_asgi_application

    application = django_asgi_application()
    launch()
    return application
