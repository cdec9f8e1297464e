"""Django integration: add ``"dbos.contrib.django"`` to ``INSTALLED_APPS``.

- ``settings.DBOS`` is the ``DBOSConfig`` (validated when Django starts). By
  default the system tables live in Django's ``default`` database and
  ``@DBOS.transaction`` runs on Django's own connection (``DjangoDatasource``).
- DBOS launches only in processes that serve: the web server through
  ``dbos.contrib.django.wsgi``/``asgi``'s ``get_*_application()``, and
  ``manage.py dbos_worker``. ``launch()`` does it by hand (in tests, say).
- ``manage.py dbos_migrate``, ``dbos_workflow`` and ``dbos_worker``.

Importing this package starts nothing and reads no settings.
"""

from __future__ import annotations

from .datasource import DjangoDatasource
from .launching import import_workflow_modules, launch

__all__ = ["DjangoDatasource", "import_workflow_modules", "launch"]
