"""``engine.settle()``: the test kit's way to wait until nothing more happens without an outside
event (API.md "Test kit"). Every test runs on every persistence."""

from __future__ import annotations

import asyncio

import pytest
from enginekit import start

import treadle
from treadle import Context, State, Status


async def slow(ctx: Context, state: State) -> str:
    await asyncio.sleep(0.02)  # real work takes time: settle must not return before it ends
    return ctx.step


async def test_settle_returns_once_a_run_and_its_child_have_completed(
    engine: treadle.Engine,
) -> None:
    child = treadle.new("settle-child").step("c1", slow).step("c2", slow).build()
    parent = (
        treadle.new("settle-parent")
        .step("p1", slow)
        .sub_workflow("kid", "settle-child", {"from": "parent"})
        .step("p2", slow)
        .build()
    )
    engine.register(child)
    run_id = await start(engine, parent)
    await engine.settle()
    state = await engine.status(run_id)
    assert state.status is Status.COMPLETED
    assert state.data["kid"] == {"from": "parent", "c1": "c1", "c2": "c2"}
    assert state.data["p2"] == "p2"
    children = await engine.runs(parent_id=run_id)
    assert [c.status for c in children] == [Status.COMPLETED]


async def test_settle_leaves_a_run_waiting_for_a_signal_until_it_comes(
    engine: treadle.Engine,
) -> None:
    wf = treadle.new("settle-signal").step("a", slow).await_signal("go").step("b", slow).build()
    run_id = await start(engine, wf)
    await engine.settle()
    waiting = await engine.status(run_id)
    assert waiting.status is Status.WAITING
    assert waiting.waiting_for == ["signal:go"]
    await engine.signal(run_id, "go", 7)
    await engine.settle()
    final = await engine.status(run_id)
    assert final.status is Status.COMPLETED
    assert final.data == {"a": "a", "go": 7, "b": "b"}


async def test_settle_after_moving_a_fake_clock_fires_the_timers_and_retries_due(
    engine: treadle.Engine, clock: treadle.FakeClock
) -> None:
    attempts: list[int] = []

    def flaky(ctx: Context, state: State) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("not yet")
        return ctx.attempt

    retry = treadle.RetryPolicy().attempts(2).backoff("1m", "1m")
    wf = treadle.new("settle-timers").sleep("nap", "1h").step("flaky", flaky, retry=retry).build()
    run_id = await start(engine, wf)
    await engine.settle()
    assert (await engine.status(run_id)).waiting_for == ["timer:nap"]
    clock.advance("1h")
    await engine.settle()
    assert (await engine.status(run_id)).waiting_for == ["retry:flaky"]
    assert attempts == [1]
    clock.advance("2m")
    await engine.settle()
    final = await engine.status(run_id)
    assert final.status is Status.COMPLETED
    assert final.data == {"flaky": 2}


async def test_settle_returns_at_once_on_an_engine_with_nothing_to_do(
    engine: treadle.Engine,
) -> None:
    await asyncio.wait_for(engine.settle(), 5)
    await asyncio.wait_for(engine.settle(), 5)


async def test_settle_on_an_engine_that_is_not_open_says_so() -> None:
    engine = treadle.Engine()
    with pytest.raises(RuntimeError, match="not open"):
        await engine.settle()
