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
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from treadle._control import encode_data
from treadle._duration import Duration, parse_duration
from treadle._errors import TreadleError, WorkflowNotFound
from treadle._state import Status
from treadle.cron._expression import CronExpression
from treadle.persistence._records import RunRecord, ScheduleRecord

if TYPE_CHECKING:
    from treadle._engine import Engine

__all__ = ["CATCH_UP", "OVERLAP", "Cron", "Schedule", "ScheduleExists", "ScheduleNotFound"]

log = logging.getLogger("treadle.cron")

CATCH_UP = ("one", "none", "all")
"""Missed-fire policies: one run for all missed due times, none, or one per missed due time."""
OVERLAP = ("allow", "skip", "buffer_one")
"""Overlap policies: start regardless, skip while the last run is active, or hold one fire."""

SCHEDULED_AT = "scheduled_at"
"""The key of the run data that holds the due time the run was started for."""

_MICROSECOND = timedelta(microseconds=1)
_MINUTE = timedelta(minutes=1)
_Ids = list[str]


class ScheduleNotFound(TreadleError, LookupError):
    """No schedule has that id."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"schedule {schedule_id!r} does not exist")
        self.schedule_id = schedule_id

    def __str__(self) -> str:
        return str(self.args[0])


class ScheduleExists(TreadleError, ValueError):
    """A schedule with that id exists already."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"schedule {schedule_id!r} already exists: remove it first or pick an id")
        self.schedule_id = schedule_id


@dataclass
class Schedule:
    """A stored schedule as :meth:`Cron.list` shows it (a snapshot; changing it changes nothing).

    ``next_run`` and ``last_run`` are nominal due times (before jitter), timezone-aware, UTC;
    ``next_run`` is ``None`` while the schedule is disabled. ``last_run_id`` and
    ``last_run_status`` describe the last run the schedule started.
    """

    id: str
    workflow: str
    expression: str
    input: dict[str, Any] | None
    enabled: bool
    timezone: str
    next_run: datetime | None
    last_run: datetime | None
    last_run_id: str | None
    last_run_status: Status | None
    catch_up: str
    overlap: str
    jitter: timedelta | None
    catch_up_window: timedelta | None = None


@dataclass(frozen=True)
class _Options:
    catch_up: str = "one"
    window: timedelta | None = None
    overlap: str = "allow"
    jitter: timedelta | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "catch_up": self.catch_up,
                "catch_up_window": _seconds(self.window),
                "overlap": self.overlap,
                "jitter": _seconds(self.jitter),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> _Options:
        raw = json.loads(text or "{}")
        window, jitter = raw.get("catch_up_window"), raw.get("jitter")
        return cls(
            catch_up=raw.get("catch_up", "one"),
            window=None if window is None else timedelta(seconds=window),
            overlap=raw.get("overlap", "allow"),
            jitter=None if jitter is None else timedelta(seconds=jitter),
        )


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def run_id_for(schedule_id: str, due: datetime) -> str:
    """The deterministic id of the run that schedule ``schedule_id`` starts for ``due``."""
    return f"cron:{schedule_id}:{_utc_text(due)}"


def _utc_text(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def jitter_delay(
    schedule_id: str, due: datetime, jitter: timedelta | None, gap: timedelta
) -> timedelta:
    """The delay of the run for ``due``: in ``[0, min(jitter, gap / 2))``, the same every time.

    ``gap`` is the time from ``due`` to the following due time; capping the delay at half of it
    keeps the runs of a schedule in the order of their due times.
    """
    if not jitter:
        return timedelta(0)
    bound = min(jitter, gap / 2)
    digest = hashlib.blake2b(f"{schedule_id}\n{_utc_text(due)}".encode(), digest_size=8).digest()
    fraction = int.from_bytes(digest, "big") / 2**64
    return timedelta(microseconds=int(bound / _MICROSECOND * fraction))


# Due times ---------------------------------------------------------------------------------------


def _next(expr: CronExpression, after: datetime) -> datetime:
    """The first due time strictly after ``after``, in UTC."""
    return expr.next_fire(after).astimezone(UTC)


def _latest(expr: CronExpression, first: datetime, at: datetime) -> datetime:
    """The latest due time in ``[first, at]``; ``first`` is a due time not after ``at``.

    ``@every`` due times lie on the grid ``first + k * interval``; five-field ones are found by
    bisection, so that a long downtime costs a few dozen evaluations, not one per missed time.
    """
    if expr.interval is not None:
        return first + ((at - first) // expr.interval) * expr.interval
    low, high = first, at  # low is a due time <= at; no due time lies in (high, at]
    while high - low > _MINUTE:
        middle = low + (high - low) / 2
        candidate = _next(expr, middle)
        if candidate <= at:
            low = candidate
        else:
            high = middle
    while (candidate := _next(expr, low)) <= at:
        low = candidate
    return low


def _first_from(expr: CronExpression, first: datetime, at: datetime) -> datetime:
    """The first due time at or after ``at`` on the schedule whose due times start at ``first``."""
    if at <= first:
        return first
    if expr.interval is not None:
        return first - ((first - at) // expr.interval) * expr.interval
    return _next(expr, at - _MICROSECOND)


def _after(expr: CronExpression, first: datetime, at: datetime) -> datetime:
    """The first due time after ``at`` of the schedule whose due times start at ``first``."""
    if at < first:
        return first
    if expr.interval is not None:
        return first + ((at - first) // expr.interval + 1) * expr.interval
    return _next(expr, at)


@dataclass(frozen=True)
class _Plan:
    """What one tick does with one due schedule."""

    starts: list[datetime]
    """Due times to start runs for, oldest first."""
    following: datetime | None
    """The new ``next_run``; ``None`` holds the schedule as it is (``buffer_one``)."""


# The Cron --------------------------------------------------------------------------------------


class Cron:
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
    ) -> Schedule:
        """Store a new enabled schedule and return it; its first due time is the first after now.

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
        """
        self._require_open()
        _check_id(id)
        expr = CronExpression(expression, timezone)
        options = _options(catch_up, catch_up_window, overlap, jitter)
        if not isinstance(workflow, str) or workflow not in self.engine.workflows:
            raise WorkflowNotFound(workflow)
        input_text = _input_json(id, input)
        now = self.engine.clock.now().astimezone(UTC)
        record = ScheduleRecord(
            id=id,
            workflow=workflow,
            expression=expression,
            timezone=timezone,
            input=input_text,
            enabled=True,
            options=options.to_json(),
            next_run=_next(expr, now),
            last_run=None,
            last_run_id=None,
            created_at=now,
            updated_at=now,
        )
        if not await self.engine.persistence.add_schedule(record):
            raise ScheduleExists(id)
        self._wake.set()
        return await self._schedule(record)

    async def remove(self, id: str) -> None:
        """Delete a schedule (its runs stay); :class:`ScheduleNotFound` if there is none."""
        self._require_open()
        if not await self.engine.persistence.remove_schedule(id):
            raise ScheduleNotFound(id)

    async def enable(self, id: str) -> None:
        """Enable a schedule: its next due time is the first after now (due times passed while
        it was disabled are not caught up). Enabling an enabled schedule changes nothing."""
        record = await self._get(id)
        if record.enabled:
            return
        expr = CronExpression(record.expression, record.timezone)
        next_run = _next(expr, self.engine.clock.now())
        if not await self.engine.persistence.set_schedule_enabled(id, True, next_run):
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
        options = _Options.from_json(record.options)
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
        )

    def _require_open(self) -> None:
        if not getattr(self.engine, "_open", True):
            raise RuntimeError("the engine is not open: use 'async with engine:' before the cron")

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
        options = _Options.from_json(record.options)
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
                await self.engine.start(record.workflow, data, run_id=run_id_for(record.id, due))
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
                _utc_text(now),
                _utc_text(plan.following),
            )
        return ids, plan.following + self._delay(record.id, expr, options, plan.following)

    def _delay(
        self, schedule_id: str, expr: CronExpression, options: _Options, due: datetime
    ) -> timedelta:
        if not options.jitter:
            return timedelta(0)
        return jitter_delay(schedule_id, due, options.jitter, _next(expr, due) - due)

    def _plan(
        self,
        schedule_id: str,
        expr: CronExpression,
        options: _Options,
        first: datetime,
        now: datetime,
        last: RunRecord | None,
    ) -> _Plan:
        """Decide, for a schedule whose ``first`` pending due time is due, what to start."""

        def planned(due: datetime) -> datetime:
            return due + self._delay(schedule_id, expr, options, due)

        # The pending due times whose (jittered) time has come: first .. latest.
        latest = _latest(expr, first, now)
        if latest > first and planned(latest) > now:
            latest = _latest(expr, first, latest - _MICROSECOND)
        following = _next(expr, latest)
        if last is not None and options.overlap != "allow":
            if not last.status.finished:
                return _Plan([], following if options.overlap == "skip" else None)
            ended = last.updated_at.astimezone(UTC)
            if options.overlap == "buffer_one" and ended > planned(first):
                # ``first`` came due while the last run was active: it was held, start it now;
                # the due times held with it are dropped, later ones wait for this run.
                return _Plan([first], _after(expr, first, ended))
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
        due = _first_from(expr, first, cutoff - (options.jitter or timedelta(0)))
        starts = []
        while due <= latest:
            if planned(due) >= cutoff:
                starts.append(due)
            due = _next(expr, due)
        return _Plan(starts, following)


# Checking input -----------------------------------------------------------------------------------


def _check_id(schedule_id: object) -> None:
    if not isinstance(schedule_id, str) or not schedule_id.strip():
        raise ValueError(f"schedule id must be a non-empty string, got {schedule_id!r}")
    if len(schedule_id) > 200 or any(c.isspace() or not c.isprintable() for c in schedule_id):
        raise ValueError(
            f"invalid schedule id {schedule_id!r}: use at most 200 printable characters"
            " without spaces"
        )


def _options(
    catch_up: str, window: Duration | None, overlap: str, jitter: Duration | None
) -> _Options:
    if catch_up not in CATCH_UP:
        raise ValueError(f"invalid catch_up {catch_up!r}: expected one of {', '.join(CATCH_UP)}")
    if overlap not in OVERLAP:
        raise ValueError(f"invalid overlap {overlap!r}: expected one of {', '.join(OVERLAP)}")
    window_value = _duration("catch_up_window", window)
    if window_value is not None and window_value <= timedelta(0):
        raise ValueError(f"invalid catch_up_window {window!r}: it must be greater than 0")
    if catch_up == "all" and window_value is None:
        raise ValueError(
            "catch_up='all' needs a catch_up_window (such as '6h'): it starts one run for"
            " every due time missed within it"
        )
    if catch_up == "none" and window_value is not None:
        raise ValueError("catch_up_window applies to catch_up='one' or 'all', not 'none'")
    if catch_up == "all" and overlap != "allow":
        raise ValueError(
            f"catch_up='all' may start several runs at once, which overlap={overlap!r} forbids:"
            " use catch_up='one' or overlap='allow'"
        )
    jitter_value = _duration("jitter", jitter)
    return _Options(catch_up, window_value, overlap, jitter_value or None)


def _duration(name: str, value: Duration | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"invalid {name}: {exc}") from None


def _input_json(schedule_id: str, value: dict[str, Any] | None) -> str:
    if value is None:
        return "null"
    where = f"input of schedule {schedule_id!r}"
    encode_data(value, where)  # a JSON object, or DataError saying why not
    if SCHEDULED_AT in value:
        raise ValueError(
            f"{where} must not contain {SCHEDULED_AT!r}: each run gets its due time there"
        )
    return json.dumps(value, separators=(",", ":"))
