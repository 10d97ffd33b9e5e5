"""``treadle demo``, ``treadle serve`` (the web dashboard) and ``treadle db upgrade``."""

from __future__ import annotations

import click

from ._app import (
    UserError,
    app_option,
    cli,
    current_codec,
    db_option,
    json_option,
    load_workflows,
    make_persistence,
    redact,
    run,
    user_errors,
)
from ._worker import setup_logging


@cli.command()
@db_option
def demo(db_url: str) -> None:
    """Run an order saga and tell what happens: a branch, a loop, a parallel fan-out, a signal,
    an approval, a retry, and a failure that is compensated."""
    from ..demo import run_demo

    if not run(lambda: run_demo(db_url, echo=click.echo)):
        raise UserError("the demo did not end as expected (see above)")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", "-p", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--tokens-file",
    "--tokens",
    "tokens_file",
    type=click.Path(exists=True, dir_okay=False),
    help="File of API tokens (without it: 127.0.0.1 only, and anyone there may read and act).",
)
@app_option
@db_option
def serve(host: str, port: int, tokens_file: str | None, app: str | None, db_url: str) -> None:
    """Serve the web dashboard and its JSON API (and fire due schedules).

    Needs the web extra: pip install 'treadle[web]'.
    """
    if app is not None:
        load_workflows(app)  # a mistake in --app is a one-line error here, not a traceback there
    try:
        from ..web import run_server
    except ImportError as exc:
        raise UserError(
            f"treadle serve needs the web extra: pip install 'treadle[web]' ({exc})"
        ) from None
    setup_logging("INFO")  # the start-up warnings (no tokens, the address) must be seen
    with user_errors(app):
        run_server(
            db_url=db_url,
            host=host,
            port=port,
            tokens_file=tokens_file,
            module=app,
            codec=current_codec(),
        )


@cli.group()
def db() -> None:
    """Database administration."""


@db.command()
@db_option
@json_option
def upgrade(db_url: str, as_json: bool) -> None:
    """Create the schema, or bring an older one up to this version of treadle (SQLite and
    PostgreSQL alike; safe to run again, and while engines run)."""
    from ..persistence._schema import SCHEMA_VERSION

    persistence = make_persistence(db_url)
    done = run(persistence.upgrade)
    if as_json:
        from ._output import emit_json

        emit_json({"database": redact(db_url), "schema_version": SCHEMA_VERSION, "done": done})
    else:
        click.echo(f"database {redact(db_url)} is at schema version {SCHEMA_VERSION}")
        if done:
            click.echo(done)
