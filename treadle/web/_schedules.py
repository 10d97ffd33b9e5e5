"""The schedules the API and the dashboard show and change, through a :class:`treadle.Cron`."""

from __future__ import annotations

from .._engine import Engine
from .._wire import Backfilled, BackfillSchedule, NewSchedule, Triggered, TriggerSchedule
from .._wire import Schedule as ScheduleShape
from ..cron import Cron


class Schedules:
    """Schedules through the given cron, or a :class:`treadle.Cron` made on first use."""

    def __init__(self, engine: Engine, cron: Cron | None) -> None:
        self.engine = engine
        self._cron = cron

    def cron(self) -> Cron:
        """The :class:`treadle.Cron` (one on the engine unless one was given)."""
        if self._cron is None:
            self._cron = Cron(self.engine)
        return self._cron

    async def all(self, previews: int = 3) -> list[ScheduleShape]:
        """Every schedule, by id, with its next fire times."""
        items = sorted(await self.cron().list(), key=lambda s: s.id)
        return [ScheduleShape.of(s, previews) for s in items]

    async def one(self, schedule_id: str, previews: int = 5) -> ScheduleShape:
        """One schedule; :class:`treadle.ScheduleNotFound` when there is none."""
        schedule = await self.cron().get(schedule_id)
        return ScheduleShape.of(schedule, previews)

    async def add(self, new: NewSchedule) -> ScheduleShape:
        """Add a schedule; the Cron's errors say what is wrong (CronError and ValueError: 400,
        ScheduleExists: 409, WorkflowNotFound: 404)."""
        await self.cron().add(
            new.id,
            new.workflow,
            new.expression,
            new.input,
            timezone=new.timezone or "UTC",
            **new.options(),
        )
        return await self.one(new.id)

    async def remove(self, schedule_id: str) -> None:
        """Delete a schedule; 404 when there is none."""
        await self.cron().remove(schedule_id)

    async def set_enabled(self, schedule_id: str, enabled: bool) -> ScheduleShape:
        """Enable or disable a schedule; 404 when there is none."""
        cron = self.cron()
        await (cron.enable(schedule_id) if enabled else cron.disable(schedule_id))
        return await self.one(schedule_id)

    async def trigger(self, schedule_id: str, body: TriggerSchedule) -> Triggered:
        """Start the schedule's run now; 404 when there is no schedule."""
        run_id = await self.cron().trigger(schedule_id, key=body.key)
        return Triggered(schedule_id=schedule_id, run_id=run_id)

    async def backfill(self, schedule_id: str, body: BackfillSchedule) -> Backfilled:
        """One run per due time in the range; ValueError (400) for a range that is not fit."""
        return Backfilled.of(await self.cron().backfill(schedule_id, body.start, body.end))
