"""The schedules the API and the dashboard show and change, through a :class:`treadle.Cron`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from .._engine import Engine
from .._errors import TreadleError
from ..cron import next_fires
from ._errors import ApiError
from ._json import schedule_json


class ScheduleManager(Protocol):
    """What the web layer needs of a :class:`treadle.Cron`."""

    async def add(
        self,
        id: str,
        workflow: str,
        expression: str,
        input: dict[str, Any] | None = None,
        *,
        timezone: str = "UTC",
    ) -> Any:
        """Add a schedule."""

    async def remove(self, id: str) -> Any:
        """Delete a schedule."""

    async def enable(self, id: str) -> Any:
        """Enable a schedule."""

    async def disable(self, id: str) -> Any:
        """Disable a schedule."""

    async def list(self) -> Sequence[Any]:
        """Every schedule."""


def _previews(schedule: Any, count: int) -> list[datetime]:
    if not schedule.enabled:
        return []
    start = getattr(schedule, "next_run", None)
    try:
        zone = getattr(schedule, "timezone", "UTC")
        if start is None:
            return next_fires(schedule.expression, datetime.now(UTC), count, zone)
        return [start, *next_fires(schedule.expression, start, count - 1, zone)]
    except ValueError:
        return []


class Schedules:
    """Schedules through the given cron, or a :class:`treadle.Cron` made on first use."""

    def __init__(self, engine: Engine, cron: ScheduleManager | None) -> None:
        self.engine = engine
        self._cron = cron

    def cron(self) -> ScheduleManager:
        """The schedule manager (a :class:`treadle.Cron` on the engine unless one was given)."""
        if self._cron is None:
            from ..cron import Cron

            cron: ScheduleManager = Cron(self.engine)
            self._cron = cron
            return cron
        return self._cron

    async def all(self, previews: int = 3) -> list[dict[str, Any]]:
        """Every schedule as JSON, by id, with its next fire times."""
        items = await self.cron().list()
        return [schedule_json(s, _previews(s, previews)) for s in sorted(items, key=_key)]

    async def one(self, schedule_id: str, previews: int = 5) -> dict[str, Any]:
        """One schedule as JSON; 404 ``ScheduleNotFound`` when there is none."""
        for schedule in await self.cron().list():
            if schedule.id == schedule_id:
                return schedule_json(schedule, _previews(schedule, previews))
        raise ApiError(404, "ScheduleNotFound", f"schedule {schedule_id!r} does not exist")

    async def add(
        self,
        schedule_id: str,
        workflow: str,
        expression: str,
        data: dict[str, Any] | None,
        timezone: str,
        options: dict[str, Any],
    ) -> dict[str, Any]:
        """Add a schedule (``options``: the Cron's catch_up, catch_up_window, overlap, jitter);
        400 for a bad expression, zone or option, 409 when the id is taken."""
        manager: Any = self.cron()  # a Cron takes the options as keywords
        try:
            await manager.add(schedule_id, workflow, expression, data, timezone=timezone, **options)
        except TreadleError:
            raise  # mapped in one place (ScheduleExists: 409, CronError/DataError: 400, ...)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, "BadRequest", str(exc)) from None
        return await self.one(schedule_id)

    async def remove(self, schedule_id: str) -> None:
        """Delete a schedule; 404 when there is none."""
        await self.cron().remove(schedule_id)

    async def set_enabled(self, schedule_id: str, enabled: bool) -> dict[str, Any]:
        """Enable or disable a schedule; 404 when there is none."""
        cron = self.cron()
        await (cron.enable(schedule_id) if enabled else cron.disable(schedule_id))
        return await self.one(schedule_id)


def _key(schedule: Any) -> str:
    return str(schedule.id)
