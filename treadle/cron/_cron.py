"""Cron: schedules kept in the engine's persistence that start runs at their due times.

Exactly once per due time, with any number of engine processes on one database:

* the run started for a due time has a deterministic id, ``cron:<schedule id>:<due time UTC>``,
  and ``Engine.start`` with an existing id starts nothing, so a repeated or concurrent tick is
  harmless in the storage itself;
* a tick starts the run first, then moves the schedule's ``next_run`` on with a compare-and-set
  (:meth:`~treadle.persistence.SQLPersistence.advance_schedule`): a crash between the two only
  repeats an idempotent start, and of several tickers exactly one moves the schedule.

All times are computed in UTC; five-field expressions are evaluated in the schedule's zone by
:class:`~treadle.cron.CronExpression`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from treadle._duration import Duration, parse_duration
from treadle._errors import EngineNotOpen, WorkflowNotFound
from treadle._ids import MAX_SCHEDULE_ID_LENGTH, check_id
from treadle.cron._due import (
    due_after,
    first_due_from,
    jitter_delay,
    latest_due,
    next_due,
    run_id_for,
    utc_text,
)
from treadle.cron._expression import CronExpression
from treadle.cron._operations import CronOperations, carried, cleared, pause_if_failed
from treadle.cron._options import (
    CATCH_UP,
    OVERLAP,
    SCHEDULED_AT,
    Options,
    check_options,
    input_json,
    same_definition,
)
from treadle.cron._schedule import Schedule, ScheduleExists, ScheduleNotFound
from treadle.persistence._records import RunRecord, ScheduleRecord

if TYPE_CHECKING:
    from treadle._engine import Engine

__all__ = [
    "CATCH_UP",
    "OVERLAP",
    "SCHEDULED_AT",
    "Cron",
    "Schedule",
    "ScheduleExists",
    "ScheduleNotFound",
    "jitter_delay",
    "run_id_for",
]

log = logging.getLogger("treadle.cron")

_MICROSECOND = timedelta(microseconds=1)
_Ids = list[str]


@dataclass(frozen=True)
class _Plan:
    """What one tick does with one due schedule."""

    starts: list[datetime]
    """Due times to start runs for, oldest first."""
    following: datetime | None
    """The new ``next_run``; ``None`` holds the schedule as it is (``buffer_one``)."""


# The Cron --------------------------------------------------------------------------------------


class Cron(CronOperations):
    """Starts runs of registered workflows on schedules kept in the engine's persistence.

    ``cron = Cron(engine)``; :meth:`add`, :meth:`remove`, :meth:`enable`, :meth:`disable` and
    :meth:`list` manage schedules (the engine must be open); :meth:`start` / :meth:`stop` (or
    ``async with cron:``) run the ticker, which sleeps until the earliest due time, wakes when a
    :class:`~treadle.FakeClock` moves, and polls every ``poll_interval`` seconds (default: the
    engine's) for schedules changed by other processes. Any number of Crons, in any number of
    processes on one database, start one run per due time.

    ``grace`` is how late a due time may be handled and still count as on time for
    ``catch_up="none"`` (and the least ``catch_up_window``).
    """

    def __init__(
        self, engine: Engine, *, poll_interval: float | None = None, grace: Duration = 60.0
    ) -> None:
        self.engine = engine
        self.poll_interval = engine.poll_interval if poll_interval is None else poll_interval
        self.grace = parse_duration(grace)
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._skipped: set[str] = set()
        engine.clock.on_change(self._wake.set)

    # Managing schedules ----------------------------------------------------------------------

    async def add(
        self,
        id: str,
        workflow: str,
        expression: str,
        input: dict[str, Any] | None = None,
        *,
        timezone: str = "UTC",
        catch_up: str = "one",
        catch_up_window: Duration | None = None,
        overlap: str = "allow",
        jitter: Duration | None = None,
        pause_on_failure: bool = False,
        replace: bool = False,
        priority: int = 0,
    ) -> Schedule:
        """Store a new enabled schedule and return it; its first due time is the first after now.

        With ``replace=True`` an existing schedule of that id is updated in place instead (the
        deploy pattern: add every schedule at each start): an unchanged one is left exactly as
        it is; a changed one keeps its last run, its enabled state and, while its expression
        and time zone stay the same, its next due time. Without it a taken id raises
        :class:`ScheduleExists`.

        Everything is checked before anything is stored: a bad expression or time zone raises
        :class:`~treadle.cron.CronError`, bad options or input a ``ValueError``
        (:class:`~treadle.DataError` for input that is not a JSON object), a workflow not
        registered with this engine :class:`~treadle.WorkflowNotFound`, and a taken id
        :class:`ScheduleExists` (a ``ValueError``).

        ``input`` becomes the data of every run, plus ``data["scheduled_at"]``: the due time as
        ISO 8601 text in the schedule's zone. ``catch_up`` decides what happens to due times
        missed while no process ran: ``"one"`` starts one run for the latest of them,
        ``"none"`` starts none, ``"all"`` one for each within ``catch_up_window`` (required).
        ``catch_up_window`` also limits ``"one"``: a due time older than that is dropped.
        ``overlap``: ``"allow"`` starts runs regardless, ``"skip"`` starts none while the
        schedule's last run is unfinished, ``"buffer_one"`` holds the first such due time and
        starts it once the last run has finished (later ones meanwhile are dropped). ``jitter``
        delays each run by up to that much, the same for the same due time.
        ``pause_on_failure`` disables the schedule when the last run it started ends FAILED
        (before it starts another), with the reason in ``Schedule.paused_reason``.
        ``priority`` is the priority of every run it starts (see ``Engine.start``).
        """
        self._require_open()
        check_id(id, "schedule id", max_length=MAX_SCHEDULE_ID_LENGTH)
        expr = CronExpression(expression, timezone)
        options = check_options(
            catch_up, catch_up_window, overlap, jitter, pause_on_failure, priority
        )
        if not isinstance(workflow, str) or workflow not in self.engine.workflows:
            raise WorkflowNotFound(workflow)
        input_text = input_json(id, input)
        now = self.engine.clock.now().astimezone(UTC)
        record = ScheduleRecord(
            id=id,
            workflow=workflow,
            expression=expression,
            timezone=timezone,
            input=input_text,
            enabled=True,
            options=options.to_json(),
            next_run=next_due(expr, now),
            last_run=None,
            last_run_id=None,
            created_at=now,
            updated_at=now,
        )
        if await self.engine.persistence.add_schedule(record):
            self._wake.set()
            return await self._schedule(record)
        if not replace:
            raise ScheduleExists(id)
        return await self._replace(record)

    async def _replace(self, new: ScheduleRecord) -> Schedule:
        """Store ``new`` over the schedule of its id, keeping what that schedule has done."""
        persistence = self.engine.persistence
        old = await persistence.get_schedule(new.id)
        if old is not None and same_definition(old, new):
            return await self._schedule(old)
        if old is not None:
            if (old.expression, old.timezone) == (new.expression, new.timezone) and old.next_run:
                new = dataclasses.replace(new, next_run=old.next_run)
            await persistence.remove_schedule(new.id)
        if not await persistence.add_schedule(new):
            # Another process stored this id between the two writes: fine if it is this one.
            current = await persistence.get_schedule(new.id)
            if current is not None and same_definition(current, new):
                return await self._schedule(current)
            raise ScheduleExists(new.id)
        if old is not None and new.next_run is not None and old.last_run is not None:
            await persistence.advance_schedule(
                new.id, new.next_run, new.next_run, old.last_run, old.last_run_id
            )
        if old is not None and not old.enabled:
            await persistence.set_schedule_enabled(new.id, False, None, carried(old, new))
        self._wake.set()
        return await self.get(new.id)

    async def remove(self, id: str) -> None:
        """Delete a schedule (its runs stay); :class:`ScheduleNotFound` if there is none."""
        self._require_open()
        if not await self.engine.persistence.remove_schedule(id):
            raise ScheduleNotFound(id)

    async def enable(self, id: str) -> None:
        """Enable a schedule: its next due time is the first after now (due times passed while
        it was disabled are not caught up) and its ``paused_reason`` is cleared. Enabling an
        enabled schedule changes nothing."""
        record = await self._get(id)
        if record.enabled:
            return
        expr = CronExpression(record.expression, record.timezone)
        next_run = next_due(expr, self.engine.clock.now())
        persistence = self.engine.persistence
        if not await persistence.set_schedule_enabled(id, True, next_run, cleared(record)):
            raise ScheduleNotFound(id)
        self._wake.set()

    async def disable(self, id: str) -> None:
        """Disable a schedule: it starts nothing until enabled again (``next_run`` is None)."""
        await self._get(id)
        if not await self.engine.persistence.set_schedule_enabled(id, False, None):
            raise ScheduleNotFound(id)

    async def get(self, id: str) -> Schedule:
        """One schedule; :class:`ScheduleNotFound` if there is none."""
        return await self._schedule(await self._get(id))

    async def list(self) -> builtins.list[Schedule]:
        """Every schedule, by id, with its next and last due times and its last run's status."""
        self._require_open()
        records = await self.engine.persistence.list_schedules()
        return [await self._schedule(record) for record in records]

    async def _get(self, id: str) -> ScheduleRecord:
        self._require_open()
        record = await self.engine.persistence.get_schedule(id)
        if record is None:
            raise ScheduleNotFound(id)
        return record

    async def _schedule(self, record: ScheduleRecord) -> Schedule:
        options = Options.from_json(record.options)
        status = None
        if record.last_run_id is not None:
            run = await self.engine.persistence.get_run(record.last_run_id)
            status = None if run is None else run.status
        data = json.loads(record.input)
        return Schedule(
            id=record.id,
            workflow=record.workflow,
            expression=record.expression,
            input=None if data is None else dict(data),
            enabled=record.enabled,
            timezone=record.timezone,
            next_run=None if record.next_run is None else record.next_run.astimezone(UTC),
            last_run=None if record.last_run is None else record.last_run.astimezone(UTC),
            last_run_id=record.last_run_id,
            last_run_status=status,
            catch_up=options.catch_up,
            overlap=options.overlap,
            jitter=options.jitter,
            catch_up_window=options.window,
            pause_on_failure=options.pause_on_failure,
            paused_reason=options.paused_reason,
            priority=options.priority,
        )

    def _require_open(self) -> None:
        if not getattr(self.engine, "_open", True):
            raise EngineNotOpen("the engine is not open: use 'async with engine:' before the cron")

    # Running ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the ticker in the background (the engine must be open)."""
        self._require_open()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="treadle-cron")

    async def stop(self) -> None:
        """Stop the ticker; runs already started go on in the engine."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Cron:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def tick(self) -> builtins.list[str]:
        """Handle every schedule that is due now, once; return the ids of the runs started.

        The background ticker calls this; tests (with a FakeClock) may call it directly. Ticking
        again, here or in another process, starts nothing twice.
        """
        started, _ = await self._tick()
        return started

    async def _loop(self) -> None:
        while True:
            wake: datetime | None = None
            try:
                if getattr(self.engine, "_open", True):  # a closed engine: wait for it quietly
                    _, wake = await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cron: tick failed; retrying")
            timeout = self.poll_interval
            if wake is not None:
                left = (wake - self.engine.clock.now()).total_seconds()
                timeout = min(timeout, max(0.0, left))
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()

    async def _tick(self) -> tuple[_Ids, datetime | None]:
        async with self._lock:
            self._require_open()
            started: builtins.list[str] = []
            wake: datetime | None = None
            for record in await self.engine.persistence.list_schedules():
                try:
                    ids, due = await self._tick_schedule(record)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("cron: schedule %r: tick failed; retrying", record.id)
                    continue
                started.extend(ids)
                if due is not None and (wake is None or due < wake):
                    wake = due
            return started, wake

    async def _tick_schedule(self, record: ScheduleRecord) -> tuple[_Ids, datetime | None]:
        """Start what is due of one schedule; return the runs and when it is next due here
        (``None``: nothing to wait for but the poll)."""
        if not record.enabled or record.next_run is None:
            return [], None
        expr = CronExpression(record.expression, record.timezone)
        options = Options.from_json(record.options)
        if await pause_if_failed(self.engine, record, options):
            log.warning("cron: schedule %r paused: its last run failed", record.id)
            return [], None
        now = self.engine.clock.now().astimezone(UTC)
        first = record.next_run.astimezone(UTC)
        planned = first + self._delay(record.id, expr, options, first)
        if now < planned:
            return [], planned
        if record.workflow not in self.engine.workflows:
            # Another process may have it registered; leave the schedule to that one.
            if record.id not in self._skipped:
                self._skipped.add(record.id)
                log.warning(
                    "cron: schedule %r is due but workflow %r is not registered here",
                    record.id,
                    record.workflow,
                )
            return [], None
        self._skipped.discard(record.id)
        last = None
        if options.overlap != "allow" and record.last_run_id is not None:
            last = await self.engine.persistence.get_run(record.last_run_id)
        plan = self._plan(record.id, expr, options, first, now, last)
        if plan.following is None:
            return [], None
        ids = []
        base = json.loads(record.input) or {}
        for due in plan.starts:
            data = {**base, SCHEDULED_AT: due.astimezone(expr.zone).isoformat()}
            ids.append(
                await self.engine.start(
                    record.workflow,
                    data,
                    run_id=run_id_for(record.id, due),
                    priority=options.priority,
                )
            )
        last_due = plan.starts[-1] if plan.starts else None
        won = await self.engine.persistence.advance_schedule(
            record.id,
            record.next_run,
            plan.following,
            last_run=last_due,
            last_run_id=None if last_due is None else ids[-1],
        )
        if not won:
            return ids, None  # another ticker moved it; the next poll reads the new state
        if len(plan.starts) != 1:
            log.info(
                "cron: schedule %r started %d runs for due times up to %s; next due %s",
                record.id,
                len(plan.starts),
                utc_text(now),
                utc_text(plan.following),
            )
        return ids, plan.following + self._delay(record.id, expr, options, plan.following)

    def _delay(
        self, schedule_id: str, expr: CronExpression, options: Options, due: datetime
    ) -> timedelta:
        if not options.jitter:
            return timedelta(0)
        return jitter_delay(schedule_id, due, options.jitter, next_due(expr, due) - due)

    def _plan(
        self,
        schedule_id: str,
        expr: CronExpression,
        options: Options,
        first: datetime,
        now: datetime,
        last: RunRecord | None,
    ) -> _Plan:
        """Decide, for a schedule whose ``first`` pending due time is due, what to start."""

        def planned(due: datetime) -> datetime:
            return due + self._delay(schedule_id, expr, options, due)

        # The pending due times whose (jittered) time has come: first .. latest.
        latest = latest_due(expr, first, now)
        if latest > first and planned(latest) > now:
            latest = latest_due(expr, first, latest - _MICROSECOND)
        following = next_due(expr, latest)
        if last is not None and options.overlap != "allow":
            if not last.status.finished:
                return _Plan([], following if options.overlap == "skip" else None)
            ended = last.updated_at.astimezone(UTC)
            if options.overlap == "buffer_one" and ended > planned(first):
                # ``first`` came due while the last run was active: it was held, start it now;
                # the due times held with it are dropped, later ones wait for this run.
                return _Plan([first], due_after(expr, first, ended))
        if options.catch_up == "none":
            late = now - planned(latest)
            return _Plan([latest] if late <= self.grace else [], following)
        window = None if options.window is None else max(options.window, self.grace)
        if options.catch_up == "one":
            if window is not None and now - planned(latest) > window:
                return _Plan([], following)
            return _Plan([latest], following)
        assert window is not None  # catch_up="all" needs a window (checked at add)
        cutoff = now - window
        due = first_due_from(expr, first, cutoff - (options.jitter or timedelta(0)))
        starts = []
        while due <= latest:
            if planned(due) >= cutoff:
                starts.append(due)
            due = next_due(expr, due)
        return _Plan(starts, following)
