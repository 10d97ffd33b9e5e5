"""The parallel map (``loop(...).for_each(key).parallel(max=n)``), on every persistence: results
in order, a bounded number of iterations at once, the wait strategies, tolerated failures, a
child run per element, merged writes, bad input, and a cursor that does not grow with the
number of elements."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from enginekit import events, run_to_end, start

import treadle
from treadle import Context, State, Status


def mapper(
    name: str, body: treadle.StepLike, max: int = 3, **options: Any
) -> treadle.MapBuilder[treadle.Builder]:
    """A workflow that maps ``body`` over ``data["items"]`` (the map still open)."""
    return treadle.new(name).loop("each").for_each("items").parallel(max, **options).do(body)


async def test_the_body_runs_per_element_at_most_max_at_once_and_results_come_in_order(
    engine: treadle.Engine,
) -> None:
    running, peak, seen = 0, 0, []

    async def ship(ctx: Context, state: State) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        seen.append((ctx.item, ctx.index, ctx.idempotency_key))
        await asyncio.sleep(0.002 * (7 - ctx.item % 7))  # finish out of order
        running -= 1
        return ctx.item * 10

    wf = mapper("ship-all", treadle.step("ship", ship), max=4).end().build()
    final = await run_to_end(engine, wf, {"items": list(range(20))})
    assert final.status is Status.COMPLETED, final.error
    assert final.data["each"] == [i * 10 for i in range(20)]
    assert "ship" not in final.data, "a map's step values are its results"
    assert peak == 4
    assert sorted((item, index) for item, index, _ in seen) == [(i, i) for i in range(20)]
    assert {key for _, _, key in seen} == {f"{final.id}/each#{i}/ship" for i in range(20)}


async def test_branch_writes_to_the_data_meet_by_the_parallel_merge_rules(
    engine: treadle.Engine,
) -> None:
    def log(ctx: Context, state: State) -> None:
        state.data["log"].append(ctx.item)
        state.data.setdefault("by_item", {})[str(ctx.item)] = ctx.index

    wf = mapper("merge", treadle.step("log", log), max=5).end().build()
    final = await run_to_end(engine, wf, {"items": list("abcdefgh"), "log": []})
    assert final.status is Status.COMPLETED, final.error
    assert sorted(final.data["log"]) == list("abcdefgh"), "every append is kept"
    assert final.data["by_item"] == {c: i for i, c in enumerate("abcdefgh")}
    assert final.data["each"] == [None] * 8
    assert not await events(engine, final.id, "data_conflict")


async def test_wait_any_completes_on_the_first_iteration_and_cancels_the_others(
    engine: treadle.Engine,
) -> None:
    async def race(ctx: Context, state: State) -> Any:
        if ctx.item != "fast":
            await asyncio.Event().wait()
        return ctx.item

    wf = mapper("race", treadle.step("race", race), max=5).wait_for(treadle.WaitAny).end().build()
    final = await run_to_end(engine, wf, {"items": ["slow", "fast", "slow"]})
    assert final.status is Status.COMPLETED, final.error
    assert final.data["each"] == [None, "fast", None]
    (ended,) = await events(engine, final.id, "loop_ended")
    assert ended.detail == {"iterations": 1, "reason": "wait met"}


async def test_wait_count_needs_that_many_iterations(engine: treadle.Engine) -> None:
    def maybe(ctx: Context, state: State) -> Any:
        if ctx.item % 2:
            raise treadle.NonRetryableError(f"odd {ctx.item}")
        return ctx.item

    ok = mapper("count-ok", treadle.step("m", maybe), max=2).wait_count(2).end().build()
    final = await run_to_end(engine, ok, {"items": [1, 2, 3, 4]})
    assert final.status is Status.COMPLETED, final.error
    assert [r for r in final.data["each"] if r is not None] == [2, 4]
    too_many = mapper("count-no", treadle.step("m2", maybe), max=2).wait_count(3).end().build()
    failed = await run_to_end(engine, too_many, {"items": [1, 2, 3, 4]})
    assert failed.status is Status.FAILED
    assert failed.error is not None and "odd" in failed.error


async def test_tolerated_failures_leave_none_and_one_more_fails_the_map(
    engine: treadle.Engine,
) -> None:
    def picky(ctx: Context, state: State) -> Any:
        if ctx.item < 0:
            raise treadle.NonRetryableError(f"negative {ctx.item}")
        return ctx.item

    two = mapper("tol", treadle.step("p", picky), tolerate=2).end().build()
    final = await run_to_end(engine, two, {"items": [1, -1, 2, -2, 3]})
    assert final.status is Status.COMPLETED, final.error
    assert final.data["each"] == [1, None, 2, None, 3]
    failed_iterations = [
        e.detail["iteration"]
        for e in await events(engine, final.id, "loop_iteration")
        if e.detail.get("failed")
    ]
    assert sorted(failed_iterations) == [1, 3]

    tenth = mapper("tol-frac", treadle.step("q", picky), tolerate=0.25).end().build()
    failed = await run_to_end(engine, tenth, {"items": [1, -1, 2, -2, 3, 4, 5, 6]})
    assert failed.status is Status.COMPLETED, "25% of 8 is 2 failures"
    worse = await run_to_end(engine, tenth, {"items": [1, -1, 2, -2, -3, 4, 5, 6]})
    assert worse.status is Status.FAILED
    assert worse.error is not None
    assert "3 of 8 iterations failed, more than the 2 tolerated" in worse.error


async def test_a_failing_iteration_fails_the_map_and_compensates_completed_steps(
    engine: treadle.Engine,
) -> None:
    undone: list[Any] = []

    def ship(ctx: Context, state: State) -> None:
        if ctx.item == "bad":
            raise treadle.NonRetryableError("cannot ship")

    def unship(ctx: Context, state: State) -> None:
        undone.append(ctx.item)

    body = treadle.step("ship", ship, compensate=unship)
    wf = mapper("undo", body, max=1).end().build()
    final = await run_to_end(engine, wf, {"items": ["a", "b", "bad", "c"]})
    assert final.status is Status.FAILED
    assert final.error is not None and "each" in final.error and "cannot ship" in final.error
    assert undone == ["b", "a"], "completed iterations compensated in reverse, none after"


async def test_a_child_per_element_with_its_input_from_the_element(
    engine: treadle.Engine,
) -> None:
    child = treadle.new("invoice").step("bill", lambda c, s: {"billed": s.data["n"]}).build()
    engine.register(child)
    parent = (
        treadle.new("invoices")
        .loop("each")
        .for_each("orders")
        .parallel(max=2)
        .do(
            treadle.new("one-invoice")
            .sub_workflow("bill-one", "invoice", input=lambda s, item: {"n": item["n"]})
            .build()
        )
        .end()
        .build()
    )
    final = await run_to_end(engine, parent, {"orders": [{"n": i} for i in range(5)]}, 10)
    assert final.status is Status.COMPLETED, final.error
    assert [r["bill"] for r in final.data["each"]] == [{"billed": i} for i in range(5)]
    children = [e.detail["child"] for e in await events(engine, final.id, "child_started")]
    assert len(set(children)) == 5
    inputs = []
    for child_id in children:
        state = await engine.status(child_id)
        assert state.parent_id == final.id and state.status is Status.COMPLETED
        inputs.append(state.data["n"])
    assert sorted(inputs) == list(range(5))


async def test_a_child_input_that_is_not_a_dict_fails_the_step_naming_it(
    engine: treadle.Engine,
) -> None:
    engine.register(treadle.new("kid").step("k", lambda c, s: None).build())
    wf = (
        treadle.new("bad-input")
        .loop("each")
        .for_each("items")
        .parallel(max=2)
        .do(treadle.new("w").sub_workflow("spawn", "kid", input=lambda s, item: item).build())
        .end()
        .build()
    )
    final = await run_to_end(engine, wf, {"items": ["oops"]})
    assert final.status is Status.FAILED
    assert final.error is not None
    assert "'spawn'" in final.error and "'oops'" in final.error and "dict" in final.error


@pytest.mark.parametrize(
    ("data", "shown"),
    [({"items": "abc"}, "str 'abc'"), ({}, "NoneType None"), ({"items": {"a": 1}}, "dict")],
)
async def test_a_map_over_a_value_that_is_not_a_list_fails_naming_the_step_and_value(
    engine: treadle.Engine, data: dict[str, Any], shown: str
) -> None:
    wf = mapper("nolist", treadle.step("x", lambda c, s: None)).end().build()
    final = await run_to_end(engine, wf, data)
    assert final.status is Status.FAILED
    assert final.error is not None
    assert "'each'" in final.error and "data['items'] must be a list" in final.error
    assert shown in final.error


async def test_wait_any_over_an_empty_list_fails_and_wait_all_completes(
    engine: treadle.Engine,
) -> None:
    empty_all = mapper("empty-all", treadle.step("x", lambda c, s: 1)).end().build()
    done = await run_to_end(engine, empty_all, {"items": []})
    assert done.status is Status.COMPLETED and done.data["each"] == []
    empty_any = mapper("empty-any", treadle.step("y", lambda c, s: 1)).wait_for("any").end().build()
    failed = await run_to_end(engine, empty_any, {"items": []})
    assert failed.status is Status.FAILED
    assert failed.error is not None and "WaitAny needs at least 1 elements" in failed.error


async def test_the_cursor_does_not_grow_with_the_number_of_elements(
    engine: treadle.Engine,
) -> None:
    reached = asyncio.Event()
    release = asyncio.Event()

    async def ship(ctx: Context, state: State) -> Any:
        if ctx.index == 1990:
            reached.set()
            await release.wait()
        return ctx.index

    wf = mapper("flat", treadle.step("ship", ship), max=8).end().build()
    run_id = await start(engine, wf, {"items": list(range(2000))})
    await asyncio.wait_for(reached.wait(), 20)

    async def stored_cursor() -> str:
        record = await engine.persistence.get_run(run_id)
        assert record is not None
        return record.cursor

    cursor = await stored_cursor()
    assert len(cursor) < 1000, f"the cursor grew with the elements: {len(cursor)} characters"
    release.set()
    final = await engine.wait(run_id, 30)
    assert final.status is Status.COMPLETED, final.error
    assert final.data["each"] == list(range(2000))


async def test_a_sequential_for_each_keeps_only_a_count_in_its_cursor(
    engine: treadle.Engine,
) -> None:
    reached = asyncio.Event()
    release = asyncio.Event()

    async def visit(ctx: Context, state: State) -> None:
        if ctx.index == 1500:
            reached.set()
            await release.wait()

    wf = (
        treadle.new("seq-flat")
        .loop("each")
        .for_each("items")
        .do(treadle.step("visit", visit))
        .end()
        .build()
    )
    run_id = await start(engine, wf, {"items": [f"element-{i}" for i in range(2000)]})
    await asyncio.wait_for(reached.wait(), 20)
    record = await engine.persistence.get_run(run_id)
    assert record is not None and len(record.cursor) < 500, record.cursor[:300]
    assert "element-" not in record.cursor
    release.set()
    assert (await engine.wait(run_id, 30)).status is Status.COMPLETED
