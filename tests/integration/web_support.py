"""What the Flask and FastAPI tests share: the example apps, loaded fresh,
their application database, and an independent look at both databases."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator, List, Tuple

from dbos import DBOS, DBOSConfig
from tests.conftest import postgres_url
from tests.probe import drop_database, qualified, query

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(relative: str) -> Iterator[ModuleType]:
    """A new copy of an example module per test (a generator, for a fixture).

    The autouse fixture's ``DBOS.destroy(destroy_registry=True)`` forgets the
    module's decorated functions, and its Peewee proxy stays bound to the last
    test's database, so each test executes the file anew.
    """
    name = f"dbos_example_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Flask finds an app's root path through it
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def new_app_db_url(backend: str, tmp_path: Path) -> str:
    """An application database URL on the backend; DBOS creates the database."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'app.sqlite'}"
    return postgres_url(f"dbos_app_{uuid.uuid4().hex[:12]}")


def drop_app_db(url: str) -> None:
    DBOS.destroy(destroy_registry=True)  # its pool must be closed first
    drop_database(url)


def app_config(sys_db_url: str, app_db_url: str) -> DBOSConfig:
    return DBOSConfig(
        name="greetings-test",
        system_database_url=sys_db_url,
        application_database_url=app_db_url,
        application_datasource="peewee",
    )


def greeting_rows(app_db_url: str) -> List[Tuple[Any, ...]]:
    """(name, message, request_id) of every row the example wrote, oldest first."""
    return [tuple(r) for r in query(app_db_url, "SELECT name, message, request_id FROM greetings ORDER BY id")]


def recorded_status(sys_db_url: str, workflow_id: str) -> Tuple[Any, ...]:
    """(status, name) of the workflow's row in the system database."""
    table = qualified(sys_db_url, "workflow_status")
    rows = query(sys_db_url, f"SELECT status, name FROM {table} WHERE workflow_uuid = %s",
                 (workflow_id,))
    assert len(rows) == 1, f"no workflow_status row for {workflow_id}"
    return tuple(rows[0])


def workflow_count(sys_db_url: str) -> int:
    table = qualified(sys_db_url, "workflow_status")
    return int(query(sys_db_url, f"SELECT COUNT(*) FROM {table}")[0][0])
