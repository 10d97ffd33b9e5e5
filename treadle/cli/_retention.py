"""Deleting finished runs: ``treadle runs prune`` (by age), ``treadle delete RUN`` (one run,
an erasure request) and ``treadle db vacuum`` (give the space back to the file system)."""

from __future__ import annotations

from datetime import timedelta

import click

from .._engine import PruneReport
from .._engine.retention import BATCH_SIZE
from .._wire import DeletedRuns
from ..persistence._prune import FINISHED_VALUES
from ..persistence._vacuum import vacuum as vacuum_database
from . import _output
from ._admin import db
from ._app import (
    age_value,
    cli,
    db_option,
    json_option,
    make_persistence,
    open_client,
    redact,
    run,
)
from ._runs import RUN_ID, runs


@runs.command()
@click.option(
    "--older-than",
    required=True,
    callback=age_value,
    metavar="AGE",
    help="Delete runs that ended longer ago than this: 30d, 12h, 1y...",
)
@click.option("--status", "-s", type=click.Choice(FINISHED_VALUES), help="Only runs that ended so.")
@click.option("--workflow", "-w", help="Only runs of this workflow.")
@click.option("--dry-run", is_flag=True, help="Delete nothing: say how many would go, and which.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=BATCH_SIZE,
    show_default=True,
    help="Runs deleted per transaction.",
)
@db_option
@json_option
def prune(
    older_than: timedelta,
    status: str | None,
    workflow: str | None,
    dry_run: bool,
    batch_size: int,
    db_url: str,
    as_json: bool,
) -> None:
    """Delete finished runs (completed, failed, cancelled) that ended more than --older-than
    ago, whole: history, inbox and labels with them. Unfinished runs are never deleted, nor a
    finished child whose parent has not ended."""

    async def work() -> PruneReport:
        async with open_client(db_url) as client:
            return await client.prune(
                older_than,
                status=status,
                workflow=workflow,
                dry_run=dry_run,
                batch_size=batch_size,
            )

    report = run(work)
    if as_json:
        _output.emit_json(
            {
                "dry_run": report.dry_run,
                "count": report.count,
                "before": report.before.isoformat(),
                "run_ids": list(report.run_ids),
            }
        )
        return
    what = f"finished runs that ended before {_output.when(report.before)}"
    if not report.dry_run:
        click.echo(f"deleted {report.count} {what}")
        return
    click.echo(f"would delete {report.count} {what}" + (":" if report.count else ""))
    for run_id in report.run_ids:
        click.echo(run_id)
    if report.count > len(report.run_ids):
        click.echo(f"... and {report.count - len(report.run_ids)} more")


@cli.command()
@RUN_ID
@db_option
@json_option
def delete(run_id: str, db_url: str, as_json: bool) -> None:
    """Delete a finished run now, whole, with its child runs (an erasure request). An unfinished
    run is refused: cancel it first."""

    async def work() -> list[str]:
        async with open_client(db_url) as client:
            return await client.delete(run_id)

    deleted = run(work)
    if as_json:
        _output.emit_json(DeletedRuns(deleted=deleted))
        return
    children = deleted[1:]
    more = f" and its child runs {', '.join(children)}" if children else ""
    click.echo(f"deleted run {deleted[0]}{more}")


@db.command()
@db_option
def vacuum(db_url: str) -> None:
    """Rebuild the database so that the space of deleted runs goes back to the file system.
    A SQLite file made by an older treadle is switched to incremental vacuum too (from then on
    space comes back as runs are deleted). Writers wait while it runs."""
    persistence = make_persistence(db_url, create=False)
    click.echo(f"database {redact(db_url)}: " + run(lambda: vacuum_database(persistence)))
