"""``dbos workflow list|get|steps|cancel|resume|restart|fork|delete`` and
``dbos queue list`` (also spelled ``dbos workflow queue list``, as DBOS
Transact does).

Output is DBOS Transact's: one line of JSON for ``list``, ``get``,
``steps``, ``fork`` and ``queue list``, field for field, so scripts written
for its CLI parse ours. ``--table`` prints the same for people, escaped and
with capped columns. ``cancel``, ``resume`` and ``delete``, which print
nothing in DBOS Transact, say in one line what they did (``--json``: the
workflow's status).
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from .._status import WorkflowStatus
from . import cli_output as out
from .cli_target import Handler, database_options, handled_by, management
from .management import Management


def _action(actions: Any, name: str, handler: Handler, summary: str, *,
            workflow_id: bool = True) -> argparse.ArgumentParser:
    """A sub-command working on an existing, migrated system database."""
    parser: argparse.ArgumentParser = actions.add_parser(
        name, help=summary, description=summary[0].upper() + summary[1:] + ".")
    if workflow_id:
        parser.add_argument("workflow_id", metavar="WORKFLOW_ID")
    database_options(parser)
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print JSON (the default where DBOS Transact does)")
    shape.add_argument("--table", action="store_true", help="print a table (or key: value lines) for people")
    handled_by(parser, handler)
    return parser


def add_workflow_commands(commands: Any) -> None:
    workflow = commands.add_parser(
        "workflow", help="list, inspect, cancel, resume, fork and delete workflows",
        description="Inspect and manage the workflows recorded in the system database.",
    )
    actions = workflow.add_subparsers(dest="action", metavar="ACTION", required=True)
    list_options(_action(actions, "list", cmd_list, "list recorded workflows, oldest first",
                         workflow_id=False))
    _action(actions, "get", cmd_get, "show a workflow's status, inputs and output")
    _action(actions, "steps", cmd_steps, "list the steps a workflow recorded")
    _action(actions, "cancel", cmd_cancel, "cancel a workflow that has not finished")
    _action(actions, "resume", cmd_resume,
            "enqueue a cancelled or unfinished workflow again; it continues after its last recorded step")
    _action(actions, "restart", cmd_restart,
            "run a workflow again from its first step, as a new workflow with the same inputs")
    fork_options(_action(actions, "fork", cmd_fork,
                         "start a new workflow that reuses the recorded steps before --step and runs the rest"))
    delete = _action(actions, "delete", cmd_delete, "delete a workflow and everything it recorded")
    delete.add_argument("--delete-children", action="store_true",
                        help="also delete the workflows it started, and theirs")
    add_queue_commands(actions.add_parser(
        "queue", help="list queued workflows (same as `dbos queue`)", description="Inspect workflow queues."))


def fork_options(fork: argparse.ArgumentParser) -> None:
    fork.add_argument("-S", "--step", type=int, default=1, help="first step to run again (default: 1)")
    fork.add_argument("-f", "--forked-workflow-id", help="ID of the new workflow (default: a random UUID)")
    fork.add_argument("-v", "--application-version", help="application version to run the new workflow")
    fork.add_argument("-q", "--queue-name", help="queue of the new workflow (default: the internal queue)")


def add_queue_commands(queue: argparse.ArgumentParser) -> None:
    actions = queue.add_subparsers(dest="queue_action", metavar="ACTION", required=True)
    summary = "list workflows waiting on, or running from, a queue (ENQUEUED, PENDING or DELAYED)"
    list_options(_action(actions, "list", cmd_queue_list, summary, workflow_id=False), default_limit=None)


def list_options(parser: argparse.ArgumentParser, default_limit: Any = 10) -> None:
    """The filters of ``list``; each ``dest`` is a key of ``Management.list_workflows``."""
    add = parser.add_argument
    shown = f"default: {default_limit}" if default_limit is not None else "default: all"
    add("-l", "--limit", type=int, default=default_limit, help=f"show at most N workflows ({shown})")
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


def list_filters(args: argparse.Namespace) -> Dict[str, Any]:
    filters = {key: getattr(args, key) for key in _FILTERS if getattr(args, key) is not None}
    # A table never shows inputs and outputs; JSON has them, as DBOS Transact's.
    with_values = not getattr(args, "table", False)
    return {**filters, "load_input": with_values, "load_output": with_values}


# ----------------------------------------------------------------------
# Printing
# ----------------------------------------------------------------------


def print_statuses(statuses: List[WorkflowStatus], args: argparse.Namespace) -> None:
    print(out.status_table(statuses) if args.table else out.statuses_transact_json(statuses))


def print_status(status: WorkflowStatus, args: argparse.Namespace) -> None:
    print(out.status_block(status) if args.table else out.transact_json(out.transact_status(status)))


def report(ops: Management, args: argparse.Namespace, done: List[str], did: str, not_done: str) -> int:
    """One line saying what happened to the workflow (its status, with --json)."""
    status = ops.require(args.workflow_id)
    if args.json:
        print_status(status, args)
    else:
        print(out.escaped((did if done else not_done).format(id=args.workflow_id, status=status.status)))
    return 0


# ----------------------------------------------------------------------
# The commands
# ----------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    with management(args) as ops:
        statuses = ops.list_workflows(list_filters(args))
    print_statuses(statuses, args)
    return 0


def cmd_queue_list(args: argparse.Namespace) -> int:
    with management(args) as ops:
        statuses = ops.list_queued_workflows(list_filters(args))
    print_statuses(statuses, args)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with management(args) as ops:
        status = ops.require(args.workflow_id)
    print_status(status, args)
    return 0


def cmd_steps(args: argparse.Namespace) -> int:
    with management(args) as ops:
        ops.require(args.workflow_id)
        steps = ops.list_workflow_steps(args.workflow_id)
    print(out.steps_table(steps) if args.table else out.transact_json(steps))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with management(args) as ops:
        ops.require(args.workflow_id)
        done = ops.cancel([args.workflow_id])
        return report(ops, args, done, "Cancelled workflow {id}",
                      "Workflow {id} already finished with status {status}; nothing to cancel")


def cmd_resume(args: argparse.Namespace) -> int:
    with management(args) as ops:
        done = ops.resume([args.workflow_id])
        return report(ops, args, done, "Resumed workflow {id}: it is enqueued to continue",
                      "Workflow {id} already finished with status {status}; nothing to resume")


def cmd_restart(args: argparse.Namespace) -> int:
    with management(args) as ops:
        print_status(ops.require(ops.fork(args.workflow_id, 1)), args)
    return 0


def cmd_fork(args: argparse.Namespace) -> int:
    with management(args) as ops:
        new_id = ops.fork(
            args.workflow_id, args.step, new_workflow_id=args.forked_workflow_id,
            application_version=args.application_version, queue_name=args.queue_name,
        )
        print_status(ops.require(new_id), args)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with management(args) as ops:
        status = ops.require(args.workflow_id)
        deleted = ops.delete([args.workflow_id], delete_children=args.delete_children)
    if args.json:
        print(out.transact_json(out.transact_status(status)))
    else:
        others = len(deleted) - 1
        tail = f" and {others} child workflow{'s' if others != 1 else ''}" if args.delete_children else ""
        print(out.escaped(f"Deleted workflow {args.workflow_id}{tail}"))
    return 0
