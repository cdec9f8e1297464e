"""``dbos dashboard [URL]``: serve the dashboard for a system database until Ctrl-C.

The database comes as for every other command (``cli_target.py``): the URL
given, else the configuration file. The server listens on loopback only:
the dashboard has no login, so it is never offered to the network; an
operator reaches a remote database from their own machine, or through an
SSH tunnel.
"""

from __future__ import annotations

import argparse
from typing import Any

from .admin_origin import is_loopback
from .cli_target import CLIError, database_options, handled_by, management, resolve_target
from .dashboard_server import DashboardServer

DEFAULT_PORT = 3002


def add_dashboard_command(commands: Any) -> None:
    dashboard = commands.add_parser(
        "dashboard", help="serve the workflow dashboard in a browser, for a system database",
        description="Serve the dashboard (workflows, queues, schedules, executors) for a system "
        "database, on 127.0.0.1 until Ctrl-C. It runs no application and no workflow.")
    dashboard.add_argument("url", metavar="SYSTEM_DATABASE_URL", nargs="?",
                           help="system database URL (default: --sys-db-url, else the config file)")
    database_options(dashboard)
    dashboard.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default: 127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=DEFAULT_PORT,
                           help=f"port to listen on (default: {DEFAULT_PORT}; 0 picks a free one)")
    handled_by(dashboard, cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    if args.url:
        if args.sys_db_url and args.sys_db_url != args.url:
            raise CLIError("Give the system database URL once: as SYSTEM_DATABASE_URL or --sys-db-url")
        args.sys_db_url = args.url
    if not is_loopback(args.host):
        raise CLIError(f"--host {args.host} is not a loopback address: the dashboard has no login and "
                       "listens on this machine only (use an SSH tunnel to reach it from elsewhere)")
    where = resolve_target(args).system_url
    with management(args) as managed:
        try:
            server = DashboardServer(args.host, args.port, managed)
        except OSError as exc:
            raise CLIError(f"Cannot listen on {args.host}:{args.port} ({exc.strerror or exc}): "
                           "choose another port with --port") from None
        print(f"Dashboard of {where} at {server.url} (Ctrl-C stops it)", flush=True)
        try:
            server.serve_forever(0.2)
        except KeyboardInterrupt:
            print("Dashboard stopped", flush=True)
        finally:
            server.server_close()
    return 0
