"""The ``dbos`` command line, with DBOS Transact's commands and options:
``version``, ``start``, ``init``, ``migrate``, ``reset``,
``rename-application``, the ``workflow`` and ``queue`` commands
(``cli_workflows.py``) that inspect and manage recorded workflows, and
``dashboard`` (``cli_dashboard.py``), which serves the dashboard.

Database URLs come from ``--sys-db-url``/``--db-url``, else from the
configuration file in the working directory (``cli_target.py``). A mistake
(an unknown option, a workflow that does not exist, a database that cannot
be reached) prints one line to standard error, never a traceback, and exits
with status 1 (2 for a usage error, as DBOS Transact's).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence

from .._config import find_config_file, load_config_file
from .._serialization import Codec
from .._sysdb import SystemDatabase
from .._sysdb.url import URLError
from .._versions import package_version
from ..error import DBOSException
from . import launcher, migration_sql, starter
from .cli_dashboard import add_dashboard_command
from .cli_output import escaped
from .cli_target import CLIError as CLIError
from .cli_target import database_options, handled_by, resolve_target
from .cli_target import require_migrated as require_migrated
from .cli_workflows import add_queue_commands, add_workflow_commands
from .cli_workflows import list_filters as list_filters
from .cli_workflows import list_options as list_options
from .management import RENAME_BATCH_SIZE, Management
from .migrate import run_dbos_database_migrations

USAGE_ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line naming the command and its help."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="dbos", description="Run and operate a DBOS application.")
    parser.add_argument("--version", action="version", version=version_line())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    handled_by(commands.add_parser("version", help="print the version of this DBOS and exit",
                                   description="Print the version of this DBOS."), cmd_version)
    add_start_command(commands)
    add_init_command(commands)
    add_migrate_command(commands)
    add_reset_command(commands)
    add_rename_command(commands)
    add_workflow_commands(commands)
    add_dashboard_command(commands)
    add_queue_commands(commands.add_parser(
        "queue", help="list queued workflows", description="Inspect workflow queues."))
    return parser


def version_line() -> str:
    return f"DBOS CLI version: {package_version()}"


def add_start_command(commands: Any) -> None:
    start = commands.add_parser(
        "start", help="run the start commands of dbos_config.yaml",
        description="Run each runtimeConfig.start command of the configuration file, in order, "
        "in a process group of its own; SIGINT and SIGTERM are passed on to it, and the exit "
        "status is the command's.")
    start.add_argument("--config", help="configuration file (default: dbos_config.yaml here)")
    handled_by(start, cmd_start)


def add_init_command(commands: Any) -> None:
    names = ", ".join(starter.bundled_templates())
    init = commands.add_parser(
        "init", help="create a new DBOS app here from a template",
        description=f"Create a new DBOS app in the working directory from a bundled template ({names}). "
        "Existing files are kept.")
    init.add_argument("project_name", metavar="PROJECT_NAME", nargs="?",
                      help="the app's name (default: this folder's name)")
    init.add_argument("-t", "--template", help=f"template to use (default: {starter.DEFAULT_TEMPLATE})")
    init.add_argument("-c", "--config", action="store_true", help="only write dbos-config.yaml")
    handled_by(init, cmd_init)


def add_migrate_command(commands: Any) -> None:
    migrate = commands.add_parser(
        "migrate",
        help="create the system database if missing and apply pending migrations",
        description="Create the system database if missing, apply pending migrations, "
        "then run the config file's database.migrate commands in order.",
    )
    database_options(migrate)
    migrate.add_argument(
        "-r", "--app-role", help="PostgreSQL role to grant access to the system tables"
    )
    printed = migrate.add_mutually_exclusive_group()
    printed.add_argument("--print-migrations", metavar="all|NUMBER",
                         help="print the SQL of every migration (all, for a new database) or of those "
                         "from NUMBER on, instead of running them (PostgreSQL; connects to nothing)")
    printed.add_argument("--print-user-role", action="store_true",
                         help="print the SQL granting --app-role access to the system tables, "
                         "instead of running it")
    handled_by(migrate, cmd_migrate)


def add_reset_command(commands: Any) -> None:
    reset = commands.add_parser(
        "reset",
        help="delete the system database and everything recorded in it",
        description="Drop the system database (or delete the SQLite file). Asks first.",
    )
    database_options(reset)
    reset.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    handled_by(reset, cmd_reset)


def add_rename_command(commands: Any) -> None:
    rename = commands.add_parser(
        "rename-application", help="give a renamed application the rows of its old name",
        description="Re-own the system database's rows after an application is renamed; "
        "prints how many rows of each kind moved, as JSON. Stop the application first.")
    database_options(rename)
    rename.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    rename.add_argument("-f", "--from", dest="old_name",
                        help="the application's previous name (omit to only adopt unclaimed rows)")
    rename.add_argument("-t", "--to", dest="new_name", required=True,
                        help="the application that ends up owning the rows")
    rename.add_argument("--adopt-unclaimed-rows", action="store_true",
                        help="also take rows no application owns")
    rename.add_argument("--batch-size", type=int, default=RENAME_BATCH_SIZE,
                        help=f"workflows and steps moved per transaction (default: {RENAME_BATCH_SIZE})")
    handled_by(rename, cmd_rename)


# ----------------------------------------------------------------------
# The commands
# ----------------------------------------------------------------------


def cmd_version(args: argparse.Namespace) -> int:
    print(version_line())
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    if not args.config and find_config_file() is None:
        raise CLIError(f"No dbos_config.yaml or dbos-config.yaml in {os.getcwd()}: "
                       "run `dbos start` in the app's folder, or pass --config")
    commands = launcher.start_commands(load_config_file(args.config, silent=True))
    if not commands:
        raise CLIError("The configuration file has no runtimeConfig.start commands: "
                       "list the commands that start the app there")
    print("Executing start commands from the configuration file", flush=True)
    return launcher.run_start_commands(commands)


def cmd_init(args: argparse.Namespace) -> int:
    template = starter.template_dir(args.template)
    here = Path.cwd()
    name = starter.project_name(args.project_name, here)
    written = starter.init_project(name, template, here, config_only=args.config)
    for path in written:
        print(f"Created {path.relative_to(here)}")
    if not args.config:
        print(f"Start the app with `dbos start` (it runs python3 -m {name.replace('-', '_')}.main)")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    if args.print_migrations is not None or args.print_user_role:
        return print_migration_sql(args)
    # The file's database.migrate commands run even when a URL is given, as in DBOS Transact.
    data = load_config_file(args.config, silent=True) if args.config or find_config_file() else {}
    target = resolve_target(args, data)
    applied = run_dbos_database_migrations(
        target.system_url.render(), schema=target.schema, application_role=args.app_role,
        app_database_url=target.app_url.render() if target.app_url is not None else None,
    )
    if applied:
        print(f"Migrated the system database at {target.system_url} to version {applied[-1]}")
    else:
        print(f"The system database at {target.system_url} is up to date")
    return run_migrate_commands(target.migrate_commands)


def print_migration_sql(args: argparse.Namespace) -> int:
    if args.print_user_role and not args.app_role:
        raise CLIError("--print-user-role prints the grants of a role: name it with --app-role ROLE")
    try:
        target = resolve_target(args)
        url, schema = target.system_url, target.schema
    except CLIError:  # no URL anywhere: the SQL needs only the schema
        url, schema = None, args.schema or "dbos"
    backend = migration_sql.postgres_backend(url, schema)
    if args.print_user_role:
        print(migration_sql.user_role_sql(backend, args.app_role))
    else:
        print(migration_sql.migrations_sql(backend, args.print_migrations))
    return 0


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
    if not sysdb.exists():
        print(f"There is no system database at {target.system_url}; nothing to delete")
        return 0
    dropped = sysdb.drop()
    print(DROPPED[dropped].format(url=target.system_url, schema=target.schema))
    return 0


DROPPED = {
    "database": "Deleted the system database at {url}",
    "schema": "Dropped the schema {schema} at {url}; the database also holds other data, which was kept",
    "tables": "Dropped the DBOS tables at {url}; the file also holds other tables, which were kept",
}


def cmd_rename(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    moved_from = " and ".join(filter(None, [
        f"the rows of {args.old_name}" if args.old_name else "",
        "the rows no application owns" if args.adopt_unclaimed_rows else ""])) or "no rows"
    if not args.yes and not _confirm(
        f"This gives {moved_from} in the system database at {target.system_url} to "
        f"{args.new_name}. Stop the application being renamed first. Continue? [y/N] "
    ):
        print("Rename cancelled.")
        return 1
    sysdb = SystemDatabase(target.system_url, schema=target.schema, pool_size=1)
    try:
        require_migrated(sysdb)
        moved = Management(sysdb, Codec(), app_name=None).rename_application(
            args.old_name, args.new_name, batch_size=args.batch_size,
            adopt_unclaimed_rows=args.adopt_unclaimed_rows)
    finally:
        sysdb.close()
    print(json.dumps(moved, indent=2))
    return 0


def _confirm(prompt: str) -> bool:
    try:
        answer = input(prompt)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # Named after the command that refused them, not after `dbos`.
        parser.exit(USAGE_ERROR, f"dbos {args.label}: unrecognized arguments: {' '.join(unknown)} "
                    f"(see `dbos {args.label} --help`)\n")
    show_warnings(args.label)
    try:
        status: int = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except (CLIError, DBOSException, URLError) as exc:
        return fail(args.label, one_line(str(exc)))
    except KeyboardInterrupt:
        return fail(args.label, "interrupted", 130)
    except BrokenPipeError:
        # The reader (`| head`) has what it wanted; say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:  # a bug, still reported as one line
        return fail(args.label, f"unexpected error: {type(exc).__name__}: {one_line(str(exc))}")


def fail(label: str, message: str, status: int = 1) -> int:
    # A message may quote an ID or a value: no escape sequence reaches the terminal.
    print(f"dbos {label}: {escaped(message)}", file=sys.stderr)
    return status


def show_warnings(label: str) -> None:
    """Library warnings (e.g. a value that cannot be deserialized) as
    ``dbos <command>: warning: ...`` lines, like the errors."""
    dbos_logger = logging.getLogger("dbos")
    for old in [h for h in dbos_logger.handlers if getattr(h, "_dbos_cli", False)]:
        dbos_logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"dbos {label}: warning: %(message)s"))
    setattr(handler, "_dbos_cli", True)
    dbos_logger.addHandler(handler)
    dbos_logger.propagate = False


def one_line(message: str) -> str:
    """``message`` on one line: drivers put hints on lines of their own."""
    return " ".join(message.split())
