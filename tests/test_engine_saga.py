"""Conformance: failure and compensation (saga), and cancel (API.md "Semantics"). Every test
runs on every persistence."""

from __future__ import annotations

import asyncio
from typing import Any

from enginekit import events, run_to_end, start, until, until_status, waiting_for

import treadle
from treadle import Context, State, Status


class Ledger:
    """Records what steps and compensations did, in order."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.undone: list[Any] = []

    def do(self, ctx: Context, state: State) -> None:
        self.done.append(ctx.step)

    def undo(self, ctx: Context, state: State) -> None:
        self.undone.append(ctx.step if ctx.item is None else (ctx.step, ctx.item))

    def step(self, name: str, **options: Any) -> treadle.ActionStep:
        return treadle.step(name, self.do, compensate=self.undo, **options)


def fail(ctx: Context, state: State) -> None:
    raise treadle.NonRetryableError(f"{ctx.step} failed")


async def test_failed_step_compensates_completed_steps_in_reverse_completion_order(
    engine: treadle.Engine,
) -> None:
    ledger = Ledger()
    wf = (
        treadle.new("saga")
        .step("reserve", ledger.do, compensate=ledger.undo)
        .step("no-undo", ledger.do)
        .step("charge", ledger.do, compensate=ledger.undo)
        .step("ship", fail, compensate=ledger.undo)
        .step("never", ledger.do, compensate=ledger.undo)
        .build()
    )
    run_id = await start(engine, wf)
    final = await engine.wait(run_id, 5)
    assert final.status is Status.FAILED
    assert final.error is not None and "ship failed" in final.error
    assert ledger.done == ["reserve", "no-undo", "charge"]
    assert ledger.undone == ["charge", "reserve"], "the failed step itself is not compensated"
    history = await engine.history(run_id)
    kinds = [e.kind for e in history]
    assert kinds.index("compensating") < kinds.index("compensated") < kinds.index("run_failed")
    assert [e.step for e in history if e.kind == "compensated"] == ["charge", "reserve"]


async def test_compensation_of_loop_iterations_sees_each_item_in_reverse(
    engine: treadle.Engine,
) -> None:
    ledger = Ledger()
    wf = (
        treadle.new("loop-saga")
        .loop("each")
        .for_each("items")
        .do(ledger.step("book"))
        .end()
        .step("boom", fail)
        .build()
    )
    final = await run_to_end(engine, wf, {"items": ["a", "b", "c"]})
    assert final.status is Status.FAILED
    assert ledger.undone == [("book", "c"), ("book", "b"), ("book", "a")]


async def test_compensation_sees_the_run_data_and_may_change_it(engine: treadle.Engine) -> None:
    def release(ctx: Context, state: State) -> None:
        state.data["released"] = state.data["reserve"]

    wf = (
        treadle.new("comp-data")
        .step("reserve", lambda c, s: "seat-12", compensate=release)
        .step("boom", fail)
        .build()
    )
    final = await run_to_end(engine, wf)
    assert final.status is Status.FAILED
    assert final.data == {"reserve": "seat-12", "released": "seat-12"}


async def test_completed_steps_of_cancelled_parallel_branches_are_compensated(
    engine: treadle.Engine,
) -> None:
    ledger = Ledger()
    first_done = asyncio.Event()

    async def first(ctx: Context, state: State) -> None:
        ledger.done.append(ctx.step)
        first_done.set()

    async def hang(ctx: Context, state: State) -> None:
        await asyncio.sleep(30)

    async def winner(ctx: Context, state: State) -> None:
        await asyncio.wait_for(first_done.wait(), 5)
        ledger.done.append(ctx.step)

    slow_branch = (
        treadle.new("slow-branch")
        .step("first", first, compensate=ledger.undo)
        .step("hang", hang, compensate=ledger.undo)
        .build()
    )
    wf = (
        treadle.new("par-saga")
        .parallel("race", slow_branch, treadle.step("winner", winner, compensate=ledger.undo))
        .wait_for(treadle.WaitAny)
        .step("boom", fail)
        .build()
    )
    final = await run_to_end(engine, wf)
    assert final.status is Status.FAILED
    assert ledger.done == ["first", "winner"]
    assert ledger.undone == ["winner", "first"], "'hang' never completed: nothing to undo"


async def test_failed_parallel_branch_compensates_completed_steps_of_the_others(
    engine: treadle.Engine,
) -> None:
    ledger = Ledger()
    good_done = asyncio.Event()

    async def late_fail(ctx: Context, state: State) -> None:
        await asyncio.wait_for(good_done.wait(), 5)
        raise treadle.NonRetryableError("late failure")

    async def good(ctx: Context, state: State) -> None:
        ledger.done.append(ctx.step)
        good_done.set()

    wf = (
        treadle.new("par-fail-saga")
        .step("before", ledger.do, compensate=ledger.undo)
        .parallel(
            "p", treadle.step("good", good, compensate=ledger.undo), treadle.step("bad", late_fail)
        )
        .build()
    )
    final = await run_to_end(engine, wf)
    assert final.status is Status.FAILED
    assert ledger.undone == ["good", "before"]


async def test_failing_compensation_is_recorded_in_history_and_error_and_others_still_run(
    engine: treadle.Engine,
) -> None:
    ledger = Ledger()

    def broken_undo(ctx: Context, state: State) -> None:
        raise RuntimeError("refund service down")

    wf = (
        treadle.new("comp-fail")
        .step("reserve", ledger.do, compensate=ledger.undo)
        .step("charge", ledger.do, compensate=broken_undo)
        .step("boom", fail)
        .build()
    )
    run_id = await start(engine, wf)
    final = await engine.wait(run_id, 5)
    assert final.status is Status.FAILED
    assert final.error is not None
    assert "boom failed" in final.error and "refund service down" in final.error
    assert "charge" in final.error
    assert ledger.undone == ["reserve"]
    [failed] = await events(engine, run_id, "compensation_failed")
    assert failed.step == "charge" and "refund service down" in failed.detail["error"]


async def test_compensation_is_retried_with_its_steps_retry_policy(
    engine: treadle.Engine,
) -> None:
    attempts: list[int] = []

    def shaky_undo(ctx: Context, state: State) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("try again")

    retry = treadle.RetryPolicy().attempts(3).backoff("10ms", "20ms")
    wf = (
        treadle.new("comp-retry")
        .step("charge", lambda c, s: None, compensate=shaky_undo, retry=retry)
        .step("boom", fail)
        .build()
    )
    run_id = await start(engine, wf)
    final = await engine.wait(run_id, 5)
    assert final.status is Status.FAILED
    assert attempts == [1, 2, 3]
    assert final.error is not None and "compensation" not in final.error
    assert [e.step for e in await events(engine, run_id, "compensated")] == ["charge"]


# Cancel ----------------------------------------------------------------------------------


async def test_cancel_of_a_waiting_run_compensates_and_ends_cancelled(
    engine: treadle.Engine,
) -> None:
    ledger = Ledger()
    wf = (
        treadle.new("cancel-wait")
        .step("reserve", ledger.do, compensate=ledger.undo)
        .await_signal("payment")
        .step("never", ledger.do)
        .build()
    )
    run_id = await start(engine, wf)
    await waiting_for(engine, run_id, "signal:payment")
    await engine.cancel(run_id)
    final = await engine.wait(run_id, 5)
    assert final.status is Status.CANCELLED
    assert ledger.done == ["reserve"] and ledger.undone == ["reserve"]
    kinds = [e.kind for e in await engine.history(run_id)]
    assert "run_cancelled" in kinds and "run_failed" not in kinds


async def test_cancel_stops_a_running_step(engine: treadle.Engine) -> None:
    ledger = Ledger()
    started = asyncio.Event()
    stopped = asyncio.Event()

    async def long(ctx: Context, state: State) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.set()
            raise

    wf = (
        treadle.new("cancel-running")
        .step("reserve", ledger.do, compensate=ledger.undo)
        .step("long", long, compensate=ledger.undo)
        .build()
    )
    run_id = await start(engine, wf)
    await asyncio.wait_for(started.wait(), 5)
    await engine.cancel(run_id)
    final = await engine.wait(run_id, 5)
    assert final.status is Status.CANCELLED
    assert stopped.is_set()
    assert ledger.undone == ["reserve"]


async def test_cancel_of_a_paused_run_ends_cancelled(engine: treadle.Engine) -> None:
    run_id = await start(engine, treadle.new("cancel-paused").await_signal("go").build())
    await waiting_for(engine, run_id, "signal:go")
    await engine.pause(run_id)
    await until_status(engine, run_id, Status.PAUSED)
    await engine.cancel(run_id)
    assert (await engine.wait(run_id, 5)).status is Status.CANCELLED


async def test_cancel_cancels_the_children_of_the_run(engine: treadle.Engine) -> None:
    ledger = Ledger()
    engine.register(
        treadle.new("kid")
        .step("kid-step", ledger.do, compensate=ledger.undo)
        .await_signal("go")
        .build()
    )
    run_id = await start(engine, treadle.new("mother").sub_workflow("child", "kid").build())
    state = await until(engine, run_id, lambda s: s.status is Status.WAITING)
    child_id = state.waiting_for[0].removeprefix("run:")
    await waiting_for(engine, child_id, "signal:go")
    await engine.cancel(run_id)
    assert (await engine.wait(run_id, 5)).status is Status.CANCELLED
    child = await engine.wait(child_id, 5)
    assert child.status is Status.CANCELLED and child.parent_id == run_id
    assert ledger.undone == ["kid-step"]
