"""Launching DBOS in a Django process: only where requests or queued work are served.

``DBOS.launch()`` migrates the system database, recovers this executor's
pending workflows and starts the queue threads. A Django process should do
that when it is going to serve: the web server (runserver's serving child,
gunicorn/uwsgi/uvicorn workers) builds its application through
``dbos.contrib.django.wsgi``/``asgi``, and ``manage.py dbos_worker`` serves
queues. ``migrate``, ``shell``, ``test`` and the rest only construct
``DBOS`` (in ``AppConfig.ready()``), which touches nothing.
"""

from __future__ import annotations

import os
import threading
from importlib import import_module
from typing import Optional, Sequence

from django.conf import settings
from django.utils.module_loading import autodiscover_modules

from ..._config import DBOSConfig
from ..._facade.dbos import DBOS
from ..._logger import dbos_logger
from .conf import configure, constructed_here, dbos_config

# The module name autodiscovered in every installed app.
WORKFLOWS_MODULE = "workflows"

_lock = threading.Lock()


def launch(*, queues: Optional[Sequence[str]] = None) -> None:
    """Register every workflow, then ``DBOS.launch()``; once per process.

    ``queues``: serve only these queues in this process (``DBOS.listen_queues``).
    Call it after ``django.setup()``; in tests, after the test database exists
    (e.g. in ``setUpClass`` of a ``TransactionTestCase``), and ``DBOS.destroy()``
    before the test database is dropped.
    """
    with _lock:
        _construct(dbos_config())
        import_workflow_modules()
        if queues is not None:
            DBOS.listen_queues(list(queues))
        dbos_logger.info(f"Launching DBOS in process {os.getpid()}")
        DBOS.launch()


def _construct(config: DBOSConfig) -> None:
    """Make sure ``DBOS`` exists, on the system database the settings name now.

    ``ready()`` built it from the settings as they were then; Django's test
    runner has since put the test database in their place, and the system
    tables must follow it there, not land in the development database. An
    instance the project constructed itself is left alone.
    """
    current = DBOS.config
    if current is None:
        configure(config)
        return
    url = "system_database_url"
    if not constructed_here() or current.get(url) == config.get(url):
        return
    dbos_logger.info("Django's database changed since DBOS was constructed (a test database?); "
                     "rebuilding DBOS on it")
    DBOS.destroy()  # keeps the registered functions
    configure(config)


def import_workflow_modules() -> None:
    """Import every module that may declare workflows, before launch.

    Recovery can only resume a workflow whose function is registered, and
    the application version is a hash of all registered workflows: the web
    server and ``dbos_worker`` must register the same set, or neither
    recovers nor dequeues the other's work. So both import each installed
    app's ``workflows`` module and the root URLconf (which imports the views,
    where small apps declare their workflows) before launching.
    """
    autodiscover_modules(WORKFLOWS_MODULE)
    urlconf = getattr(settings, "ROOT_URLCONF", None)
    if urlconf:
        import_module(urlconf)
