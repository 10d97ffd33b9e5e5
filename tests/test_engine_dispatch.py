"""The dispatcher with no room: it waits for room, never for an overdue timer (issue 11.0b)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import treadle


async def _slow(ctx: treadle.Context, state: treadle.State) -> None:
    await asyncio.sleep(0.3)


def _nap_then_slow() -> treadle.Workflow:
    return treadle.new("nap").sleep("pause", "50ms").step("a", _slow).build()


@pytest.mark.timeout(20)
async def test_a_full_engine_keeps_running_its_steps_while_a_timer_is_overdue(
    tmp_path: Path,
) -> None:
    # One run fills the engine while the other's timer falls due: the dispatcher used to spin
    # on the overdue timer without ever yielding, so nothing ran and wait() never returned.
    persistence = treadle.SQLitePersistence(str(tmp_path / "t.db"))
    engine = treadle.Engine(persistence, max_concurrent_runs=1)
    engine.register(_nap_then_slow())
    async with engine:
        first = await engine.start("nap")
        second = await engine.start("nap")
        assert (await engine.wait(first, timeout=10)).status is treadle.Status.COMPLETED
        assert (await engine.wait(second, timeout=10)).status is treadle.Status.COMPLETED
