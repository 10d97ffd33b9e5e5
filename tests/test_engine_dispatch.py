"""The dispatcher with no room: it waits for room, never for an overdue timer (issue 11.0b)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

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


class _FlakyCheckpoints(treadle.MemoryPersistence):
    """Refuses the checkpoints of one run with a transient error, ``failures`` times."""

    def __init__(self, run_id: str, failures: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.failures = failures

    async def save_checkpoint(self, checkpoint: Any) -> Any:
        if checkpoint.run_id == self.run_id and self.failures > 0:
            self.failures -= 1
            raise treadle.PersistenceError("the database went away for a moment")
        return await super().save_checkpoint(checkpoint)


@pytest.mark.timeout(30)
async def test_a_run_whose_execution_keeps_failing_is_executed_again_ever_less_often(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[int] = []
    wf = treadle.new("flaky-db").step("a", lambda ctx, state: ran.append(1)).build()
    persistence = _FlakyCheckpoints("r-1", failures=4)
    engine = treadle.Engine(persistence)
    engine.register(wf)
    async with engine:
        await engine.start("flaky-db", run_id="r-1")
        final = await engine.wait("r-1", timeout=20)
    assert final.status is treadle.Status.COMPLETED
    assert len(ran) == 5  # once per failed checkpoint, then once more: no tight loop
    delays = [
        float(r.getMessage().rsplit(" in ", 1)[1].rstrip("s"))
        for r in caplog.records
        if "executed again in" in r.getMessage()
    ]
    assert delays == [0.1, 0.2, 0.4, 0.8]
