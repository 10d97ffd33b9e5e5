"""Commands on runs that outlive their code: decide on held runs (retry, skip, abort), fork a
run from one of its steps, and move runs onto another definition (``treadle runs migrate``).

Decisions are recorded for whichever worker executes the run, as the other control commands'
are. ``--by`` says who decided (kept in the run's history); it is the OS user unless given.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from typing import Any

import click

from .._engine import MigrationPlan, RunControl
from .._state import State
from .._wire import MigrationPlan as PlanShape
from .._wire import Run
from . import _output
from ._app import (
    UserError,
    app_database,
    app_option,
    cli,
    db_option,
    json_object,
    json_option,
    load_app,
    open_engine,
    run,
    run_id_value,
)
from ._runs import RUN_ID, _control, _report, runs


def os_user() -> str | None:
    """Who is at the keyboard, as the OS says (None when it cannot say)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no USER/LOGNAME in the environment
        return None


BY = click.option(
    "--by",
    default=os_user,
    show_default="the OS user",
    metavar="WHO",
    help="Who decides (kept in the run's history).",
)


def _database(app: str | None, db_url: str) -> tuple[Any, list[Any]]:
    """The database and the workflows for an optional ``--app`` (as ``start`` has them)."""
    if app is None:
        return db_url, []
    loaded = load_app(app)
    return app_database(loaded, db_url), loaded.workflows


# Held runs ------------------------------------------------------------------------------------


@cli.command()
@RUN_ID
@BY
@db_option
@json_option
def retry(run_id: str, by: str | None, db_url: str, as_json: bool) -> None:
    """Run the failed step of a HELD run again, with fresh attempts."""

    async def action(engine: RunControl) -> None:
        await engine.retry(run_id, by=by)

    _report(_control(db_url, run_id, action), "retry recorded (a worker goes on with it)", as_json)


@cli.command()
@RUN_ID
@click.option(
    "--data",
    callback=json_object,
    metavar="JSON",
    help="Merged into the run's data (its top-level keys replaced): a JSON object, @file or -.",
)
@BY
@db_option
@json_option
def skip(
    run_id: str, data: dict[str, Any] | None, by: str | None, db_url: str, as_json: bool
) -> None:
    """Mark the failed step of a HELD run done and go on after it."""

    async def action(engine: RunControl) -> None:
        await engine.skip(run_id, data, by=by)

    _report(_control(db_url, run_id, action), "skip recorded (a worker goes on with it)", as_json)


@cli.command()
@RUN_ID
@click.option("--reason", required=True, help="Why; the run's error becomes 'aborted: REASON'.")
@BY
@db_option
@json_option
def abort(run_id: str, reason: str, by: str | None, db_url: str, as_json: bool) -> None:
    """End a HELD run as a failed one: compensate its completed steps, end it FAILED."""

    async def action(engine: RunControl) -> None:
        await engine.abort(run_id, reason, by=by)

    done = "abort recorded (a worker compensates its completed steps and ends it)"
    _report(_control(db_url, run_id, action), done, as_json)


# Forks ----------------------------------------------------------------------------------------


@cli.command()
@RUN_ID
@click.option(
    "--from-step", metavar="STEP", help="A top-level step to run from (default: the start)."
)
@click.option(
    "--data",
    callback=json_object,
    metavar="JSON",
    help="The new run's data: a JSON object, @file or - (default: the original run's).",
)
@click.option(
    "--version", "version", metavar="V", help="The definition (label or id; default: the newest)."
)
@click.option("--run-id", "new_run_id", callback=run_id_value, help="Choose the new run's id.")
@app_option
@db_option
@json_option
def fork(
    run_id: str,
    from_step: str | None,
    data: dict[str, Any] | None,
    version: str | None,
    new_run_id: str | None,
    app: str | None,
    db_url: str,
    as_json: bool,
) -> None:
    """Start a new run that counts the steps of RUN before --from-step as done; print its id.

    The definition must be known: pass --app MODULE:ATTR (or set TREADLE_APP).
    """
    database, workflows = _database(app, db_url)

    async def work() -> State:
        async with open_engine(database, workflows=workflows) as engine:
            forked = await engine.fork(
                run_id, from_step=from_step, data=data, version=version, new_run_id=new_run_id
            )
            return await engine.status(forked)

    state = run(work, app=app)
    if as_json:
        _output.emit_json(Run.of(state))
    else:
        click.echo(state.id)


# Migration ------------------------------------------------------------------------------------


def rename_pairs(
    ctx: click.Context, param: click.Parameter, value: Sequence[str]
) -> dict[str, str] | None:
    """Click callback: ``old=new`` pairs as a dict (None when none are given)."""
    pairs: dict[str, str] = {}
    for item in value:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise click.BadParameter(f"expected OLD=NEW (step names), got {item!r}")
        pairs[old] = new
    return pairs or None


RENAME = click.option(
    "--rename",
    multiple=True,
    callback=rename_pairs,
    metavar="OLD=NEW",
    help="A step renamed in the new definition (repeatable).",
)


def plan_line(plan: MigrationPlan, dry_run: bool) -> str:
    """One line of ``treadle runs migrate``: the run, and whether it moves (or why not)."""
    target = plan.target_version or plan.target
    if not plan.ok:
        return f"{plan.run_id}  cannot move to {target}: " + "; ".join(plan.reasons)
    return f"{plan.run_id}  {'would move' if dry_run else 'moved'} to {target}"


@runs.command()
@click.argument("run_id", metavar="[RUN]", required=False, callback=run_id_value)
@click.option("--workflow", "-w", help="Move every unfinished run of this workflow.")
@click.option(
    "--from", "source", metavar="V", help="With --workflow: only runs on this definition."
)
@click.option(
    "--to", metavar="V", help="The definition to move to (label or id; default: the newest)."
)
@RENAME
@click.option("--dry-run", is_flag=True, help="Only say which runs would move, and why not.")
@BY
@app_option
@db_option
@json_option
def migrate(
    run_id: str | None,
    workflow: str | None,
    source: str | None,
    to: str | None,
    rename: dict[str, str] | None,
    dry_run: bool,
    by: str | None,
    app: str | None,
    db_url: str,
    as_json: bool,
) -> None:
    """Move RUN, or every unfinished run of --workflow, onto another definition.

    Prints one line a run: moved (would move), or cannot move with the reasons. Exits 1 when
    any run cannot move, dry run or not (the others move all the same).
    """
    if (run_id is None) == (workflow is None):
        raise click.UsageError("give either RUN or --workflow NAME")
    if source is not None and workflow is None:
        raise click.UsageError("--from goes with --workflow (a run is on one definition)")
    database, workflows = _database(app, db_url)

    async def work() -> list[MigrationPlan]:
        async with open_engine(database, workflows=workflows) as engine:
            if workflow is not None:
                return await engine.migrate_runs(
                    workflow, source=source, to=to, rename=rename, dry_run=dry_run, by=by
                )
            assert run_id is not None
            plan = await engine.plan_migration(run_id, to=to, rename=rename)
            if plan.ok and not dry_run:
                plan = await engine.migrate(run_id, to=to, rename=rename, by=by)
            return [plan]

    plans = run(work, app=app)
    if as_json:
        _output.emit_json([PlanShape.of(p) for p in plans])
    elif plans:
        click.echo("\n".join(plan_line(p, dry_run) for p in plans))
    else:
        click.echo("no runs to move")
    refused = [p for p in plans if not p.ok]
    if refused:
        raise UserError(f"{len(refused)} of {len(plans)} runs cannot move")
