"""One engine, one event loop (issue 11.5)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import treadle


async def _noop(ctx: treadle.Context, state: treadle.State) -> None:
    pass


def _workflow() -> treadle.Workflow:
    return treadle.new("w").step("s", _noop).build()


@pytest.mark.timeout(30)
async def test_an_engine_used_from_other_threads_raises_at_once(tmp_path: Path) -> None:
    # The Flask pattern: one module-level engine, asyncio.run() around each call in threads.
    engine = treadle.Engine(treadle.SQLitePersistence(str(tmp_path / "t.db")))
    engine.register(_workflow())
    errors: list[BaseException] = []

    def request() -> None:
        try:
            asyncio.run(engine.start("w"))
        except BaseException as exc:
            errors.append(exc)

    async with engine:
        threads = [threading.Thread(target=request) for _ in range(8)]
        for thread in threads:
            thread.start()
        await asyncio.to_thread(lambda: [t.join() for t in threads])
        assert len(errors) == 8
        for error in errors:
            assert isinstance(error, treadle.WrongEventLoop)
            assert isinstance(error, RuntimeError)
            assert "MainThread" in str(error) and "one engine per event loop" in str(error)
        run_id = await engine.start("w")  # its own loop is fine
        assert (await engine.wait(run_id, timeout=5)).status is treadle.Status.COMPLETED


def test_an_engine_can_be_opened_again_after_close_under_another_loop() -> None:
    engine = treadle.Engine()
    engine.register(_workflow())

    async def use() -> treadle.Status:
        async with engine:
            return (await engine.wait(await engine.start("w"), timeout=5)).status

    assert asyncio.run(use()) is treadle.Status.COMPLETED
    assert asyncio.run(use()) is treadle.Status.COMPLETED
