"""The ``dbos`` command line: ``dbos migrate``, ``dbos reset``, and the
``dbos workflow`` and ``dbos queue`` commands that inspect and manage
recorded workflows.

Database URLs come from ``--sys-db-url``/``--db-url``, else from the
configuration file in the working directory. Errors print one clear line to
standard error and exit with status 1.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from .._config import DBOSConfig, config_from_yaml, find_config_file, load_config_file, resolve_urls
from .._serialization import Codec
from .._status import WorkflowStatus
from .._sysdb import DatabaseURL, SystemDatabase, latest_version
from .._sysdb.url import URLError
from .._versions import package_version
from ..error import DBOSException
from . import cli_output as out
from .management import Management
from .migrate import run_dbos_database_migrations

Handler = Callable[[argparse.Namespace], int]


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
    _handled_by(migrate, cmd_migrate)

    reset = commands.add_parser(
        "reset",
        help="delete the system database and everything recorded in it",
        description="Drop the system database (or delete the SQLite file). Asks first.",
    )
    _database_options(reset)
    reset.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    _handled_by(reset, cmd_reset)
    _add_workflow_commands(commands)
    queue = commands.add_parser(
        "queue", help="list queued workflows", description="Inspect workflow queues."
    )
    _add_queue_commands(queue)
    return parser


def _database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-s", "--sys-db-url", help="system database URL (default: from the config file)")
    parser.add_argument("-D", "--db-url", help="application database URL")
    parser.add_argument("--schema", help="PostgreSQL schema of the system tables (default: dbos)")
    parser.add_argument("--config", help="configuration file (default: dbos_config.yaml here)")


def _handled_by(parser: argparse.ArgumentParser, handler: Handler) -> None:
    # The label names the command in error lines: "dbos workflow get: ...".
    parser.set_defaults(handler=handler, label=parser.prog.split(" ", 1)[1])


def _action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], name: str, handler: Handler,
    summary: str, *, workflow_id: bool = True,
) -> argparse.ArgumentParser:
    """A sub-command working on an existing, migrated system database."""
    parser = actions.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")
    if workflow_id:
        parser.add_argument("workflow_id", metavar="WORKFLOW_ID")
    _database_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    _handled_by(parser, handler)
    return parser


def _add_workflow_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    workflow = commands.add_parser(
        "workflow", help="list, inspect, cancel, resume and fork workflows",
        description="Inspect and manage the workflows recorded in the system database.",
    )
    actions = workflow.add_subparsers(dest="action", metavar="ACTION", required=True)
    list_options(_action(actions, "list", cmd_workflow_list, "list recorded workflows, oldest first",
                          workflow_id=False))
    _action(actions, "get", cmd_workflow_get, "show a workflow's status, inputs and output")
    _action(actions, "steps", cmd_workflow_steps, "list the steps a workflow recorded")
    _action(actions, "cancel", cmd_workflow_cancel, "cancel a workflow that has not finished")
    _action(actions, "resume", cmd_workflow_resume,
            "enqueue a cancelled or unfinished workflow again; it continues after its last recorded step")
    _action(actions, "restart", cmd_workflow_restart,
            "run a workflow again from its first step, as a new workflow with the same inputs")
    fork = _action(actions, "fork", cmd_workflow_fork,
                   "start a new workflow that reuses the recorded steps before --step and runs the rest")
    fork.add_argument("-S", "--step", type=int, default=1, help="first step to run again (default: 1)")
    fork.add_argument("-f", "--forked-workflow-id", help="ID of the new workflow (default: a random UUID)")
    fork.add_argument("-v", "--application-version", help="application version to run the new workflow")
    fork.add_argument("-q", "--queue-name", help="queue of the new workflow (default: the internal queue)")
    # DBOS Transact spells it "dbos workflow queue list".
    _add_queue_commands(actions.add_parser(
        "queue", help="list queued workflows (same as `dbos queue`)", description="Inspect workflow queues."))


def _add_queue_commands(queue: argparse.ArgumentParser) -> None:
    actions = queue.add_subparsers(dest="queue_action", metavar="ACTION", required=True)
    summary = "list workflows waiting on, or running from, a queue (ENQUEUED, PENDING or DELAYED)"
    list_options(_action(actions, "list", cmd_queue_list, summary, workflow_id=False))


def list_options(parser: argparse.ArgumentParser) -> None:
    """The filters of ``list``; each ``dest`` is a key of ``Management.list_workflows``."""
    add = parser.add_argument
    add("-l", "--limit", type=int, default=10, help="show at most N workflows (default: 10)")
    add("-o", "--offset", type=int, help="skip the first N matching workflows")
    add("-u", "--user", help="only workflows run by this authenticated user")
    add("-t", "--start-time", metavar="ISO", help="only workflows created at or after this time")
    add("-e", "--end-time", metavar="ISO", help="only workflows created at or before this time")
    add("-S", "--status", type=str.upper, help="only workflows with this status, e.g. PENDING")
    add("-v", "--application-version", dest="app_version", help="only this application version")
    add("-n", "--name", help="only workflows of this function name")
    add("-q", "--queue-name", help="only workflows on this queue")
    add("-a", "--application-name", help="only this application's workflows (default: every application)")
    add("-p", "--workflow-id-prefix", help="only workflows whose ID starts with this text")
    add("-d", "--sort-desc", action="store_true", help="newest first (default: oldest first)")


_FILTERS = ("limit", "offset", "user", "start_time", "end_time", "status", "app_version", "name",
            "queue_name", "application_name", "workflow_id_prefix", "sort_desc")


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
        target.system_url.render(), schema=target.schema, application_role=args.app_role,
        app_database_url=target.app_url.render() if target.app_url is not None else None,
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
    dropped = sysdb.drop()
    print(DROPPED[dropped].format(url=target.system_url, schema=target.schema))
    return 0


DROPPED = {
    "database": "Deleted the system database at {url}",
    "schema": "Dropped the schema {schema} at {url}; the database also holds other data, which was kept",
    "tables": "Dropped the DBOS tables at {url}; the file also holds other tables, which were kept",
}


# ----------------------------------------------------------------------
# dbos workflow and dbos queue
# ----------------------------------------------------------------------


@contextmanager
def management(args: argparse.Namespace) -> Iterator[Management]:
    """Management of the system database the options name; it must exist and be migrated."""
    target = resolve_target(args)
    sysdb = SystemDatabase(target.system_url, schema=target.schema, pool_size=2)
    try:
        require_migrated(sysdb)
        # Every application's workflows: the command line belongs to none of them.
        yield Management(sysdb, Codec(), app_name=None)
    finally:
        sysdb.close()


def require_migrated(sysdb: SystemDatabase) -> None:
    # Creating or upgrading the database is left to `dbos migrate`, run on
    # purpose: a mistyped URL must not leave a new empty database behind.
    if not sysdb.exists():
        raise CLIError(f"The system database at {sysdb.url} does not exist: "
                       "run `dbos migrate` to create it")
    current, required = sysdb.schema_version(), latest_version()
    if current < required:
        raise CLIError(f"The system database at {sysdb.url} is at schema version {current}, "
                       f"but this DBOS needs version {required}: run `dbos migrate` to upgrade it")


def list_filters(args: argparse.Namespace) -> Dict[str, Any]:
    filters = {key: getattr(args, key) for key in _FILTERS if getattr(args, key) is not None}
    # Inputs and outputs can be large, and the listing never shows them.
    return {**filters, "load_input": False, "load_output": False}


def print_statuses(statuses: List[WorkflowStatus], as_json: bool) -> None:
    print(out.statuses_json(statuses, with_values=False) if as_json else out.status_table(statuses))


def print_status(status: WorkflowStatus, as_json: bool) -> None:
    print(out.to_json(out.status_dict(status, with_values=True)) if as_json else out.status_block(status))


def cmd_workflow_list(args: argparse.Namespace) -> int:
    with management(args) as ops:
        statuses = ops.list_workflows(list_filters(args))
    print_statuses(statuses, args.json)
    return 0


def cmd_queue_list(args: argparse.Namespace) -> int:
    with management(args) as ops:
        statuses = ops.list_queued_workflows(list_filters(args))
    print_statuses(statuses, args.json)
    return 0


def cmd_workflow_get(args: argparse.Namespace) -> int:
    with management(args) as ops:
        status = ops.require(args.workflow_id)
    print_status(status, args.json)
    return 0


def cmd_workflow_steps(args: argparse.Namespace) -> int:
    with management(args) as ops:
        ops.require(args.workflow_id)
        steps = ops.list_workflow_steps(args.workflow_id)
    print(out.to_json(steps) if args.json else out.steps_table(steps))
    return 0


def cmd_workflow_cancel(args: argparse.Namespace) -> int:
    with management(args) as ops:
        ops.require(args.workflow_id)
        done = ops.cancel([args.workflow_id])
        return report(ops, args, done, "Cancelled workflow {id}",
                      "Workflow {id} already finished with status {status}; nothing to cancel")


def cmd_workflow_resume(args: argparse.Namespace) -> int:
    with management(args) as ops:
        done = ops.resume([args.workflow_id])
        return report(ops, args, done, "Resumed workflow {id}: it is enqueued to continue",
                      "Workflow {id} already finished with status {status}; nothing to resume")


def report(ops: Management, args: argparse.Namespace, done: List[str], did: str, not_done: str) -> int:
    """One line saying what happened to the workflow (its status, with --json)."""
    status = ops.require(args.workflow_id)
    if args.json:
        print_status(status, True)
    else:
        print((did if done else not_done).format(id=args.workflow_id, status=status.status))
    return 0


def cmd_workflow_restart(args: argparse.Namespace) -> int:
    with management(args) as ops:
        new_id = ops.fork(args.workflow_id, 1)
        return report_fork(ops, args, f"Restarted workflow {args.workflow_id} as workflow {new_id}", new_id)


def cmd_workflow_fork(args: argparse.Namespace) -> int:
    with management(args) as ops:
        new_id = ops.fork(
            args.workflow_id, args.step, new_workflow_id=args.forked_workflow_id,
            application_version=args.application_version, queue_name=args.queue_name,
        )
        message = f"Forked workflow {args.workflow_id} from step {args.step} as workflow {new_id}"
        return report_fork(ops, args, message, new_id)


def report_fork(ops: Management, args: argparse.Namespace, message: str, new_id: str) -> int:
    if args.json:
        print_status(ops.require(new_id), True)
    else:
        print(message)
    return 0


def _confirm(prompt: str) -> bool:
    try:
        answer = input(prompt)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    show_warnings(args.label)
    try:
        return handler(args)
    except (CLIError, DBOSException, URLError) as exc:
        print(f"dbos {args.label}: {one_line(str(exc))}", file=sys.stderr)
        return 1


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
