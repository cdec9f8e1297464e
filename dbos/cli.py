"""The ``dbos`` command line: ``dbos migrate`` and ``dbos reset``.

Database URLs come from ``--sys-db-url``/``--db-url``, else from the
configuration file in the working directory. Errors print one clear line to
standard error and exit with status 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from .config import DBOSConfig, config_from_yaml, find_config_file, load_config_file, resolve_urls
from .error import DBOSException
from .package import package_version
from .schema import run_dbos_database_migrations
from .sysdb import DatabaseURL, SystemDatabase
from .sysdb.url import URLError


class CLIError(Exception):
    """A problem the user must fix; printed without a traceback."""


@dataclass
class Target:
    system_url: DatabaseURL
    app_url: Optional[DatabaseURL]
    schema: str
    migrate_commands: List[str]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dbos", description="Manage the system database of a DBOS application."
    )
    parser.add_argument("--version", action="version", version=f"DBOS CLI version: {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    migrate = commands.add_parser(
        "migrate",
        help="create the system database if missing and apply pending migrations",
        description="Create the system database if missing, apply pending migrations, "
        "then run the config file's database.migrate commands in order.",
    )
    _database_options(migrate)
    migrate.add_argument(
        "-r", "--app-role", help="PostgreSQL role to grant access to the system tables"
    )

    reset = commands.add_parser(
        "reset",
        help="delete the system database and everything recorded in it",
        description="Drop the system database (or delete the SQLite file). Asks first.",
    )
    _database_options(reset)
    reset.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    return parser


def _database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-s", "--sys-db-url", help="system database URL (default: from the config file)")
    parser.add_argument("-D", "--db-url", help="application database URL")
    parser.add_argument("--schema", help="PostgreSQL schema of the system tables (default: dbos)")
    parser.add_argument("--config", help="configuration file (default: dbos_config.yaml here)")


def resolve_target(args: argparse.Namespace) -> Target:
    """Where the command acts, from options first and the config file second."""
    data: Dict[str, Any] = {}
    if args.config or find_config_file():
        data = load_config_file(args.config, silent=True)
    config: DBOSConfig = config_from_yaml(data) if data else DBOSConfig()
    if args.sys_db_url:
        config["system_database_url"] = args.sys_db_url
    if args.db_url:
        config["application_database_url"] = args.db_url
    if not config.get("name") and not config.get("system_database_url") and not args.db_url:
        raise CLIError(
            "Missing database URL: pass --sys-db-url, or run where dbos_config.yaml is"
        )
    config.setdefault("name", "dbos")
    system_url, app_url = resolve_urls(config)
    schema = args.schema or config.get("dbos_system_schema") or "dbos"
    commands = list(data.get("database", {}).get("migrate", []))
    return Target(system_url, app_url, schema, commands)


def cmd_migrate(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    applied = run_dbos_database_migrations(
        target.system_url.render(), schema=target.schema, application_role=args.app_role
    )
    if applied:
        print(f"Migrated the system database at {target.system_url} to version {applied[-1]}")
    else:
        print(f"The system database at {target.system_url} is up to date")
    return run_migrate_commands(target.migrate_commands)


def run_migrate_commands(commands: Sequence[str]) -> int:
    """Run each command through the shell, in order, stopping at the first failure."""
    for command in commands:
        print(f"Running: {command}", flush=True)
        result = subprocess.run(command, shell=True)
        if result.returncode != 0:
            print(
                f"dbos migrate: command failed with exit status {result.returncode}: {command}",
                file=sys.stderr,
            )
            return result.returncode
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    if not args.yes and not _confirm(
        f"This deletes the system database at {target.system_url} and every workflow "
        "recorded in it. Continue? [y/N] "
    ):
        print("Reset cancelled.")
        return 1
    sysdb = SystemDatabase(target.system_url, schema=target.schema, pool_size=1)
    sysdb.drop()
    print(f"Deleted the system database at {target.system_url}")
    return 0


def _confirm(prompt: str) -> bool:
    try:
        answer = input(prompt)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


COMMANDS = {"migrate": cmd_migrate, "reset": cmd_reset}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (CLIError, DBOSException, URLError) as exc:
        print(f"dbos {args.command}: {one_line(str(exc))}", file=sys.stderr)
        return 1


def one_line(message: str) -> str:
    """``message`` on one line: drivers put hints on lines of their own."""
    return " ".join(message.split())
