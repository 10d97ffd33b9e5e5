"""``treadle cron trigger`` and ``treadle cron backfill``: start a schedule's runs by hand.

Both only store runs (PENDING, for a worker to execute), with the ids the cron's rules give them,
so repeating a command starts nothing twice (see :class:`treadle.Cron`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click

from .._wire import Backfilled, Triggered
from ..cron._operations import Backfill
from . import _output
from ._app import db_option, json_option, open_engine, run
from ._cron import cron, make_cron

F = TypeVar("F", bound=Callable[..., Any])


@cron.command()
@click.argument("schedule_id", metavar="ID")
@click.option(
    "--key",
    metavar="KEY",
    help="An id for this trigger: repeating it with the same key starts nothing.",
)
@db_option
@json_option
def trigger(schedule_id: str, key: str | None, db_url: str, as_json: bool) -> None:
    """Start a run of schedule ID now, once (whether or not it is enabled)."""

    async def work() -> str:
        async with open_engine(db_url) as engine:
            return await make_cron(engine).trigger(schedule_id, key=key)

    run_id = run(work)
    if as_json:
        _output.emit_json(Triggered(schedule_id=schedule_id, run_id=run_id))
    else:
        click.echo(f"schedule {schedule_id!r}: run {run_id} started")


def _time(flag: str, dest: str, what: str) -> Callable[[F], F]:
    return click.option(flag, dest, type=click.DateTime(), required=True, help=what)


@cron.command()
@click.argument("schedule_id", metavar="ID")
@_time("--from", "start", "The first due time included (in the schedule's time zone).")
@_time("--to", "end", "Due times before this one (in the schedule's time zone, not after now).")
@db_option
@json_option
def backfill(schedule_id: str, start: datetime, end: datetime, db_url: str, as_json: bool) -> None:
    """Start one run of schedule ID for every due time in [--from, --to) that has none.

    Each run gets the id and data the schedule's own fire of that due time would have, so a
    repeated or overlapping backfill starts each due time exactly once. At most 10,000 due
    times at once."""

    async def work() -> Backfill:
        async with open_engine(db_url) as engine:
            return await make_cron(engine).backfill(schedule_id, start, end)

    done = run(work)
    if as_json:
        _output.emit_json(Backfilled.of(done))
    else:
        existed = len(done.run_ids) - done.started
        click.echo(
            f"schedule {schedule_id!r}: {len(done.due_times)} due times, {done.started} runs"
            f" started, {existed} existed already"
        )
