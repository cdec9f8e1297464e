"""The Django app: ``INSTALLED_APPS = [..., "dbos.contrib.django"]``."""

from __future__ import annotations

from django.apps import AppConfig


class DBOSAppConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints
    """Constructs ``DBOS`` from ``settings.DBOS`` when Django starts; never launches.

    ``ready()`` runs in every process that sets Django up, ``migrate`` and
    ``shell`` included, and in runserver's autoreloader parent, so it only
    validates the settings and builds the instance: no thread, no database.
    Launching is left to the processes that serve (see ``launching``).
    """

    name = "dbos.contrib.django"
    label = "dbos"
    verbose_name = "DBOS"

    def ready(self) -> None:
        from .conf import configure

        configure()
