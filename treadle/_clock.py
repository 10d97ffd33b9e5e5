"""Time as the engine sees it: the real clock, or a fake one that tests move by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """A source of the current time for timers, retries and schedules."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the time jumps (a real clock never does)."""

    async def sleep_until(self, when: datetime) -> None:
        """Return once ``now() >= when``."""


class RealClock:
    """The system clock, in UTC."""

    def now(self) -> datetime:
        """The current time, UTC."""
        return datetime.now(UTC)

    def on_change(self, callback: Callable[[], None]) -> None:
        """Nothing to do: real time never jumps."""

    async def sleep_until(self, when: datetime) -> None:
        """Sleep until ``when``."""
        delay = (when - self.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


class FakeClock:
    """A clock that stands still until :meth:`advance` or :meth:`set` moves it.

    Hand it to ``Engine(clock=...)`` (and so to ``Cron``) to test timers, retries with backoff
    and schedules without waiting: ``clock.advance("1h")`` wakes whatever became due.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2030, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._callbacks: list[Callable[[], None]] = []
        self._changed = asyncio.Event()

    def now(self) -> datetime:
        """The fake current time."""
        return self._now

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every move."""
        self._callbacks.append(callback)

    def set(self, when: datetime) -> None:
        """Move to ``when`` (forwards only)."""
        if when < self._now:
            raise ValueError(f"FakeClock only moves forwards: {when} is before {self._now}")
        self._now = when
        for callback in list(self._callbacks):
            callback()
        self._changed.set()
        self._changed = asyncio.Event()

    def advance(self, delta: timedelta | float | str) -> None:
        """Move forwards by a duration (timedelta, seconds or ``"1h30m"``)."""
        from ._duration import parse_duration

        self.set(self._now + parse_duration(delta))

    async def sleep_until(self, when: datetime) -> None:
        """Wait until the clock has been moved to ``when`` or later."""
        while self._now < when:
            await self._changed.wait()
