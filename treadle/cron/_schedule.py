"""A stored schedule as the Cron shows it, and the errors about schedules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from treadle._errors import TreadleError
from treadle._state import Status


class ScheduleNotFound(TreadleError, LookupError):
    """No schedule has that id."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"schedule {schedule_id!r} does not exist")
        self.schedule_id = schedule_id


class ScheduleExists(TreadleError, ValueError):
    """A schedule with that id exists already."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(
            f"schedule {schedule_id!r} already exists: pass replace=True to update it, remove it"
            " first, or pick another id"
        )
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
    pause_on_failure: bool = False
    paused_reason: str | None = None
    """Why the schedule paused itself after a failed run (it is then disabled)."""
    priority: int = 0
    """The priority of the runs it starts."""
