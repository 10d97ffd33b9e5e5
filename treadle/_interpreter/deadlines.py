"""A run's deadline, and what becomes of its children when it ends first.

The deadline (``runs.deadline_at``) is a timer like the others: a run being executed is asked
to cancel when it passes (a step under way is stopped), and a waiting run's wake-up time is
never later than it, so a parked run is woken at its deadline and cancelled then.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import cast

from .._errors import DeadlineExceeded
from .._state import EventKind
from . import cursor
from .control import Control
from .walk import Walk


def passed(driver: Walk) -> bool:
    """Whether the run's deadline has passed."""
    deadline = driver.record.deadline_at
    return deadline is not None and driver.host.clock.now() >= deadline


@contextlib.asynccontextmanager
async def enforced(driver: Walk, request: Callable[[Control], None]) -> AsyncIterator[None]:
    """While the run is walked, ask it to cancel (``request``) once its deadline passes."""
    deadline = driver.record.deadline_at
    if deadline is None or driver.failure is not None:
        yield
        return
    if passed(driver):
        request(Control.CANCEL)
        yield
        return

    async def expire() -> None:
        await driver.host.clock.sleep_until(deadline)
        request(Control.CANCEL)

    timer = asyncio.create_task(expire())
    try:
        yield
    finally:
        timer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await timer


def cancelled(driver: Walk) -> cursor.Failure:
    """Why a run that was asked to cancel compensates: its deadline, or a cancel."""
    if not passed(driver):
        return {"status": "cancelled", "error": "cancelled"}
    assert driver.record.deadline_at is not None
    error = DeadlineExceeded(driver.run_id, driver.record.deadline_at)
    driver.note(EventKind.DEADLINE_EXCEEDED, None, deadline=driver.record.deadline_at.isoformat())
    return {"status": "cancelled", "error": f"{type(error).__name__}: {error}"}


def wake(driver: Walk, wake_at: datetime | None) -> datetime | None:
    """A waiting run's wake-up time: no later than its deadline (while it has not failed)."""
    deadline = driver.record.deadline_at
    if deadline is None or driver.failure is not None:
        return wake_at
    return deadline if wake_at is None else min(wake_at, deadline)


def abandoned(nodes: cursor.Nodes, below: str = "") -> frozenset[str]:
    """The children started under ``below`` whose ``on_parent_end`` is ``"abandon"``."""
    return frozenset(e["child"] for e in _children(nodes, below) if e.get("end") == "abandon")


def children(nodes: cursor.Nodes, below: str) -> list[str]:
    """The children started under ``below`` that are to be cancelled when it loses."""
    return [e["child"] for e in _children(nodes, below) if e.get("end") != "abandon"]


def started(nodes: cursor.Nodes) -> frozenset[str]:
    """Every child whose sub-workflow step is under way."""
    return frozenset(e["child"] for e in _children(nodes, ""))


def _children(nodes: cursor.Nodes, below: str) -> list[cursor.ChildEntry]:
    return [
        cast(cursor.ChildEntry, entry)
        for path, entry in nodes.items()
        if path.startswith(below) and entry.get("k") == "subworkflow"
    ]
