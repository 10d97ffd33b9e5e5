"""The root command, the options every command shares, one-line errors, and opening an engine.

Exit codes: 0 done, 1 a user error (unknown run, not an approver, a bad workflow name...), 2 a
usage error as click gives it (a missing argument, an option that is not valid JSON, a run id
that is not an id...). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click
from click.core import ParameterSource

from .._codec import Codec
from .._engine import Client, Engine, RunControl
from .._errors import TreadleError, WorkflowNotFound
from .._ids import check_id
from .._loader import App, LoadError
from .._loader import load_app as _load_app
from .._loader import load_codec as _load_codec
from .._nodes import Workflow
from ..persistence import (
    MemoryPersistence,
    Persistence,
    SQLitePersistence,
    persistence_from_url,
    with_codec,
)

log = logging.getLogger("treadle.cli")

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DB = "sqlite:///treadle.db"
"""Where runs are kept unless ``--db``/``TREADLE_DB`` says otherwise (the demo's file too)."""

APP_HELP = (
    "Where your workflows are: MODULE:ATTR naming an Engine, a Workflow or a list of "
    "Workflows, or MODULE for all its Workflows (the current directory is importable)."
)


class UserError(click.ClickException):
    """A mistake of the person at the keyboard: exit code 1, one line on stderr."""

    exit_code = 1


class TreadleGroup(click.Group):
    """A click group whose errors are one line on stderr (usage errors exit 2, others 1)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the CLI; on an error print ``Error: <message>`` and exit non-zero."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = ""
            if exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            click.echo(f"Error: {one_line(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"Error: {one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def one_line(message: str) -> str:
    """A message on one line (drivers' errors often span several)."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


# Options every command shares ----------------------------------------------------------------


def db_option(fn: F) -> F:
    """``--db URL`` (env ``TREADLE_DB``), with ``--codec MODULE:ATTR`` (env ``TREADLE_CODEC``):
    the codec the database's run data is stored through (see :func:`make_persistence`)."""
    fn = click.option(
        "--codec",
        envvar="TREADLE_CODEC",
        metavar="MODULE:ATTR",
        expose_value=False,
        callback=_codec_value,
        help="The codec run data is stored through at rest (env TREADLE_CODEC).",
    )(fn)
    return click.option(
        "--db",
        "db_url",
        envvar="TREADLE_DB",
        default=DEFAULT_DB,
        show_default=True,
        metavar="URL",
        help="Database: sqlite:///path, postgresql://... or memory:// (env TREADLE_DB).",
    )(fn)


_CODEC = "treadle.codec"
CODEC_SPEC = "treadle.codec_spec"
"""Where ``--codec``'s MODULE:ATTR is kept (``click.Context.meta``), for worker processes."""


def _codec_value(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        try:
            ctx.meta[_CODEC] = _load_codec(value)
            ctx.meta[CODEC_SPEC] = value
        except LoadError as exc:
            raise click.BadParameter(str(exc)) from None


def current_codec() -> Codec | None:
    """The codec that ``--codec`` (or ``TREADLE_CODEC``) gave the running command, if any."""
    ctx = click.get_current_context(silent=True)
    return None if ctx is None else ctx.meta.get(_CODEC)


def json_option(fn: F) -> F:
    """``--json`` (env ``TREADLE_JSON``)."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        envvar="TREADLE_JSON",
        help="Print JSON for scripts instead of text for people (env TREADLE_JSON).",
    )(fn)


def app_option(fn: F) -> F:
    """``--app MODULE:ATTR`` (env ``TREADLE_APP``)."""
    return click.option(
        "--app",
        "app",
        envvar="TREADLE_APP",
        metavar="MODULE:ATTR",
        help=APP_HELP + " (env TREADLE_APP).",
    )(fn)


def parse_json(value: str, *, source: str) -> Any:
    """Parse JSON given inline, as ``@path`` (a file) or as ``-`` (stdin)."""
    text = value
    if value == "-":
        text = sys.stdin.read()
    elif value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {value[1:]!r}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{source} is not valid JSON ({exc})") from None


def json_value(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Click callback: any JSON value."""
    return None if value is None else parse_json(value, source=repr(value))


def json_object(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Click callback: a JSON object."""
    data = json_value(ctx, param, value)
    if data is not None and not isinstance(data, dict):
        raise click.BadParameter(f"expected a JSON object ({{...}}), got {value!r}")
    return data


def run_id_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: a run id (see :func:`treadle.check_id`), or None when not given."""
    if value is None:
        return None
    try:
        return check_id(value, "run id")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def age_value(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    """Click callback: how long ago / how long to keep (``30d``, ``12h``, ``1y``: a duration
    above 0), or None when not given."""
    from .._engine.retention import parse_retention

    name = param.opts[0] if param.opts else str(param.name)
    try:
        return parse_retention(value, name)
    except ValueError as exc:
        message = str(exc).removeprefix(f"{name}: ").partition(" (to keep")[0]
        raise click.BadParameter(message) from None


# Running coroutines with friendly errors -------------------------------------------------------


@contextmanager
def user_errors(app: str | None = None) -> Iterator[None]:
    """Turn treadle's errors and bad input into one-line :class:`UserError` messages."""
    try:
        yield
    except click.ClickException:
        raise
    except WorkflowNotFound as exc:
        hint = "" if app else "; pass --app MODULE:ATTR (or set TREADLE_APP) to load it"
        raise UserError(f"{exc}{hint}") from None
    except (TreadleError, ValueError, TimeoutError) as exc:
        raise UserError(str(exc) or type(exc).__name__) from None


def run(work: Callable[[], Awaitable[T]], *, app: str | None = None) -> T:
    """Run ``work()`` on a fresh event loop, with :func:`user_errors`."""

    async def main() -> T:
        return await work()

    with user_errors(app):
        return asyncio.run(main())


# Databases and engines ----------------------------------------------------------------------


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else host
    return urlunsplit(parts._replace(netloc=netloc))


def make_persistence(db_url: str, *, create: bool = True) -> Persistence:
    """The persistence at ``db_url``, through the ``--codec`` of the command if it has one.
    With ``create=False`` a SQLite file must exist already."""
    with user_errors():
        try:
            persistence = persistence_from_url(db_url)
        except ImportError as exc:
            raise UserError(
                f"--db {redact(db_url)} needs a driver that is not installed ({exc}); "
                "for PostgreSQL: pip install 'treadle[postgres]'"
            ) from None
    if (
        not create
        and isinstance(persistence, SQLitePersistence)
        and persistence.path != ":memory:"
        and not os.path.exists(persistence.path)
    ):
        raise UserError(
            f"no database at {persistence.path!r} (--db {redact(db_url)}): nothing has run "
            "there yet; pass --db or set TREADLE_DB"
        )
    return with_codec(persistence, current_codec())


def database_name(persistence: Persistence) -> str:
    """The database ``persistence`` works on, for messages (without a password)."""
    if isinstance(persistence, MemoryPersistence):
        return "memory://"
    if isinstance(persistence, SQLitePersistence):
        return f"sqlite:///{persistence.path}"
    dsn = _dsn(persistence)
    return repr(persistence) if dsn is None else redact(dsn)


def _dsn(persistence: Persistence) -> str | None:
    try:
        from ..persistence._postgres import PostgresPersistence
    except ImportError:  # no driver: it cannot be a PostgresPersistence
        return None
    return persistence.dsn if isinstance(persistence, PostgresPersistence) else None


def _database_key(persistence: Persistence) -> object:
    """What two persistences on the same database have in common."""
    if isinstance(persistence, MemoryPersistence):
        return "memory://"
    if isinstance(persistence, SQLitePersistence):
        return ("sqlite", os.path.realpath(persistence.path))
    dsn = _dsn(persistence)
    if dsn is None:
        return persistence
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        return ("postgresql", sorted((k, str(v)) for k, v in conninfo_to_dict(dsn).items()))
    except ProgrammingError:  # not a DSN libpq can read: compare the text
        return ("postgresql", dsn)


def db_given() -> bool:
    """Whether ``--db`` (or ``TREADLE_DB``) was given to the running command."""
    ctx = click.get_current_context(silent=True)
    source = None if ctx is None else ctx.get_parameter_source("db_url")
    return source not in (None, ParameterSource.DEFAULT)


def app_database(app: App, db_url: str) -> Persistence:
    """The database for ``--app`` (or a worker's MODULE:ATTR) and ``--db``, and a log line
    saying which it is and why.

    When ``app`` names an Engine, its persistence is the database; a ``--db`` naming another
    database is a :class:`UserError` that names both. Otherwise it is ``--db``, the default
    when that is not given.
    """
    if app.engine is None:
        persistence = make_persistence(db_url)
        if db_given():
            log.info("database %s", database_name(persistence))
        else:
            log.info(
                "database %s: the default, as %s names no Engine (choose one with --db or "
                "TREADLE_DB)",
                database_name(persistence),
                app.spec,
            )
        return persistence
    persistence = with_codec(app.engine.persistence, current_codec())
    if db_given() and _database_key(make_persistence(db_url)) != _database_key(persistence):
        raise UserError(
            f"--db {redact(db_url)} is not the database of the Engine in {app.spec} "
            f"({database_name(persistence)}): leave --db and TREADLE_DB out to use the "
            "engine's, or give the same database"
        )
    log.info("database %s, from the Engine in %s", database_name(persistence), app.spec)
    return persistence


@asynccontextmanager
async def open_engine(
    database: str | Persistence, *, workflows: Sequence[Workflow] = (), create: bool = False
) -> AsyncIterator[Engine]:
    """An open engine on ``database`` (a URL or a persistence) that executes nothing
    (``max_concurrent_runs=0``).

    Runs it starts stay PENDING and unclaimed for a worker; signals, approvals, pause, resume
    and cancel are recorded for whichever engine executes the run. Signals and approvals are
    checked against the definition stored with the run, so no workflow needs registering.
    """
    if isinstance(database, str):
        database = make_persistence(database, create=create)
    engine = Engine(database, max_concurrent_runs=0)
    for workflow in workflows:
        engine.register(workflow)
    await engine.open()
    try:
        yield engine
    finally:
        await engine.close(drain=0)


@asynccontextmanager
async def open_client(
    database: str | Persistence, *, workflows: Sequence[Workflow] = (), create: bool = False
) -> AsyncIterator[RunControl]:
    """An open :class:`Client` on ``database`` (a URL or a persistence); with ``workflows``
    (from ``--app``), a control-only engine that stores their definitions first."""
    if workflows:
        async with open_engine(database, workflows=workflows, create=create) as engine:
            yield engine
        return
    if isinstance(database, str):
        database = make_persistence(database, create=create)
    client = Client(database)
    await client.open()
    try:
        yield client
    finally:
        await client.close(drain=0)


# Loading the user's workflows -----------------------------------------------------------------


def load_app(spec: str) -> App:
    """What ``MODULE:ATTR`` names, as a one-line user error when it names no workflows."""
    try:
        return _load_app(spec)
    except LoadError as exc:
        raise UserError(str(exc)) from None


def load_workflows(spec: str) -> list[Workflow]:
    """The workflows that ``MODULE:ATTR`` names, as a one-line user error when it names none."""
    return load_app(spec).workflows


def resolve_app(app: str | None) -> list[Workflow]:
    """The workflows of ``--app``, or none when it is not given."""
    return [] if app is None else load_workflows(app)


@click.group(
    cls=TreadleGroup,
    context_settings={"auto_envvar_prefix": "TREADLE", "help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="treadle", prog_name="treadle")
def cli() -> None:
    """treadle: durable workflows. Every option can also be set as TREADLE_<OPTION>
    (TREADLE_DB, TREADLE_APP, TREADLE_JSON; TREADLE_<COMMAND>_<OPTION> for the rest)."""
    # One-shot commands report their own errors; background chatter (a driver retrying a
    # connection) stays quiet unless it is an error. `treadle worker` sets up its own logging.
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setLevel(logging.ERROR)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
