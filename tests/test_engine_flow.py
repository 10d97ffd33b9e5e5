"""Conformance: control flow — if/else_if/else, loops, parallel, sub-workflows and sleep
(API.md "Building a workflow" and "Semantics"). Every test runs on every persistence."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from enginekit import completed_steps, events, run_to_end, start, until, waiting_for

import treadle
from treadle import Context, State, Status


def mark(name: str, trail: list[str]) -> treadle.ActionStep:
    """A step that appends its name to ``trail``."""
    return treadle.step(name, lambda ctx, s: trail.append(ctx.step))


# if / else_if / else ---------------------------------------------------------------------


def triage(trail: list[str]) -> treadle.Workflow:
    return (
        treadle.new("triage")
        .if_("size", lambda s: s.data["total"] > 1000)
        .then(mark("review", trail))
        .else_if(lambda s: s.data["total"] > 100)
        .then(mark("check", trail), mark("check-more", trail))
        .else_(mark("auto", trail))
        .end()
        .step("after", lambda ctx, s: trail.append("after"))
        .build()
    )


@pytest.mark.parametrize(
    ("total", "expected", "branch"),
    [
        (5000, ["review"], 0),
        (500, ["check", "check-more"], 1),
        (50, ["auto"], 2),
    ],
)
async def test_if_runs_the_first_branch_whose_condition_holds_else_the_else_branch(
    engine: treadle.Engine, total: int, expected: list[str], branch: int
) -> None:
    trail: list[str] = []
    run_id = await start(engine, triage(trail), {"total": total})
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert trail == [*expected, "after"]
    [taken] = await events(engine, run_id, "branch_taken")
    assert taken.step == "size" and taken.detail["branch"] == branch


async def test_if_without_else_and_no_true_condition_runs_nothing(engine: treadle.Engine) -> None:
    trail: list[str] = []
    wf = (
        treadle.new("no-else")
        .if_("never", lambda s: False)
        .then(mark("a", trail))
        .else_if(lambda s: False)
        .then(mark("b", trail))
        .end()
        .step("after", lambda ctx, s: trail.append("after"))
        .build()
    )
    final = await run_to_end(engine, wf)
    assert final.status is Status.COMPLETED
    assert trail == ["after"]


async def test_if_conditions_read_data_written_by_earlier_steps_and_may_be_async(
    engine: treadle.Engine,
) -> None:
    trail: list[str] = []

    async def is_vip(state: State) -> bool:
        await asyncio.sleep(0)
        return bool(state.data["lookup"]["vip"])

    wf = (
        treadle.new("vip")
        .step("lookup", lambda ctx, s: {"vip": True})
        .if_("vip?", is_vip)
        .then(mark("gold", trail))
        .else_(mark("plain", trail))
        .end()
        .build()
    )
    final = await run_to_end(engine, wf)
    assert final.status is Status.COMPLETED
    assert trail == ["gold"]


async def test_a_condition_that_raises_fails_the_run(engine: treadle.Engine) -> None:
    wf = (
        treadle.new("bad-cond")
        .if_("broken", lambda s: s.data["missing"])
        .then(treadle.step("x", lambda c, s: None))
        .end()
        .build()
    )
    final = await run_to_end(engine, wf)
    assert final.status is Status.FAILED
    assert final.error is not None and "broken" in final.error


# Loops -----------------------------------------------------------------------------------


async def test_for_each_iterates_the_list_as_it_was_when_the_loop_began(
    engine: treadle.Engine,
) -> None:
    seen: list[tuple[Any, int | None]] = []

    def ship(ctx: Context, state: State) -> None:
        seen.append((ctx.item, ctx.index))
        state.data["items"].append("added-later")

    wf = (
        treadle.new("shipping")
        .loop("items-loop")
        .for_each("items")
        .do(treadle.step("ship", ship))
        .end()
        .build()
    )
    final = await run_to_end(engine, wf, {"items": ["a", "b", "c"]})
    assert final.status is Status.COMPLETED
    assert seen == [("a", 0), ("b", 1), ("c", 2)]


async def test_for_each_over_an_empty_list_runs_no_iteration(engine: treadle.Engine) -> None:
    trail: list[str] = []
    wf = treadle.new("empty").loop("l").for_each("items").do(mark("x", trail)).end().build()
    final = await run_to_end(engine, wf, {"items": []})
    assert final.status is Status.COMPLETED
    assert trail == []


async def test_for_each_over_a_missing_or_non_list_key_fails_the_run(
    engine: treadle.Engine,
) -> None:
    wf = (
        treadle.new("nolist")
        .loop("l")
        .for_each("items")
        .do(treadle.step("x", lambda c, s: None))
        .end()
        .build()
    )
    final = await run_to_end(engine, wf, {"items": "abc"})
    assert final.status is Status.FAILED
    assert final.error is not None and "items" in final.error


async def test_while_is_checked_before_each_iteration(engine: treadle.Engine) -> None:
    def bump(ctx: Context, state: State) -> None:
        state.data["n"] += 1

    wf = (
        treadle.new("while")
        .loop("count")
        .while_(lambda s: s.data["n"] < 3)
        .do(treadle.step("bump", bump))
        .end()
        .build()
    )
    assert (await run_to_end(engine, wf, {"n": 0})).data == {"n": 3}
    assert (await run_to_end(engine, wf, {"n": 7})).data == {"n": 7}, "no iteration at all"


async def test_break_when_is_checked_after_each_iteration(engine: treadle.Engine) -> None:
    def bump(ctx: Context, state: State) -> None:
        state.data["n"] += 1

    wf = (
        treadle.new("until")
        .loop("count")
        .break_when(lambda s: s.data["n"] >= 3)
        .do(treadle.step("bump", bump))
        .end()
        .build()
    )
    assert (await run_to_end(engine, wf, {"n": 0})).data == {"n": 3}
    assert (await run_to_end(engine, wf, {"n": 10})).data == {"n": 11}, "runs at least once"
    run_id = (await engine.runs(workflow="until", limit=1))[0].id
    [ended] = await events(engine, run_id, "loop_ended")
    assert ended.step == "count" and ended.detail["reason"] == "break_when"


async def test_max_iterations_ends_the_loop_normally_and_is_recorded_in_history(
    engine: treadle.Engine,
) -> None:
    trail: list[str] = []
    wf = (
        treadle.new("capped")
        .loop("forever")
        .while_(lambda s: True)
        .max_iterations(4)
        .do(mark("tick", trail))
        .end()
        .step("after", lambda ctx, s: trail.append("after"))
        .build()
    )
    run_id = await start(engine, wf)
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert trail == ["tick"] * 4 + ["after"]
    iterations = await events(engine, run_id, "loop_iteration")
    assert [e.detail["iteration"] for e in iterations] == [0, 1, 2, 3]
    [ended] = await events(engine, run_id, "loop_ended")
    assert ended.step == "forever" and ended.detail["iterations"] == 4
    assert ended.detail["reason"] == "max_iterations"


async def test_loop_body_may_be_a_sequence_and_steps_after_the_loop_run(
    engine: treadle.Engine,
) -> None:
    trail: list[str] = []
    body = (
        treadle.new("body")
        .step("pick", lambda c, s: trail.append(f"pick{c.item}"))
        .step("pack", lambda c, s: trail.append(f"pack{c.item}"))
        .build()
    )
    wf = (
        treadle.new("seq-loop")
        .loop("l")
        .for_each("xs")
        .do(body)
        .end()
        .step("done", lambda c, s: trail.append("done"))
        .build()
    )
    final = await run_to_end(engine, wf, {"xs": [1, 2]})
    assert final.status is Status.COMPLETED
    assert trail == ["pick1", "pack1", "pick2", "pack2", "done"]


# Parallel --------------------------------------------------------------------------------


async def test_parallel_wait_all_runs_branches_concurrently_on_the_same_data(
    engine: treadle.Engine,
) -> None:
    left_started = asyncio.Event()
    right_started = asyncio.Event()

    async def left(ctx: Context, state: State) -> None:
        left_started.set()
        await asyncio.wait_for(right_started.wait(), 2)  # deadlocks unless concurrent
        state.data["left"] = 1

    async def right(ctx: Context, state: State) -> None:
        right_started.set()
        await asyncio.wait_for(left_started.wait(), 2)
        state.data["right"] = 2

    wf = (
        treadle.new("par-all")
        .parallel("both", treadle.step("l", left), treadle.step("r", right))
        .wait_for(treadle.WaitAll)
        .step("after", lambda c, s: s.data["left"] + s.data["right"])
        .build()
    )
    run_id = await start(engine, wf, {"shared": True})
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert final.data == {"shared": True, "left": 1, "right": 2, "after": 3}
    [done] = await events(engine, run_id, "parallel_completed")
    assert sorted(done.detail["done"]) == ["l", "r"]


async def test_parallel_wait_any_completes_with_one_branch_and_cancels_the_others(
    engine: treadle.Engine,
) -> None:
    cancelled: list[str] = []

    async def slow(ctx: Context, state: State) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(ctx.step)
            raise

    wf = (
        treadle.new("par-any")
        .parallel(
            "race",
            treadle.step("slow", slow),
            treadle.step("fast", lambda c, s: "won"),
        )
        .wait_for(treadle.WaitAny)
        .step("after", lambda c, s: "after")
        .build()
    )
    run_id = await start(engine, wf)
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert final.data == {"fast": "won", "after": "after"}
    assert cancelled == ["slow"]
    assert completed_steps(await engine.history(run_id)) == ["fast", "after"]


async def test_parallel_wait_count_completes_when_n_branches_complete(
    engine: treadle.Engine,
) -> None:
    cancelled: list[str] = []

    async def slow(ctx: Context, state: State) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(ctx.step)
            raise

    wf = (
        treadle.new("par-count")
        .parallel(
            "two-of-three",
            treadle.step("a", lambda c, s: 1),
            treadle.step("b", slow),
            treadle.step("c", lambda c, s: 3),
        )
        .wait_count(2)
        .build()
    )
    final = await run_to_end(engine, wf)
    assert final.status is Status.COMPLETED
    assert final.data == {"a": 1, "c": 3}
    assert cancelled == ["b"]


@pytest.mark.parametrize(
    ("strategy", "count"),
    [(treadle.WaitAll, None), (treadle.WaitAny, None), (treadle.WaitCount, 2)],
)
async def test_parallel_fails_as_soon_as_its_wait_can_no_longer_be_met(
    engine: treadle.Engine, strategy: treadle.WaitStrategy, count: int | None
) -> None:
    hanging: list[str] = []

    def boom(ctx: Context, state: State) -> None:
        raise RuntimeError(f"{ctx.step} broke")

    async def hang(ctx: Context, state: State) -> None:
        hanging.append(ctx.step)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            hanging.append("cancelled")
            raise

    if strategy is treadle.WaitAll:
        branches = [treadle.step("bad", boom), treadle.step("hang", hang)]
    elif strategy is treadle.WaitAny:
        branches = [treadle.step("bad", boom), treadle.step("bad2", boom)]
    else:  # two of three needed, two fail while the third still hangs
        branches = [
            treadle.step("bad", boom),
            treadle.step("bad2", boom),
            treadle.step("hang", hang),
        ]
    builder = treadle.new(f"par-fail-{strategy.value}").parallel("p", *branches)
    builder = builder.wait_count(count) if count else builder.wait_for(strategy)
    final = await run_to_end(engine, builder.build(), timeout=3)
    assert final.status is Status.FAILED
    assert final.error is not None and "broke" in final.error
    if "hang" in [b.name for b in branches]:
        assert hanging == ["hang", "cancelled"]


async def test_parallel_branch_may_be_a_built_sequence(engine: treadle.Engine) -> None:
    trail: list[str] = []
    branch = (
        treadle.new("two-steps")
        .step("one", lambda c, s: trail.append("one"))
        .step("two", lambda c, s: trail.append("two"))
        .build()
    )
    wf = treadle.new("par-seq").parallel("p", branch, mark("solo", trail)).build()
    final = await run_to_end(engine, wf)
    assert final.status is Status.COMPLETED
    assert sorted(trail) == ["one", "solo", "two"]
    assert trail.index("one") < trail.index("two")


# Sub-workflows ---------------------------------------------------------------------------


async def test_sub_workflow_runs_a_child_with_input_and_stores_its_final_data(
    engine: treadle.Engine,
) -> None:
    child = (
        treadle.new("invoicing")
        .step("invoice", lambda c, s: f"invoice in {s.data['currency']}")
        .build()
    )
    parent = (
        treadle.new("order")
        .sub_workflow("invoice-step", "invoicing", {"currency": "EUR"})
        .step("after", lambda c, s: s.data["invoice-step"]["invoice"])
        .build()
    )
    engine.register(child)
    run_id = await start(engine, parent)
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    expected_child = {"currency": "EUR", "invoice": "invoice in EUR"}
    assert final.data == {"invoice-step": expected_child, "after": "invoice in EUR"}
    [child_state] = await engine.runs(workflow="invoicing")
    assert child_state.parent_id == run_id
    assert child_state.status is Status.COMPLETED
    assert child_state.data == expected_child
    assert (await engine.status(run_id)).parent_id is None
    kinds = [e.kind for e in await engine.history(run_id)]
    assert "child_started" in kinds and "child_completed" in kinds


async def test_a_failed_child_fails_the_sub_workflow_step(engine: treadle.Engine) -> None:
    def broken(ctx: Context, state: State) -> None:
        raise treadle.NonRetryableError("child broke")

    engine.register(treadle.new("broken-child").step("b", broken).build())
    parent = treadle.new("parent").sub_workflow("child", "broken-child").build()
    run_id = await start(engine, parent)
    final = await engine.wait(run_id, 5)
    assert final.status is Status.FAILED
    assert final.error is not None and "child" in final.error
    [child_state] = await engine.runs(workflow="broken-child")
    assert child_state.status is Status.FAILED and child_state.parent_id == run_id


async def test_sub_workflow_of_an_unregistered_workflow_fails_the_step(
    engine: treadle.Engine,
) -> None:
    parent = treadle.new("orphan").sub_workflow("child", "nobody-registered-this").build()
    final = await run_to_end(engine, parent)
    assert final.status is Status.FAILED
    assert final.error is not None and "nobody-registered-this" in final.error


async def test_parent_waits_durably_for_a_child_that_waits(engine: treadle.Engine) -> None:
    engine.register(treadle.new("slow-child").await_signal("go").build())
    parent = treadle.new("patient").sub_workflow("kid", "slow-child").build()
    run_id = await start(engine, parent)
    state = await until(engine, run_id, lambda s: s.status is Status.WAITING)
    [kid] = await engine.runs(workflow="slow-child")
    assert state.waiting_for == [f"run:{kid.id}"]
    await waiting_for(engine, kid.id, "signal:go")
    await engine.signal(kid.id, "go", {"ok": True})
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert final.data == {"kid": {"go": {"ok": True}}}


# Sleep -----------------------------------------------------------------------------------


async def test_sleep_is_a_durable_timer_that_fires_when_its_time_comes(
    engine: treadle.Engine, clock: treadle.FakeClock
) -> None:
    trail: list[str] = []
    wf = treadle.new("nap").sleep("cool-off", "1h").step("after", lambda c, s: trail.append("x"))
    run_id = await start(engine, wf.build())
    state = await waiting_for(engine, run_id, "timer:cool-off")
    assert state.status is Status.WAITING
    clock.advance("59m")
    await engine.settle()  # a timer due by now would have fired
    assert (await engine.status(run_id)).status is Status.WAITING and trail == []
    clock.advance("1m")
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED and trail == ["x"]
    assert [e.step for e in await events(engine, run_id, "timer_fired")] == ["cool-off"]
