"""Where a ``dbos`` command acts: the system database its options or the
configuration file name, and the options that name it.

A URL on the command line (``-s``/``-D``) is the whole answer: the
configuration file in the working directory is then not read, so a file
meant for another environment (with variables unset here) cannot get in
the way. Without one, the file (``--config``, or ``dbos_config.yaml`` /
``dbos-config.yaml`` here) decides, as it does for DBOS Transact.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional

from .._config import DBOSConfig, config_from_yaml, find_config_file, load_config_file, resolve_urls
from .._serialization import Codec
from .._sysdb import DatabaseURL, SystemDatabase, latest_version
from .management import Management

Handler = Callable[[argparse.Namespace], int]


class CLIError(Exception):
    """A problem the user must fix; printed without a traceback."""


@dataclass
class Target:
    system_url: DatabaseURL
    app_url: Optional[DatabaseURL]
    schema: str
    migrate_commands: List[str]


def database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-s", "--sys-db-url", help="system database URL (default: from the config file)")
    parser.add_argument("-D", "--db-url", help="application database URL")
    parser.add_argument("--schema", help="PostgreSQL schema of the system tables (default: dbos)")
    parser.add_argument("--config", help="configuration file (default: dbos_config.yaml here)")


def handled_by(parser: argparse.ArgumentParser, handler: Handler) -> None:
    # The label names the command in error lines: "dbos workflow get: ...".
    parser.set_defaults(handler=handler, label=parser.prog.split(" ", 1)[1])


def config_data(args: argparse.Namespace) -> Dict[str, Any]:
    """The configuration file's contents, or nothing when a URL was given
    (and no ``--config``) or there is no file."""
    if args.config:
        return load_config_file(args.config, silent=True)
    if args.sys_db_url or args.db_url or find_config_file() is None:
        return {}
    return load_config_file(None, silent=True)


def resolve_target(args: argparse.Namespace, data: Optional[Dict[str, Any]] = None) -> Target:
    """Where the command acts, from options first and the config file second."""
    data = config_data(args) if data is None else data
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
