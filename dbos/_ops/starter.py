"""``dbos init``: a new app in the working directory, from a template
bundled in the package (``dbos/_templates``).

DBOS Transact's ``dbos init`` also offers templates it downloads from
GitHub; nothing here reaches the internet, so those names get an error
naming the bundled ones. A template is a folder: files ending ``.tmpl``
have ``{{key}}`` placeholders filled in and lose the suffix, the folder
``__package`` becomes the app's Python package, and a file that already
exists is never overwritten.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional

from .._config import default_app_name
from .cli_target import CLIError
from .management import check_app_name

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "_templates"
DEFAULT_TEMPLATE = "dbos-db-starter"
# DBOS Transact fetches these from GitHub.
REMOTE_TEMPLATES = ("dbos-toolbox", "dbos-app-starter", "dbos-cron-starter")
PACKAGE_DIR = "__package"
SUFFIX = ".tmpl"


def bundled_templates() -> List[str]:
    return sorted(p.name for p in TEMPLATES_DIR.iterdir() if p.is_dir() and not p.name.startswith("_"))


def template_dir(name: Optional[str]) -> Path:
    """The folder of template ``name`` (the default when None)."""
    name = name or DEFAULT_TEMPLATE
    if name in bundled_templates():
        return TEMPLATES_DIR / name
    bundled = ", ".join(bundled_templates())
    if name in REMOTE_TEMPLATES:
        raise CLIError(f"Template {name} is downloaded from GitHub by DBOS Transact and is not "
                       f"bundled here; use one of: {bundled}")
    raise CLIError(f"No template named {name}; use one of: {bundled}")


def project_name(given: Optional[str], directory: Path) -> str:
    """The app's name: as given, else asked for on a terminal, else the folder's."""
    name = given
    if name is None:
        name = default_app_name(str(directory))
        if sys.stdin.isatty():
            name = _ask(f"What is your project's name? [{name}] ") or name
    check_app_name("PROJECT_NAME", name)
    return name


def _ask(prompt: str) -> str:
    try:
        return input(prompt).strip()
    except EOFError:
        return ""


def placeholders(name: str, config_only: bool) -> Dict[str, str]:
    package = name.replace("-", "_")
    start = "python3 main.py" if config_only else f"python3 -m {package}.main"
    return {"project_name": name, "package_name": package, "start_command": start}


def init_project(name: str, template: Path, directory: Path, config_only: bool) -> List[Path]:
    """Write the template's files into ``directory``; the files written."""
    values = placeholders(name, config_only)
    sources = [template / "dbos-config.yaml.tmpl"] if config_only else sorted(template.rglob("*"))
    written: List[Path] = []
    for source in sources:
        if source.is_file() and "__pycache__" not in source.parts:
            target = directory / _target_path(source.relative_to(template), values["package_name"])
            if _copy(source, target, values):
                written.append(target)
    return written


def _target_path(relative: Path, package: str) -> Path:
    parts = [package if part == PACKAGE_DIR else part for part in relative.parts]
    if parts[-1].endswith(SUFFIX):
        parts[-1] = parts[-1][: -len(SUFFIX)]
    return Path(*parts)


def _copy(source: Path, target: Path, values: Dict[str, str]) -> bool:
    if target.exists():
        print(f"File {target} already exists, skipping")
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.name.endswith(SUFFIX):
        text = source.read_text()
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        target.write_text(text)
    else:
        shutil.copyfile(source, target)
    return True
