"""Commands on runs: start, list, look at, signal, decide, pause, resume, cancel (retry, skip,
abort, fork and migrate are in :mod:`._versions`).

These commands open an engine that executes nothing: a worker (``treadle worker``) executes the
runs, and picks up at once what these commands record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import click

from .._engine import RunControl
from .._nodes import Workflow
from .._search import RunPage
from .._state import State
from .._wire import Event, Run
from ..persistence import Persistence
from . import _output
from ._app import (
    app_database,
    app_option,
    cli,
    db_option,
    json_object,
    json_option,
    json_value,
    load_app,
    open_client,
    run,
    run_id_value,
)
from ._filters import filter_options, run_filter
from ._order import debounce_options, priority_option

RUN_ID = click.argument("run_id", metavar="RUN", callback=run_id_value)


def _report(state: State, done: str, as_json: bool) -> None:
    """Say what a control command did, and where the run is now."""
    if as_json:
        _output.emit_json(Run.of(state))
        return
    line = f"{done}; run {state.id} is {state.status.value}"
    if state.waiting_for:
        line += f" (waiting for {', '.join(state.waiting_for)})"
    click.echo(line)


def _control(db_url: str, run_id: str, action: Callable[[RunControl], Awaitable[None]]) -> State:
    async def work() -> State:
        async with open_client(db_url) as engine:
            await action(engine)
            return await engine.status(run_id)

    return run(work)


@cli.command()
@click.argument("workflow")
@click.option(
    "--data",
    callback=json_object,
    metavar="JSON",
    help="The run's data: a JSON object, @file or - (stdin).",
)
@click.option(
    "--run-id",
    callback=run_id_value,
    help="Choose the run's id (letters, digits and ._:@-; starting an existing id starts nothing).",
)
@click.option(
    "--deadline",
    metavar="DURATION",
    help="Cancel the run (DeadlineExceeded) unless it has ended within DURATION ('7d', '90s').",
)
@priority_option("Engines claim runs of higher priority first (FIFO within one).")
@debounce_options
@app_option
@db_option
@json_option
def start(
    workflow: str,
    data: dict[str, Any] | None,
    run_id: str | None,
    deadline: str | None,
    priority: int,
    debounce_key: str | None,
    debounce: str | None,
    debounce_max: str | None,
    app: str | None,
    db_url: str,
    as_json: bool,
) -> None:
    """Start a run of WORKFLOW and print its id. A worker executes it.

    Without --app, the newest definition of WORKFLOW that a worker stored in the database is
    used (no step code needed here). With --app MODULE:ATTR (or TREADLE_APP), its definitions
    are used; when it names an Engine, the run goes to that engine's database.
    """
    workflows: Sequence[Workflow] = ()
    database: str | Persistence = db_url
    if app is not None:
        loaded = load_app(app)
        database, workflows = app_database(loaded, db_url), loaded.workflows

    async def work() -> State:
        async with open_client(database, workflows=workflows, create=app is not None) as engine:
            started = await engine.start(
                workflow,
                data,
                run_id=run_id,
                deadline=deadline,
                priority=priority,
                debounce_key=debounce_key,
                debounce=debounce,
                debounce_max=debounce_max,
            )
            return await engine.status(started)

    started = run(work, app=app)
    if as_json:
        _output.emit_json(Run.of(started))  # the shape of `status --json`: the id is "id"
    else:
        click.echo(started.id)


@cli.group(invoke_without_command=True)
@filter_options
@click.option(
    "--limit", "-n", type=click.IntRange(1, 1000), default=50, show_default=True, help="At most N."
)
@click.option("--cursor", metavar="CURSOR", help="The page after this one (printed on stderr).")
@db_option
@json_option
@click.pass_context
def runs(ctx: click.Context, /, limit: int, cursor: str | None, db_url: str, **kwargs: Any) -> None:
    """List runs, newest first, filtered by the options ('treadle runs migrate --help': move
    runs onto another definition). When there are more, the next page's --cursor is printed on
    stderr."""
    if ctx.invoked_subcommand is not None:
        return
    as_json = kwargs.pop("as_json")
    flt = run_filter(kwargs)

    async def work() -> RunPage:
        async with open_client(db_url) as engine:
            return await engine.find_runs(flt, cursor=cursor, limit=limit)

    page = run(work)
    if as_json:
        _output.emit_json([Run.of(s) for s in page.runs])
    else:
        click.echo(_output.runs_table(page.runs))
    if page.next_cursor:
        click.echo(f"next page: --cursor {page.next_cursor}", err=True)


@cli.command()
@RUN_ID
@db_option
@json_option
def status(run_id: str, db_url: str, as_json: bool) -> None:
    """Show a run: status, what it waits for, its error and its data."""

    async def work() -> State:
        async with open_client(db_url) as engine:
            return await engine.status(run_id)

    state = run(work)
    if as_json:
        _output.emit_json(Run.of(state))
    else:
        click.echo(_output.state_text(state))


@cli.command()
@RUN_ID
@db_option
def result(run_id: str, db_url: str) -> None:
    """Print what a completed run returned, as JSON (its workflow's output; null without one)."""

    async def work() -> Any:
        async with open_client(db_url) as engine:
            return await engine.result(run_id)

    _output.emit_json(run(work))


@cli.command()
@RUN_ID
@db_option
@json_option
def history(run_id: str, db_url: str, as_json: bool) -> None:
    """Show what happened to a run, in order."""

    async def work() -> list[Any]:
        async with open_client(db_url) as engine:
            return await engine.history(run_id)

    events = run(work)
    if as_json:
        _output.emit_json([Event.of(e) for e in events])
    else:
        click.echo(_output.history_table(events))


@cli.command()
@RUN_ID
@click.argument("name")
@click.option(
    "--data", callback=json_value, metavar="JSON", help="The signal's data: JSON, @file or -."
)
@db_option
@json_option
def signal(run_id: str, name: str, data: Any, db_url: str, as_json: bool) -> None:
    """Send signal NAME to a run (kept until the run reaches await_signal(NAME))."""

    async def action(engine: RunControl) -> None:
        await engine.signal(run_id, name, data)

    _report(_control(db_url, run_id, action), f"signal {name!r} sent", as_json)


@cli.command()
@RUN_ID
@click.argument("name")
@click.option("--by", required=True, metavar="WHO", help="Who approves (one of the approvers).")
@click.option("--comment", help="A comment kept with the decision.")
@db_option
@json_option
def approve(
    run_id: str, name: str, by: str, comment: str | None, db_url: str, as_json: bool
) -> None:
    """Approve approval NAME of a run."""

    async def action(engine: RunControl) -> None:
        await engine.approve(run_id, name, by=by, comment=comment)

    _report(_control(db_url, run_id, action), f"{by} approved {name!r}", as_json)


@cli.command()
@RUN_ID
@click.argument("name")
@click.option("--by", required=True, metavar="WHO", help="Who rejects (one of the approvers).")
@click.option("--reason", help="Why; kept with the decision and in the run's error.")
@db_option
@json_option
def reject(run_id: str, name: str, by: str, reason: str | None, db_url: str, as_json: bool) -> None:
    """Reject approval NAME of a run (the run compensates and fails)."""

    async def action(engine: RunControl) -> None:
        await engine.reject(run_id, name, by=by, reason=reason)

    _report(_control(db_url, run_id, action), f"{by} rejected {name!r}", as_json)


@cli.command()
@RUN_ID
@db_option
@json_option
def pause(run_id: str, db_url: str, as_json: bool) -> None:
    """Pause a run: running steps finish, then it stops before its next step."""

    async def action(engine: RunControl) -> None:
        await engine.pause(run_id)

    _report(_control(db_url, run_id, action), "pause requested", as_json)


@cli.command()
@RUN_ID
@db_option
@json_option
def resume(run_id: str, db_url: str, as_json: bool) -> None:
    """Resume a paused run where it stopped."""

    async def action(engine: RunControl) -> None:
        await engine.resume(run_id)

    _report(_control(db_url, run_id, action), "resumed (a worker goes on with it)", as_json)


@cli.command()
@RUN_ID
@db_option
@json_option
def cancel(run_id: str, db_url: str, as_json: bool) -> None:
    """Cancel a run: running steps stop, completed steps are compensated, it ends CANCELLED."""

    async def action(engine: RunControl) -> None:
        await engine.cancel(run_id)

    done = "cancel requested (a worker compensates its completed steps and ends it)"
    _report(_control(db_url, run_id, action), done, as_json)
