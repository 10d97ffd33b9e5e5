"""Rate-limited steps: before each attempt, a call is reserved of the step's limiter.

A reservation that may go now (or within :data:`IN_PROCESS` seconds) is waited for here; a
later one parks the run (WAITING on ``rate:<name>``, woken :data:`WAKE_EARLY` before the
reserved time, which it then waits for here: a claim's latency does not make it late) with the
reserved time in the step's cursor entry (``q``), so that the woken run calls on that
reservation instead of reserving again. The entry is written without ``q`` before the call: a
crash during the call reserves anew when the step runs again, as a new call should.

Reserved times are on the database's clock. A woken run compares its reservation with that
clock, not its own (a worker whose clock is ahead may wake it early: it waits, or parks again),
and a reservation that it finds more than :func:`late_by` past (a worker that died with the run,
a slow wake-up) is given up for a new one, so that late calls never pile up on the calls of
their time.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from .._clock import FakeClock
from .._nodes import ActionStep
from .._rates import RateLimit
from .._state import WaitKind, wait_key
from . import cursor
from .control import Suspend
from .walk import Walk

IN_PROCESS = 1.0
"""Seconds: a reservation due sooner than this is waited for in memory, not parked."""

WAKE_EARLY = 0.5
"""Seconds before its reserved time that a parked run is woken (less than :data:`IN_PROCESS`,
so that it then waits the rest in memory and calls on time)."""


def late_by(limit: RateLimit) -> float:
    """How late (seconds) a woken run may still call on its reservation: half an interval,
    at most a second."""
    return min(limit.interval / 2, 1.0)


async def take(driver: Walk, node: ActionStep, path: str) -> None:
    """Return once this attempt of ``node`` may call (a call of its limiter is reserved and
    due); raise :class:`Suspend` to park the run until it is."""
    limit = node.rate_limit
    assert limit is not None
    persistence = driver.host.persistence
    entry = cursor.action_at(driver.nodes, path)
    delay: float | None = None
    if entry is not None and "q" in entry:
        at = datetime.fromtimestamp(entry.pop("q"), driver.host.clock.now().tzinfo)
        driver.touch()
        await driver.flush()  # the reservation is used up once the call may begin
        delay = (at - await persistence.rate_clock()).total_seconds()
        if delay < -late_by(limit):
            delay = None
    if delay is None:
        reserved = await persistence.reserve_rate(
            limit.name, limit.limit, limit.per_seconds, limit.capacity
        )
        at, delay = reserved.at, reserved.delay
    if delay <= 0:
        return
    if delay <= IN_PROCESS and not isinstance(driver.host.clock, FakeClock):
        await asyncio.sleep(delay)
        return
    parked: cursor.ActionEntry = dict(entry) if entry else {"k": node.kind, "a": 0}  # type: ignore[assignment]
    parked["q"] = at.timestamp()
    driver.nodes[path] = parked
    driver.touch()
    early = 0.0 if isinstance(driver.host.clock, FakeClock) else WAKE_EARLY
    wake_at = driver.host.clock.now() + timedelta(seconds=delay - early)
    raise Suspend([wait_key(WaitKind.RATE, limit.name)], wake_at)
