"""The structure ARCHITECTURE.md describes, checked: layers, sizes, the public namespace.

Imports are read from the source (every one counts, inside functions and
under TYPE_CHECKING too), so a new import that climbs a layer or closes a
circle fails here, not in a reader's head.
"""

from __future__ import annotations

import ast
import configparser
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import dbos
from dbos import DBOS, DBOSClient

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "dbos"

# The layers, bottom first: a module imports only from its own layer and
# those below. Each module belongs to the layer of its longest prefix.
LAYERS: List[Tuple[str, Tuple[str, ...]]] = [
    ("base", ("dbos.error", "dbos._error", "dbos._clock", "dbos._status", "dbos._serialization",
              "dbos._portable_json", "dbos._logger", "dbos._versions", "dbos._schema_check")),
    ("storage", ("dbos._sysdb",)),
    ("application database", ("dbos._datasource", "dbos.contrib.sqlalchemy", "dbos.contrib.sqlalchemy_async",
                              "dbos.contrib.django.datasource")),
    ("configuration", ("dbos._config", "dbos._telemetry")),
    ("engine", ("dbos._engine", "dbos.contrib.otel")),
    ("queues", ("dbos._queues",)),
    ("operations", ("dbos._ops",)),
    ("runtime", ("dbos._runtime",)),
    ("HTTP glue", ("dbos.contrib._http", "dbos.contrib.fastapi", "dbos.contrib.flask")),
    ("facade", ("dbos._facade",)),
    ("public API", ("dbos", "dbos.__main__")),
    ("Django glue", ("dbos.contrib",)),
]
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 40


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(module: str, is_package: bool, tree: ast.AST, known: Set[str]) -> Iterator[str]:
    """What ``module`` imports. ``from package import name`` imports the
    package itself only when a name is not a submodule (``from dbos import
    DBOS`` depends on the public API; ``from .. import _runtime`` does not)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = module.split(".") if is_package else module.split(".")[:-1]
            if node.level:
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{alias.name}" for alias in node.names]
            yield from names
            if any(name not in known for name in names):
                yield prefix


def import_graph() -> Dict[str, Set[str]]:
    """module -> the dbos modules it imports, the package ``dbos`` included:
    it is the public API, above all else but the Django glue."""
    found = modules()
    graph: Dict[str, Set[str]] = {}
    for module, path in found.items():
        tree = ast.parse(path.read_text())
        targets = set(imported(module, path.name == "__init__.py", tree, set(found)))
        # A module's own packages are initialised before it, whatever it imports.
        own_packages = {module.rsplit(".", i)[0] for i in range(1, module.count(".") + 1)} - {"dbos"}
        graph[module] = {t for t in targets if t in found and t != module and t not in own_packages}
    return graph


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS and ARCHITECTURE.md"
    return rank


def circles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_circles() -> None:
    assert circles(import_graph()) == []


def test_imports_go_down_the_layers() -> None:
    climbs = [f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
              for module, targets in import_graph().items() for target in sorted(targets)
              if layer_of(target) > layer_of(module)]
    assert climbs == []


def test_modules_and_functions_stay_small() -> None:
    too_long = []
    for module, path in modules().items():
        source = path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{module}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                length = (node.end_lineno or node.lineno) - first + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{module}.{node.name}: {length} lines")
    assert too_long == []


def test_every_package_is_installed() -> None:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    packages = {module_name(p.parent / "__init__.py") for p in PACKAGE.rglob("__init__.py")}
    assert packages <= listed


def test_the_public_namespace_is_exactly_all() -> None:
    # A fresh interpreter: other tests import submodules, which Python then
    # sets as attributes of the package.
    script = ("import dbos; print(' '.join(sorted(n for n in vars(dbos) if not n.startswith('_'))))")
    names = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           cwd=REPO).stdout.split()
    lazy = {"AsyncSQLAlchemyDatasource", "SQLAlchemyDatasource"}  # imported on first use: SQLAlchemy is optional
    assert set(names) == set(dbos.__all__) - lazy
    assert all(hasattr(dbos, name) for name in dbos.__all__)


def public_members(cls: type) -> Iterator[Tuple[str, object]]:
    seen: Set[str] = set()
    for klass in cls.__mro__[:-1]:
        for name, member in vars(klass).items():
            if (not name.startswith("_") or name == "__init__") and name not in seen:
                seen.add(name)
                yield name, member


def test_every_public_member_of_dbos_and_the_client_says_what_it_does() -> None:
    undocumented = []
    for cls in (DBOS, DBOSClient):
        for name, member in public_members(cls):
            function = getattr(member, "__func__", member)
            function = getattr(function, "getter", function)  # a class property
            if callable(function) and not inspect.getdoc(function):
                undocumented.append(f"{cls.__name__}.{name}")
    assert undocumented == []
