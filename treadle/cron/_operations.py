"""Operating schedules by hand: trigger a run now, backfill a range of due times, and pause a
schedule whose run failed (``pause_on_failure``).

The rules that keep these exactly once are the cron's own: every run has an id derived from
what it is for, and starting an existing id starts nothing.

* A backfilled due time gets the id a normal fire of that due time gets
  (:func:`~treadle.cron._due.run_id_for`), so a repeated backfill, two overlapping ones, or a
  backfill and the ticker start one run per due time between them, in any number of processes.
* A trigger gets ``cron:<schedule id>:trigger:<key>``: with a ``key`` the caller chose, a
  retried trigger starts nothing; without one, the key is the trigger time (each call a new
  run).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from treadle._errors import RunExists
from treadle._ids import check_id
from treadle._state import Status
from treadle.cron._due import next_due, run_id_for, utc_text
from treadle.cron._expression import CronExpression
from treadle.cron._options import SCHEDULED_AT, Options
from treadle.persistence._records import ScheduleRecord

if TYPE_CHECKING:
    from treadle._engine import Engine

MAX_BACKFILL = 10_000
"""The most due times one backfill starts."""

_BATCH = 100  # runs started at once by a backfill (their commits share batches)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Backfill:
    """What :meth:`Cron.backfill` did: every due time in the range, oldest first, with its run,
    and how many of those had no run when the backfill came to them (``started``; a concurrent
    backfill may have started some of those itself: the runs are once each all the same)."""

    schedule_id: str
    due_times: list[datetime]
    run_ids: list[str]
    started: int


def trigger_run_id(schedule_id: str, key: str) -> str:
    """The id of the run a trigger of ``schedule_id`` with ``key`` starts."""
    return check_id(f"cron:{schedule_id}:trigger:{key}", "trigger run id")


def due_times(record: ScheduleRecord, start: datetime, end: datetime) -> list[datetime]:
    """The schedule's due times in ``[start, end)``, in UTC, oldest first; ``ValueError`` when
    there are more than :data:`MAX_BACKFILL`."""
    expr = CronExpression(record.expression, record.timezone)
    start, end = _aware(start, expr), _aware(end, expr)
    if start >= end:
        raise ValueError(
            f"backfill range is empty: from {utc_text(start)} must be before to {utc_text(end)}"
        )
    if expr.interval is not None:  # ``@every`` due times lie on the grid of the schedule
        anchor = record.next_run or record.last_run or record.created_at
        due = anchor.astimezone(UTC) - ((anchor - start) // expr.interval) * expr.interval
    else:
        due = next_due(expr, start - _MICROSECOND)
    found: list[datetime] = []
    while due < end:
        if len(found) == MAX_BACKFILL:
            raise ValueError(
                f"backfill of schedule {record.id!r} from {utc_text(start)} to {utc_text(end)}"
                f" covers more than {MAX_BACKFILL} due times: split it into smaller ranges"
            )
        found.append(due)
        due = next_due(expr, due)
    return found


def _aware(moment: datetime, expr: CronExpression) -> datetime:
    """A naive time is read in the schedule's zone."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=expr.zone)
    return moment.astimezone(UTC)


def run_data(record: ScheduleRecord, due: datetime) -> dict[str, Any]:
    """The data of the schedule's run for ``due``: its input plus ``scheduled_at``."""
    zone = CronExpression(record.expression, record.timezone).zone
    return {**(json.loads(record.input) or {}), SCHEDULED_AT: due.astimezone(zone).isoformat()}


async def backfill(
    engine: Engine, record: ScheduleRecord, start: datetime, end: datetime
) -> Backfill:
    """Start one run for each due time of ``record`` in ``[start, end)`` that has none."""
    now = engine.clock.now().astimezone(UTC)
    times = due_times(record, start, end)
    if times and times[-1] > now:
        raise ValueError(
            f"backfill of schedule {record.id!r} reaches {utc_text(times[-1])}, after now"
            f" ({utc_text(now)}): backfill covers past due times only; the schedule fires the"
            " later ones"
        )
    run_ids = [run_id_for(record.id, due) for due in times]
    started, priority = 0, Options.from_json(record.options).priority
    for first in range(0, len(times), _BATCH):
        ids = run_ids[first : first + _BATCH]
        existing = await asyncio.gather(*(engine.persistence.get_run(i) for i in ids))
        new = [(i, t) for i, t, r in zip(ids, times[first:], existing, strict=False) if r is None]
        await asyncio.gather(
            *(
                engine.start(record.workflow, run_data(record, due), run_id=i, priority=priority)
                for i, due in new
            )
        )
        started += len(new)
    return Backfill(record.id, times, run_ids, started)


async def trigger(engine: Engine, record: ScheduleRecord, key: str | None) -> str:
    """Start the schedule's run now (once per ``key``) and record it as its last run."""
    now = engine.clock.now().astimezone(UTC)
    run_id = trigger_run_id(record.id, key if key is not None else utc_text(now))
    try:
        started = await engine.start(
            record.workflow,
            run_data(record, now),
            run_id=run_id,
            priority=Options.from_json(record.options).priority,
        )
    except RunExists:  # a repeated key: its run has the first trigger's time in its data
        found = await engine.persistence.get_run(run_id)
        if found is None or found.workflow != record.workflow:
            raise
        return found.id
    if record.enabled and record.next_run is not None:
        # Only if the schedule did not move meanwhile: then its own last run is newer anyway.
        await engine.persistence.advance_schedule(
            record.id, record.next_run, record.next_run, last_run=now, last_run_id=started
        )
    return started


async def pause_if_failed(engine: Engine, record: ScheduleRecord, options: Options) -> bool:
    """Disable a ``pause_on_failure`` schedule whose last run ended FAILED, keeping the reason
    in its options; whether it did."""
    if not options.pause_on_failure or record.last_run_id is None:
        return False
    last = await engine.persistence.get_run(record.last_run_id)
    if last is None or last.status is not Status.FAILED:
        return False
    error = (last.error or "no error recorded").splitlines()[0][:200]
    reason = f"run {last.id} failed: {error}"
    paused = dataclasses.replace(options, paused_reason=reason)
    return await engine.persistence.set_schedule_enabled(
        record.id, False, None, options=paused.to_json()
    )


def cleared(record: ScheduleRecord) -> str | None:
    """The options to store when the schedule is enabled again (None: unchanged)."""
    options = Options.from_json(record.options)
    return None if options.paused_reason is None else options.as_given().to_json()


def carried(old: ScheduleRecord, new: ScheduleRecord) -> str:
    """``new``'s options with the pause reason of ``old`` (a replaced schedule stays paused)."""
    reason = Options.from_json(old.options).paused_reason
    options = dataclasses.replace(Options.from_json(new.options), paused_reason=reason)
    return options.to_json()


class CronOperations:
    """The manual operations of :class:`~treadle.Cron` (mixed into it)."""

    engine: Engine

    async def _get(self, id: str) -> ScheduleRecord:
        raise NotImplementedError

    async def trigger(self, id: str, *, key: str | None = None) -> str:
        """Start a run of schedule ``id`` now, whatever its due times and whether it is
        enabled; return the run id. Its data is the schedule's input with ``scheduled_at`` the
        trigger time.

        The run id is ``cron:<id>:trigger:<key>``: give a ``key`` (an id) to make a retried
        trigger start nothing; without one, the key is the trigger time, so each call starts a
        new run. The run counts as the schedule's last run (for ``overlap`` and
        ``pause_on_failure``). :class:`ScheduleNotFound` when there is no such schedule.
        """
        if key is not None:
            check_id(key, "trigger key")
        return await trigger(self.engine, await self._get(id), key)

    async def backfill(self, id: str, start: datetime, end: datetime) -> Backfill:
        """Start one run for every due time of schedule ``id`` in ``[start, end)`` (naive
        times are read in the schedule's zone), oldest first, each with the id and data a
        normal fire of that due time has: repeating a backfill, or one overlapping due times
        the schedule fired itself, starts each due time exactly once.

        The schedule's next due time and last run stay as they are. ``ValueError`` for an
        empty range, one reaching past now, or one of more than :data:`MAX_BACKFILL` due times;
        :class:`ScheduleNotFound` when there is no such schedule.
        """
        return await backfill(self.engine, await self._get(id), start, end)
