"""``treadle cron``: list, add, remove, enable and disable schedules; preview an expression.

Schedules are kept in the database; workers (``treadle worker``) start their runs when due.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from .._wire import Schedule as ScheduleShape
from ..cron import Cron, Schedule
from ..cron._cron import CATCH_UP, OVERLAP
from . import _output
from ._app import (
    UserError,
    app_option,
    cli,
    db_option,
    json_object,
    json_option,
    open_engine,
    resolve_app,
    run,
    user_errors,
)
from ._order import priority_option

if TYPE_CHECKING:
    from .._engine import Engine


def make_cron(engine: Engine) -> Cron:
    """A :class:`treadle.Cron` on ``engine``."""
    return Cron(engine)


def schedules_table(schedules: Sequence[Schedule]) -> str:
    """The ``treadle cron list`` table."""
    rows = [
        [
            s.id,
            s.workflow,
            s.expression,
            s.timezone,
            "yes" if s.enabled else "paused" if s.paused_reason else "no",
            _output.when(s.next_run) if s.enabled else "-",
            _output.when(s.last_run),
            "-" if s.last_run_status is None else s.last_run_status.value,
        ]
        for s in schedules
    ]
    headers = [
        "ID",
        "WORKFLOW",
        "EXPRESSION",
        "TIMEZONE",
        "ENABLED",
        "NEXT RUN",
        "LAST RUN",
        "LAST STATUS",
    ]
    table = _output.table(headers, rows, empty="no schedules")
    paused = [f"{s.id} paused: {s.paused_reason}" for s in schedules if s.paused_reason]
    return "\n".join([table, *paused])


@cli.group()
def cron() -> None:
    """Cron schedules that start runs of a workflow (fired by workers)."""


@cron.command("list")
@db_option
@json_option
def list_(db_url: str, as_json: bool) -> None:
    """List the schedules."""

    async def work() -> list[Schedule]:
        async with open_engine(db_url) as engine:
            return await make_cron(engine).list()

    schedules = run(work)
    if as_json:
        _output.emit_json([ScheduleShape.of(s) for s in schedules])
    else:
        click.echo(schedules_table(schedules))


@cron.command()
@click.argument("schedule_id", metavar="ID")
@click.argument("workflow")
@click.argument("expression")
@click.option(
    "--input",
    "input_",
    callback=json_object,
    metavar="JSON",
    help="The data of each run it starts: a JSON object, @file or -.",
)
@click.option(
    "--timezone", "--tz", default="UTC", show_default=True, help="IANA time zone of EXPRESSION."
)
@click.option(
    "--catch-up",
    type=click.Choice(CATCH_UP),
    default="one",
    show_default=True,
    help="Due times missed while no worker ran: one run for them all, none, or all of them.",
)
@click.option(
    "--catch-up-window",
    metavar="DURATION",
    help="Ignore missed due times older than this (e.g. 6h); needed by --catch-up all.",
)
@click.option(
    "--overlap",
    type=click.Choice(OVERLAP),
    default="allow",
    show_default=True,
    help="While the last run is unfinished: start anyway, skip, or hold one due time.",
)
@click.option("--jitter", metavar="DURATION", help="Delay each run by up to this much (e.g. 30s).")
@click.option(
    "--pause-on-failure",
    is_flag=True,
    help="Disable the schedule when its run fails (`treadle cron enable ID` resumes it).",
)
@priority_option("The priority of the runs it starts (higher is claimed first).")
@app_option
@db_option
@json_option
def add(
    schedule_id: str,
    workflow: str,
    expression: str,
    input_: dict[str, Any] | None,
    timezone: str,
    catch_up: str,
    catch_up_window: str | None,
    overlap: str,
    jitter: str | None,
    pause_on_failure: bool,
    priority: int,
    app: str | None,
    db_url: str,
    as_json: bool,
) -> None:
    """Add schedule ID: start WORKFLOW at each time of EXPRESSION.

    EXPRESSION is five-field cron ('0 2 * * *'), a macro ('@daily') or '@every 1h30m'. The
    workflow must be known: pass --app MODULE:ATTR (or set TREADLE_APP).
    """
    if app is None:
        raise click.UsageError(
            f"scheduling {workflow!r} needs its definition: pass --app MODULE:ATTR (or set "
            "TREADLE_APP)"
        )
    workflows = resolve_app(app)

    async def work() -> Schedule:
        async with open_engine(db_url, workflows=workflows, create=True) as engine:
            return await make_cron(engine).add(
                schedule_id,
                workflow,
                expression,
                input_,
                timezone=timezone,
                catch_up=catch_up,
                catch_up_window=catch_up_window,
                overlap=overlap,
                jitter=jitter,
                pause_on_failure=pause_on_failure,
                priority=priority,
            )

    schedule = run(work, app=app)
    if as_json:
        _output.emit_json(ScheduleShape.of(schedule))
    else:
        click.echo(f"schedule {schedule_id!r} added; next run {_output.when(schedule.next_run)}")


def _change(verb: str, done: str) -> click.Command:
    @cron.command(verb)
    @click.argument("schedule_id", metavar="ID")
    @db_option
    @json_option
    def command(schedule_id: str, db_url: str, as_json: bool) -> None:
        async def work() -> None:
            async with open_engine(db_url) as engine:
                await getattr(make_cron(engine), verb)(schedule_id)

        run(work)
        if as_json:
            _output.emit_json({"id": schedule_id, "action": verb})
        else:
            click.echo(f"schedule {schedule_id!r} {done}")

    command.help = f"{verb.capitalize()} schedule ID."
    return command


_change("remove", "removed")
_change("enable", "enabled")
_change("disable", "disabled")


@cron.command("next")
@click.argument("expression")
@click.option(
    "-n", "count", type=click.IntRange(1, 1000), default=5, show_default=True, help="How many."
)
@click.option("--timezone", "--tz", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--after", type=click.DateTime(), help="Start from this time (default: now).")
@json_option
def next_(
    expression: str, count: int, timezone: str, after: datetime | None, as_json: bool
) -> None:
    """Preview the next due times of EXPRESSION."""
    from ..cron import next_fires

    start = datetime.now(UTC) if after is None else _aware(after, timezone)
    with user_errors():
        times = next_fires(expression, start, count, timezone)
    if as_json:
        _output.emit_json([t.isoformat() for t in times])
    else:
        for moment in times:
            click.echo(moment.strftime("%Y-%m-%d %H:%M:%S %Z (%a)"))


def _aware(moment: datetime, timezone: str) -> datetime:
    if moment.tzinfo is not None:
        return moment
    from zoneinfo import ZoneInfo

    try:
        return moment.replace(tzinfo=ZoneInfo(timezone))
    except (KeyError, ValueError, OSError):
        raise UserError(f"unknown time zone {timezone!r}") from None
