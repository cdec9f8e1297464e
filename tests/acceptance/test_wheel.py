"""The built wheel, installed into a fresh virtualenv, works on its own.

The wheel is built from a copy of the repository so the build leaves no
``build/`` or ``*.egg-info`` behind in the working tree. Dependencies come
from the package index. The test does not depend on the backend, so it runs
only with ``--backend sqlite``.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from contextlib import closing
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[2]

# What a copy of the repository needs to build; the rest is local state.
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", ".tox", "build", "dist", "*.egg-info", "__pycache__",
    ".mypy_cache", ".pytest_cache", "*.sqlite", "*.sqlite-*",
)

pytestmark = pytest.mark.acceptance


class Installed(NamedTuple):
    wheel: Path
    venv: Path
    package_dir: Path


def clean_env() -> Dict[str, str]:
    """The environment without anything that would import the working tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def run(command: List[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


def repo_junk() -> List[str]:
    """Build output in the working tree (an editable install may have made some)."""
    names = (p.name for p in REPO.iterdir())
    return sorted(n for n in names if n in ("build", "dist") or n.endswith(".egg-info"))


@pytest.fixture(scope="module")
def installed(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Installed]:
    """The wheel, built from a copy of the repository and installed in a new venv."""
    if request.config.getoption("--backend") != "sqlite":
        pytest.skip("the wheel does not depend on the backend; it is tested with --backend sqlite")
    base = tmp_path_factory.mktemp("wheel")
    junk_before = repo_junk()
    shutil.copytree(REPO, base / "source", ignore=NOT_COPIED)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(base / "dist")]
    run([*pip_wheel, str(base / "source")], base)
    assert repo_junk() == junk_before
    wheels = list((base / "dist").glob("dbos-*.whl"))
    assert len(wheels) == 1, wheels
    venv = base / "venv"
    python = str(venv / "bin" / "python")
    run([sys.executable, "-m", "venv", str(venv)], base)
    run([python, "-m", "pip", "install", str(wheels[0])], base)
    located = run([python, "-c", "import dbos, os; print(os.path.dirname(dbos.__file__))"], base)
    yield Installed(wheels[0], venv, Path(located.stdout.strip()))


def shipped_migration_versions(migrations_dir: Path) -> List[int]:
    matches = (re.match(r"(\d{4})_", p.name) for p in migrations_dir.glob("*.sql"))
    return sorted({int(m[1]) for m in matches if m})


def test_wheel_holds_the_package_data(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    expected = ("__init__.py", "config.schema.json", "py.typed", "_sysdb/backend.py",
                *(f"_static/dashboard/{name}" for name in ("index.html", "app.js", "style.css")))
    assert {f"dbos/{name}" for name in expected} <= names
    repo_sql = sorted(p.name for p in (REPO / "migrations").glob("*.sql"))
    assert repo_sql and {f"dbos/_migrations/{name}" for name in repo_sql} <= names
    assert not any(name.startswith(("tests/", "examples/")) for name in names)


def test_installed_package_is_the_wheel_not_the_working_tree(installed: Installed) -> None:
    package = installed.package_dir
    assert package.is_relative_to(installed.venv), package
    assert (package / "config.schema.json").is_file()
    # The dashboard's page is read from the installed package, as dashboard_api.static_file does.
    assert "X-DBOS-Request" in (package / "_static" / "dashboard" / "app.js").read_text(encoding="utf-8")
    installed_sql = sorted(p.name for p in (package / "_migrations").glob("*.sql"))
    assert installed_sql == sorted(p.name for p in (REPO / "migrations").glob("*.sql"))


def test_installed_dbos_migrate_creates_the_system_database(
    installed: Installed, tmp_path: Path
) -> None:
    database = tmp_path / "new.sqlite"
    dbos_script = str(installed.venv / "bin" / "dbos")
    result = run([dbos_script, "migrate", "-s", f"sqlite:///{database}"], tmp_path)
    assert "Migrated" in result.stdout
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {row[0] for row in rows}
        (version,) = conn.execute("SELECT MAX(version) FROM dbos_migrations").fetchone()
    expected = {"workflow_status", "operation_outputs", "application_versions", "dbos_migrations"}
    assert expected <= tables
    versions = shipped_migration_versions(installed.package_dir / "_migrations")
    assert versions == list(range(1, len(versions) + 1))
    assert version == len(versions)


def test_installed_package_constructs_and_launches(installed: Installed, tmp_path: Path) -> None:
    script = (
        "import dbos\n"
        "dbos.DBOS(config={'name': 'wheel-app'})\n"
        "dbos.DBOS.launch()\n"
        "print(dbos.DBOS.get_latest_application_version().application_name)\n"
        "dbos.DBOS.destroy()\n"
    )
    result = run([str(installed.venv / "bin" / "python"), "-c", script], tmp_path)
    assert result.stdout.strip().splitlines()[-1] == "wheel-app"
    assert (tmp_path / "wheel_app.sqlite").is_file()
