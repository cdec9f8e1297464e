"""The README's table of admin-server endpoints is the server's list of routes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Set, Tuple

from dbos._ops.admin_server import ROUTES

README = Path(__file__).resolve().parents[2] / "README.md"
# One row of the table: | METHOD | `path` | ...
ROW = re.compile(r"^\| (GET|POST) \| `([^`]+)` \|", re.MULTILINE)


def documented() -> Set[Tuple[str, str]]:
    section = README.read_text(encoding="utf-8").split("### Over HTTP: the admin server", 1)[1]
    section = section.split("\n## ", 1)[0]
    return set(ROW.findall(section))


def served() -> Set[Tuple[str, str]]:
    return {(r.method, r.pattern.pattern.strip("^$").replace("(?P<id>[^/]+)", "{id}")) for r in ROUTES}


def test_every_route_is_in_the_readme_table_and_nothing_else() -> None:
    assert documented() == served()


def test_every_endpoint_of_dbos_transact_2_31_is_served() -> None:
    assert served() >= {
        ("GET", "/dbos-healthz"), ("GET", "/deactivate"), ("GET", "/conductor"),
        ("GET", "/dbos-workflow-queues-metadata"), ("POST", "/dbos-workflow-recovery"),
        ("POST", "/workflows"), ("POST", "/queues"), ("GET", "/workflows/{id}"),
        ("GET", "/workflows/{id}/steps"), ("POST", "/workflows/{id}/cancel"),
        ("POST", "/workflows/{id}/resume"), ("POST", "/workflows/{id}/restart"),
        ("POST", "/workflows/{id}/fork"), ("POST", "/dbos-garbage-collect"),
        ("POST", "/dbos-global-timeout"),
    }
