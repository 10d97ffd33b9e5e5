"""An engine is an object you open, close and open again; two engines know nothing of each other."""

from __future__ import annotations

import asyncio
from pathlib import Path

import treadle


def test_an_engine_can_be_closed_and_opened_again_under_another_event_loop(
    tmp_path: Path,
) -> None:
    workflow = treadle.new("again").step("a", lambda ctx, state: ctx.attempt).build()
    engine = treadle.Engine(treadle.SQLitePersistence(str(tmp_path / "again.db")))
    engine.register(workflow)

    async def one_run() -> treadle.State:
        async with engine:
            run_id = await engine.start("again")
            return await engine.wait(run_id, 10)

    first = asyncio.run(one_run())
    second = asyncio.run(one_run())
    assert first.status is second.status is treadle.Status.COMPLETED
    assert first.id != second.id


async def test_two_engines_in_one_process_keep_their_own_workflows_and_runs(
    tmp_path: Path,
) -> None:
    left = treadle.Engine(treadle.SQLitePersistence(str(tmp_path / "left.db")))
    right = treadle.Engine()
    left.register(treadle.new("shared-name").step("a", lambda ctx, state: "left").build())
    right.register(treadle.new("shared-name").step("b", lambda ctx, state: "right").build())
    async with left, right:
        on_left = await left.wait(await left.start("shared-name"), 10)
        on_right = await right.wait(await right.start("shared-name"), 10)
        assert on_left.data == {"a": "left"}
        assert on_right.data == {"b": "right"}
        assert [r.id for r in await left.runs()] == [on_left.id]
        assert [r.id for r in await right.runs()] == [on_right.id]
