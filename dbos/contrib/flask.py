"""Flask integration: a DBOS context per request, and ``flask dbos ...`` commands.

Two ways in:

- ``DBOS(config=..., flask=app)``, as in DBOS Transact: installs the WSGI
  middleware (and the commands). The application calls ``DBOS.launch()``.
- ``DBOSFlask(app, config=...)`` or ``DBOSFlask(config=...).init_app(app)``,
  Flask's extension protocol: constructs DBOS if there is none yet, installs
  the same middleware and commands, and launches DBOS before the first request
  is handled.

Why the first request and not ``init_app``: ``flask dbos migrate``,
``flask routes`` and ``flask shell`` build the app too, and launching there
would start background threads and recover pending workflows in a short-lived
command process, and, with ``run_migrations: false``, fail against the very
database ``flask dbos migrate`` is about to migrate. A server that must
recover workflows before any request arrives calls ``DBOS.launch()`` itself
(e.g. in its ``__main__`` or a gunicorn ``post_worker_init`` hook); a later
first request then finds DBOS launched and leaves it alone.

Flask, Werkzeug and click are imported only when used: the core never needs them.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, Optional

from .. import _runtime as runtime
from .._config import DBOSConfig, Settings, resolve
from ..error import DBOSException
from ._http import RequestInfo, current_request, handler_context, request_id_from, require_app

if TYPE_CHECKING:
    import click
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask

__all__ = ["DBOSFlask", "DBOSWSGIMiddleware", "RequestInfo", "current_request", "setup_flask"]

# Where the extension lives in ``app.extensions``, by Flask convention.
EXTENSION_KEY = "dbos"
# The app config key ``init_app`` reads when the extension was given no config.
CONFIG_KEY = "DBOS_CONFIG"


class DBOSWSGIMiddleware:
    """Runs each request in a DBOS context (spec 14.2).

    A streamed response body is produced after this returns, outside the
    context: workflows started while streaming get no idempotency key.
    """

    def __init__(self, wsgi_app: "WSGIApplication") -> None:
        self.wsgi_app = wsgi_app

    def __call__(
        self, environ: "WSGIEnvironment", start_response: "StartResponse"
    ) -> Iterable[bytes]:
        # WSGI spells header "a-b" as HTTP_A_B.
        key = environ.get("HTTP_DBOS_IDEMPOTENCY_KEY")
        with handler_context(_request_info(environ), key):
            return self.wsgi_app(environ, start_response)


def _request_info(environ: "WSGIEnvironment") -> RequestInfo:
    from werkzeug.wsgi import get_current_url

    return RequestInfo(
        request_id=request_id_from(environ.get("HTTP_X_REQUEST_ID")),
        method=str(environ.get("REQUEST_METHOD", "")),
        url=get_current_url(environ),
        ip=environ.get("REMOTE_ADDR"),
    )


class DBOSFlask:
    """The Flask extension: ``DBOSFlask(app, config=...)`` or ``init_app(app)``.

    ``config`` defaults to ``app.config["DBOS_CONFIG"]``, then to DBOS's own
    default (``dbos_config.yaml`` in the working directory). When a DBOS
    instance exists already it is used as it is (DBOS is a singleton).
    With ``launch=False`` the application calls ``DBOS.launch()`` itself.
    """

    def __init__(
        self,
        app: Optional["Flask"] = None,
        *,
        config: Optional[DBOSConfig] = None,
        launch: bool = True,
    ) -> None:
        self.config = config
        self.launch = launch
        if app is not None:
            self.init_app(app)

    def init_app(self, app: "Flask") -> None:
        require_app(app, "flask", "Flask", "flask")
        runtime.construct_from(self.config if self.config is not None else app.config.get(CONFIG_KEY))
        _install(app)
        hooks = app.before_request_funcs.setdefault(None, [])
        if self.launch and runtime.launch_if_needed not in hooks:
            # Registered now, so it runs before the app's own later hooks,
            # which may then use DBOS.
            app.before_request(runtime.launch_if_needed)
        app.extensions[EXTENSION_KEY] = self


def setup_flask(app: Any) -> None:
    """What ``DBOS(config=..., flask=app)`` does: middleware and commands, no launch."""
    require_app(app, "flask", "Flask", "flask")
    _install(app)
    app.extensions.setdefault(EXTENSION_KEY, DBOSFlask(launch=False))


def _install(app: "Flask") -> None:
    # Once per app: DBOS(flask=app) and DBOSFlask may both be applied to it.
    if EXTENSION_KEY in app.extensions:
        return
    app.wsgi_app = DBOSWSGIMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    app.cli.add_command(_cli_group())


# ----------------------------------------------------------------------
# flask dbos ...
# ----------------------------------------------------------------------


def _cli_group() -> "click.Group":
    # Command objects built per app: click's decorators would pile their
    # options onto the shared callback functions, once per app.
    import click
    from flask.cli import AppGroup

    group = AppGroup("dbos", help="Manage this app's DBOS system database and workflows.")
    group.add_command(click.Command(
        "migrate", callback=migrate_command,
        help="Create the app's system database if missing and apply pending migrations.",
        params=[click.Option(["-r", "--app-role"],
                             help="PostgreSQL role to grant access to the system tables")],
    ))
    workflow = AppGroup("workflow", help="Inspect this app's recorded workflows.")
    workflow.add_command(click.Command(
        "list", callback=list_command, help="List this app's workflows, oldest first.",
        params=[
            click.Option(["-l", "--limit"], type=int, default=10, show_default=True,
                         help="show at most N workflows"),
            click.Option(["-S", "--status"], help="only workflows with this status, e.g. PENDING"),
            click.Option(["-n", "--name"], help="only workflows of this function name"),
            click.Option(["-d", "--sort-desc"], is_flag=True,
                         help="newest first (default: oldest first)"),
            click.Option(["--json", "as_json"], is_flag=True, help="print JSON instead of text"),
        ],
    ))
    group.add_command(workflow)
    return group


@contextmanager
def _cli_errors() -> Iterator[None]:
    """Problems the user must fix, as one ``Error: ...`` line and exit status 1."""
    import click

    from .._ops.cli import CLIError, one_line
    from .._sysdb.url import URLError

    try:
        yield
    except (CLIError, DBOSException, URLError) as exc:
        raise click.ClickException(one_line(str(exc))) from None


def _settings() -> Settings:
    """The configuration of this app's DBOS instance (built by the app factory)."""
    config = runtime.current_config()
    if config is None:
        raise DBOSException(
            "DBOS is not initialized for this app: construct DBOS(config=..., flask=app) "
            "or apply DBOSFlask in the app factory"
        )
    return resolve(config)


def migrate_command(app_role: Optional[str]) -> None:
    import click

    from .._ops.migrate import run_dbos_database_migrations

    with _cli_errors():
        settings = _settings()
        url = settings.system_database_url
        applied = run_dbos_database_migrations(
            url.render(), schema=settings.system_schema, application_role=app_role
        )
    if applied:
        click.echo(f"Migrated the system database at {url} to version {applied[-1]}")
    else:
        click.echo(f"The system database at {url} is up to date")


def list_command(
    limit: int, status: Optional[str], name: Optional[str], sort_desc: bool, as_json: bool
) -> None:
    import click

    from .._ops import cli_output as out
    from .._ops.cli import require_migrated
    from .._ops.management import Management
    from .._serialization import Codec
    from .._sysdb import SystemDatabase

    # Inputs and outputs can be large, and the listing never shows them.
    filters: Dict[str, Any] = {"limit": limit, "sort_desc": sort_desc,
                               "load_input": False, "load_output": False}
    if status:
        filters["status"] = status.upper()
    if name:
        filters["name"] = name
    with _cli_errors():
        settings = _settings()
        sysdb = SystemDatabase(settings.system_database_url, schema=settings.system_schema,
                               pool_size=2, connect_args=settings.connect_args)
        try:
            require_migrated(sysdb)  # never creates a database as a side effect of looking
            statuses = Management(sysdb, Codec(), app_name=settings.name).list_workflows(filters)
        finally:
            sysdb.close()
    click.echo(out.statuses_transact_json(statuses) if as_json
               else out.status_table(statuses))
