"""``get_wsgi_application()`` for a project's ``wsgi.py``, with DBOS launched.

Replace Django's import in ``<project>/wsgi.py``::

    from dbos.contrib.django.wsgi import get_wsgi_application

    application = get_wsgi_application()

Every server that serves the project builds its application there, and only
the processes that serve do: ``runserver`` in its autoreloader's child (or its
only process with ``--noreload``), each gunicorn/uwsgi/mod_wsgi worker. Do not
preload the application in a forking server's master (gunicorn ``--preload``):
DBOS's threads and connections do not survive ``fork()``.
"""

from __future__ import annotations

from typing import Any

from .launching import launch


def get_wsgi_application() -> Any:
    """Django's WSGI handler (``django.setup()`` included), after ``launch()``."""
    from django.core.wsgi import get_wsgi_application as django_wsgi_application

    application = django_wsgi_application()
    launch()
    return application
