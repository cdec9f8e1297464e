"""``manage.py dbos_workflow list|get|steps|cancel|resume|fork``.

``dbos workflow`` for a Django project: the same options, filters and output
(tables for people, ``--json`` for programs: the JSON DBOS Transact's
``dbos workflow`` prints), on the system database
``settings.DBOS`` names (by default Django's own), decoding recorded values
with the project's serializer. Launches nothing.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dbos._ops import cli_output as out
from dbos._ops.cli import CLIError, list_filters, list_options, one_line
from dbos._ops.management import Management
from dbos._serialization import Codec
from dbos._sysdb import SystemDatabase, latest_version
from dbos.contrib.django.conf import dbos_config
from dbos.error import DBOSException

Action = Callable[[Management, argparse.Namespace], str]


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no type hints
    help = (
        "List, inspect, cancel, resume and fork the workflows recorded in DBOS's "
        "system database (the one settings.DBOS names). Launches nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        # The filters are `dbos workflow list`'s, so both commands take the same options.
        list_options(_action(actions, "list", "list recorded workflows, oldest first", workflow_id=False))
        _action(actions, "get", "show a workflow's status, inputs and output")
        _action(actions, "steps", "list the steps a workflow recorded")
        _action(actions, "cancel", "cancel a workflow that has not finished")
        _action(actions, "resume",
                "enqueue a cancelled or unfinished workflow again; it continues after its last recorded step")
        fork = _action(actions, "fork",
                       "start a new workflow that reuses the recorded steps before --step and runs the rest")
        fork.add_argument("-S", "--step", type=int, default=1, help="first step to run again (default: 1)")
        fork.add_argument("-f", "--forked-workflow-id", help="ID of the new workflow (default: a random UUID)")
        fork.add_argument("-v", "--application-version", help="application version to run the new workflow")
        fork.add_argument("-q", "--queue-name", help="queue of the new workflow (default: the internal queue)")

    def handle(self, *args: Any, **options: Any) -> None:
        namespace = argparse.Namespace(**options)
        action = ACTIONS[namespace.action]
        try:
            with management() as ops:
                text = action(ops, namespace)
        except (CLIError, DBOSException) as exc:
            raise CommandError(one_line(str(exc))) from exc
        self.stdout.write(text)


def _action(actions: Any, name: str, summary: str, *, workflow_id: bool = True) -> CommandParser:
    parser: CommandParser = actions.add_parser(
        name, help=summary, description=summary[0].upper() + summary[1:] + "."
    )
    if workflow_id:
        parser.add_argument("workflow_id", metavar="WORKFLOW_ID")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


@contextmanager
def management() -> Iterator[Management]:
    """Management of the project's system database; it must exist and be migrated."""
    config = dbos_config()
    sysdb = SystemDatabase(
        str(config.get("system_database_url")),
        schema=config.get("dbos_system_schema") or "dbos",
        pool_size=2,
    )
    try:
        # Creating tables is left to dbos_migrate (or launch), run on purpose.
        if sysdb.schema_version() < latest_version():
            raise CLIError(
                f"DBOS's system tables at {sysdb.url} are missing or out of date: "
                "run `python manage.py dbos_migrate` first"
            )
        # Every application's workflows, like `dbos workflow`.
        yield Management(sysdb, Codec.of(config.get("serializer")), app_name=None)
    finally:
        sysdb.close()


# ----------------------------------------------------------------------
# The actions: each returns what to print
# ----------------------------------------------------------------------


def do_list(ops: Management, args: argparse.Namespace) -> str:
    statuses = ops.list_workflows(list_filters(args))
    return out.statuses_transact_json(statuses) if args.json else out.status_table(statuses)


def do_get(ops: Management, args: argparse.Namespace) -> str:
    return _status(ops, args.workflow_id, args.json)


def do_steps(ops: Management, args: argparse.Namespace) -> str:
    ops.require(args.workflow_id)
    steps = ops.list_workflow_steps(args.workflow_id)
    return out.transact_json(steps) if args.json else out.steps_table(steps)


def do_cancel(ops: Management, args: argparse.Namespace) -> str:
    ops.require(args.workflow_id)
    done = ops.cancel([args.workflow_id])
    return _report(ops, args, bool(done), "Cancelled workflow {id}",
                   "Workflow {id} already finished with status {status}; nothing to cancel")


def do_resume(ops: Management, args: argparse.Namespace) -> str:
    done = ops.resume([args.workflow_id])
    return _report(ops, args, bool(done), "Resumed workflow {id}: it is enqueued to continue",
                   "Workflow {id} already finished with status {status}; nothing to resume")


def do_fork(ops: Management, args: argparse.Namespace) -> str:
    new_id = ops.fork(
        args.workflow_id, args.step, new_workflow_id=args.forked_workflow_id,
        application_version=args.application_version, queue_name=args.queue_name,
    )
    if args.json:
        return _status(ops, new_id, True)
    return f"Forked workflow {args.workflow_id} from step {args.step} as workflow {new_id}"


def _status(ops: Management, workflow_id: str, as_json: bool) -> str:
    status = ops.require(workflow_id)
    return out.transact_json(out.transact_status(status)) if as_json else out.status_block(status)


def _report(ops: Management, args: argparse.Namespace, done: bool, did: str, not_done: str) -> str:
    """One line saying what happened to the workflow (its status, with --json)."""
    if args.json:
        return _status(ops, args.workflow_id, True)
    status = ops.require(args.workflow_id)
    return (did if done else not_done).format(id=args.workflow_id, status=status.status)


ACTIONS: Dict[str, Action] = {
    "list": do_list, "get": do_get, "steps": do_steps,
    "cancel": do_cancel, "resume": do_resume, "fork": do_fork,
}
