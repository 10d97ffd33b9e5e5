"""Conformance: the Engine's calls — start, status, history, runs, pause/resume, errors,
registration and changed definitions (API.md "Engine" and "Semantics"). Every test runs on
every persistence; the ones that restart an engine open a second one on the same storage."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from enginekit import (
    EngineFactory,
    completed_steps,
    events,
    run_to_end,
    start,
    until,
    until_status,
    waiting_for,
)

import treadle
from treadle import Context, State, Status

# start -----------------------------------------------------------------------------------


async def test_start_with_an_existing_run_id_returns_it_and_starts_nothing(
    engine: treadle.Engine,
) -> None:
    calls: list[str] = []
    engine.register(treadle.new("idem").step("charge", lambda c, s: calls.append(c.run_id)).build())
    first = await engine.start("idem", {"n": 1}, run_id="order-42")
    assert first == "order-42"
    await engine.wait(first, 5)
    again = await engine.start("idem", {"n": 1}, run_id="order-42")
    assert again == "order-42"
    await engine.settle()  # a second run, or the first one again, would have executed by now
    assert calls == ["order-42"]
    assert len(await engine.runs(workflow="idem")) == 1
    assert (await engine.status("order-42")).data == {"n": 1}


async def test_start_of_an_unknown_workflow_raises_workflow_not_found(
    engine: treadle.Engine,
) -> None:
    with pytest.raises(treadle.WorkflowNotFound):
        await engine.start("no-such-workflow")


async def test_start_without_data_gives_an_empty_dict(engine: treadle.Engine) -> None:
    final = await run_to_end(engine, treadle.new("nodata").step("a", lambda c, s: None).build())
    assert final.data == {}


async def test_engine_without_persistence_keeps_runs_in_memory() -> None:
    engine = treadle.Engine()
    engine.register(treadle.new("mem").step("a", lambda c, s: 1).build())
    async with engine:
        run_id = await engine.start("mem")
        assert (await engine.wait(run_id, 5)).data == {"a": 1}


# Unknown ids and invalid transitions -----------------------------------------------------

UNKNOWN = "no-such-run"
CALLS: dict[str, Callable[[treadle.Engine], Awaitable[Any]]] = {
    "status": lambda e: e.status(UNKNOWN),
    "history": lambda e: e.history(UNKNOWN),
    "wait": lambda e: e.wait(UNKNOWN, timeout=1),
    "pause": lambda e: e.pause(UNKNOWN),
    "resume": lambda e: e.resume(UNKNOWN),
    "cancel": lambda e: e.cancel(UNKNOWN),
    "signal": lambda e: e.signal(UNKNOWN, "go"),
    "approve": lambda e: e.approve(UNKNOWN, "ok"),
    "reject": lambda e: e.reject(UNKNOWN, "ok"),
}


@pytest.mark.parametrize("call", list(CALLS))
async def test_every_call_on_an_unknown_run_id_raises_run_not_found(
    engine: treadle.Engine, call: str
) -> None:
    engine.register(treadle.new("known").await_signal("go").await_approval("ok", []).build())
    with pytest.raises(treadle.RunNotFound):
        await CALLS[call](engine)


@pytest.mark.parametrize("call", ["pause", "resume", "signal", "approve"])
async def test_pause_resume_signal_and_approve_on_a_finished_run_raise_invalid_transition(
    engine: treadle.Engine, call: str
) -> None:
    wf = (
        treadle.new("finished")
        .if_("never", lambda s: False)
        .then(treadle.new("waits").await_signal("go").await_approval("ok", []).build())
        .end()
        .build()
    )
    run_id = await start(engine, wf)
    assert (await engine.wait(run_id, 5)).status is Status.COMPLETED
    with pytest.raises(treadle.InvalidTransition):
        if call == "pause":
            await engine.pause(run_id)
        elif call == "resume":
            await engine.resume(run_id)
        elif call == "signal":
            await engine.signal(run_id, "go")
        else:
            await engine.approve(run_id, "ok")
    assert (await engine.status(run_id)).status is Status.COMPLETED


async def test_resume_of_a_run_that_is_not_paused_raises_invalid_transition(
    engine: treadle.Engine,
) -> None:
    gate = asyncio.Event()

    async def busy(ctx: Context, state: State) -> None:
        await asyncio.wait_for(gate.wait(), 5)

    wf = treadle.new("not-paused").step("busy", busy).await_signal("go").build()
    run_id = await start(engine, wf)
    await until_status(engine, run_id, Status.RUNNING)
    with pytest.raises(treadle.InvalidTransition):
        await engine.resume(run_id)
    gate.set()
    await waiting_for(engine, run_id, "signal:go")
    with pytest.raises(treadle.InvalidTransition):
        await engine.resume(run_id)
    await engine.signal(run_id, "go")
    assert (await engine.wait(run_id, 5)).status is Status.COMPLETED


# pause / resume --------------------------------------------------------------------------


async def test_pause_lets_the_running_step_finish_then_the_run_is_paused_and_resume_goes_on(
    engine: treadle.Engine,
) -> None:
    trail: list[str] = []
    gate = asyncio.Event()
    started = asyncio.Event()

    async def first(ctx: Context, state: State) -> str:
        started.set()
        await asyncio.wait_for(gate.wait(), 5)
        trail.append("first")
        return "done"

    wf = (
        treadle.new("pausable")
        .step("first", first)
        .step("second", lambda c, s: trail.append("second"))
        .build()
    )
    run_id = await start(engine, wf)
    await asyncio.wait_for(started.wait(), 5)
    await engine.pause(run_id)
    gate.set()
    paused = await until_status(engine, run_id, Status.PAUSED)
    assert paused.data == {"first": "done"}, "the running step finished and was checkpointed"
    await engine.settle()
    assert trail == ["first"]
    assert (await engine.status(run_id)).status is Status.PAUSED
    assert "paused" in [e.kind for e in await engine.history(run_id)]
    await engine.resume(run_id)
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert trail == ["first", "second"]
    assert "resumed" in [e.kind for e in await engine.history(run_id)]


async def test_pause_of_a_waiting_run_and_resume_puts_it_back_to_waiting(
    engine: treadle.Engine,
) -> None:
    run_id = await start(engine, treadle.new("pause-wait").await_signal("go").build())
    await waiting_for(engine, run_id, "signal:go")
    await engine.pause(run_id)
    await until_status(engine, run_id, Status.PAUSED)
    await engine.resume(run_id)
    state = await waiting_for(engine, run_id, "signal:go")
    assert state.status is Status.WAITING
    await engine.signal(run_id, "go", 1)
    assert (await engine.wait(run_id, 5)).status is Status.COMPLETED


# status, history, runs, wait -------------------------------------------------------------


async def test_status_returns_a_snapshot_that_changes_nothing_stored(
    engine: treadle.Engine,
) -> None:
    run_id = await start(engine, treadle.new("snap").await_signal("go").build(), {"a": [1]})
    state = await waiting_for(engine, run_id, "signal:go")
    state.data["a"].append(2)
    state.data["b"] = "new"
    state.waiting_for.clear()
    state.status = Status.FAILED
    again = await engine.status(run_id)
    assert again.data == {"a": [1]}
    assert again.waiting_for == ["signal:go"] and again.status is Status.WAITING
    assert again.created_at.tzinfo is not None and again.updated_at >= again.created_at


async def test_history_lists_what_happened_in_order_with_times(engine: treadle.Engine) -> None:
    wf = treadle.new("story").step("one", lambda c, s: 1).step("two", lambda c, s: 2).build()
    run_id = await start(engine, wf)
    await engine.wait(run_id, 5)
    history = await engine.history(run_id)
    kinds = [e.kind for e in history if e.kind != "run_started"]  # optional
    assert kinds == ["created", "step_completed", "step_completed", "run_completed"]
    assert completed_steps(history) == ["one", "two"]
    assert all(e.run_id == run_id and e.at.tzinfo is not None for e in history)
    assert [e.at for e in history] == sorted(e.at for e in history)


async def test_runs_filters_by_workflow_and_status_and_limits_newest_first(
    engine: treadle.Engine,
) -> None:
    engine.register(treadle.new("quick").step("a", lambda c, s: None).build())
    engine.register(treadle.new("slow").await_signal("go").build())
    quick = [await engine.start("quick", {"n": n}) for n in range(3)]
    slow = await engine.start("slow")
    for run_id in quick:
        await engine.wait(run_id, 5)
    await waiting_for(engine, slow, "signal:go")
    assert {s.id for s in await engine.runs()} == {*quick, slow}
    assert {s.id for s in await engine.runs(workflow="quick")} == set(quick)
    assert [s.id for s in await engine.runs(status=Status.WAITING)] == [slow]
    assert [s.id for s in await engine.runs(status="waiting")] == [slow]
    assert {s.id for s in await engine.runs(workflow="quick", status=Status.COMPLETED)} == set(
        quick
    )
    assert await engine.runs(workflow="slow", status=Status.COMPLETED) == []
    limited = await engine.runs(workflow="quick", limit=2)
    assert len(limited) == 2
    assert all(a.created_at >= b.created_at for a, b in itertools.pairwise(limited))


async def test_wait_raises_timeout_error_for_a_run_that_does_not_end(
    engine: treadle.Engine,
) -> None:
    run_id = await start(engine, treadle.new("endless").await_signal("never").build())
    with pytest.raises(TimeoutError):
        await engine.wait(run_id, timeout=0.1)


async def test_a_waiting_run_holds_no_task(engine: treadle.Engine) -> None:
    run_id = await start(engine, treadle.new("idle").await_signal("go").build())
    await waiting_for(engine, run_id, "signal:go")
    # settle() waits for every run executing here: a driver kept for the wait never lets it return
    await asyncio.wait_for(engine.settle(), 5)
    assert not [t for t in asyncio.all_tasks() if run_id in t.get_name()]


# Registration ----------------------------------------------------------------------------


async def test_register_works_before_and_after_open(
    make_persistence: Callable[[], treadle.Persistence],
) -> None:
    engine = treadle.Engine(make_persistence(), poll_interval=0.2)
    engine.register(treadle.new("before").step("a", lambda c, s: "b").build())
    async with engine:
        engine.register(treadle.new("after").step("a", lambda c, s: "a").build())
        first = await engine.start("before")
        second = await engine.start("after")
        assert (await engine.wait(first, 5)).data == {"a": "b"}
        assert (await engine.wait(second, 5)).data == {"a": "a"}
    assert set(engine.workflows) == {"before", "after"}


async def test_registering_another_definition_under_a_taken_name_keeps_both_newest_last(
    engine: treadle.Engine,
) -> None:
    def build() -> treadle.Workflow:
        return treadle.new("taken").step("a", lambda c, s: None).build()

    engine.register(build())
    engine.register(build())  # the same definition again replaces it
    second = treadle.new("taken", version="2").step("b", lambda c, s: None).build()
    engine.register(second)
    assert [w.version for w in engine.versions("taken")] == [None, "2"]
    assert engine.workflows["taken"] is second
    with pytest.raises(treadle.DefinitionError, match="version '2' is already registered"):
        engine.register(treadle.new("taken", version="2").step("c", lambda c, s: None).build())


async def test_runs_of_unregistered_workflows_are_left_alone_until_registered(
    make_engine: EngineFactory,
) -> None:
    trail: list[str] = []
    wf = treadle.new("later").step("a", lambda c, s: trail.append("a")).build()
    creator = await make_engine(wf, max_concurrent_runs=0)  # stores the run, executes nothing
    run_id = await creator.start("later")
    await creator.close()
    engine = await make_engine(treadle.new("other").step("x", lambda c, s: None).build())
    await engine.settle()  # it has looked for work, and found none it can execute
    state = await engine.status(run_id)
    assert state.status is Status.PENDING and trail == []
    assert [e.kind for e in await engine.history(run_id)] == ["created"]
    engine.register(wf)
    assert (await engine.wait(run_id, 5)).status is Status.COMPLETED
    assert trail == ["a"]


async def test_signal_to_a_run_of_an_unregistered_workflow_is_kept_until_registered(
    make_engine: EngineFactory,
) -> None:
    wf = treadle.new("parked").await_signal("go").step("after", lambda c, s: "x").build()
    first = await make_engine(wf)
    run_id = await first.start("parked")
    await waiting_for(first, run_id, "signal:go")
    await first.close()
    second = await make_engine()
    await second.signal(run_id, "go", 5)
    await second.settle()  # it has looked for work, and found none it can execute
    assert "go" not in (await second.status(run_id)).data
    kept = [e.kind for e in await second.history(run_id)]
    assert "signal_received" in kept and "signal_consumed" not in kept
    second.register(wf)
    final = await second.wait(run_id, 5)
    assert final.status is Status.COMPLETED and final.data == {"go": 5, "after": "x"}


# Recovery under a changed definition (restarts within one test) --------------------------


def _a(ctx: Context, state: State) -> None:
    state.data.setdefault("ran", []).append(ctx.step)


ROUTE = {"big": True}


def _route_is_big(state: State) -> bool:
    return ROUTE["big"]


async def test_a_recovered_run_takes_the_branch_it_took_before(
    make_engine: EngineFactory,
) -> None:
    wf = (
        treadle.new("routed")
        .if_("route", _route_is_big)
        .then(treadle.new("big-arm").await_signal("go").step("big", _a).build())
        .else_(treadle.step("small", _a))
        .end()
        .build()
    )
    ROUTE["big"] = True
    first = await make_engine(wf)
    run_id = await first.start("routed")
    await waiting_for(first, run_id, "signal:go")
    await first.close()
    ROUTE["big"] = False
    second = await make_engine(wf)
    await second.signal(run_id, "go")
    final = await second.wait(run_id, 5)
    assert final.data["ran"] == ["big"]


async def test_a_recovered_loop_finishes_the_iteration_it_had_begun(
    make_engine: EngineFactory,
) -> None:
    wf = (
        treadle.new("looping")
        .loop("while-big")
        .while_(_route_is_big)
        .max_iterations(5)
        .do(treadle.new("iteration").await_signal("go").step("work", _a).build())
        .end()
        .build()
    )
    ROUTE["big"] = True
    first = await make_engine(wf)
    run_id = await first.start("looping")
    await waiting_for(first, run_id, "signal:go")
    await first.close()
    ROUTE["big"] = False
    second = await make_engine(wf)
    await second.signal(run_id, "go")
    final = await second.wait(run_id, 5)
    assert final.data["ran"] == ["work"]
    [ended] = await events(second, run_id, "loop_ended")
    assert ended.detail["iterations"] == 1


async def test_a_recovered_parent_never_starts_a_second_child(
    make_engine: EngineFactory,
) -> None:
    child = treadle.new("only-child").await_signal("go").build()
    parent = treadle.new("parent-of-one").sub_workflow("kid", "only-child").build()
    first = await make_engine(child, parent)
    run_id = await first.start("parent-of-one")
    state = await until(first, run_id, lambda s: s.status is Status.WAITING)
    child_id = state.waiting_for[0].removeprefix("run:")
    await waiting_for(first, child_id, "signal:go")
    await first.close()
    second = await make_engine(child, parent)
    await second.settle()  # whatever its recovery of the parent does, it has done
    assert [s.id for s in await second.runs(workflow="only-child")] == [child_id]
    await second.signal(child_id, "go", "hi")
    final = await second.wait(run_id, 5)
    assert final.status is Status.COMPLETED and final.data == {"kid": {"go": "hi"}}
    assert [s.id for s in await second.runs(workflow="only-child")] == [child_id]


# Module-level contract -------------------------------------------------------------------


def test_persistence_from_url_knows_memory_sqlite_and_rejects_other_schemes(tmp_path: Path) -> None:
    assert isinstance(treadle.persistence_from_url("memory://"), treadle.MemoryPersistence)
    sqlite = treadle.persistence_from_url(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(sqlite, treadle.SQLitePersistence)
    with pytest.raises(ValueError, match="mysql"):
        treadle.persistence_from_url("mysql://localhost/db")


@pytest.mark.parametrize(
    "name",
    [
        "DefinitionError",
        "WorkflowNotFound",
        "RunNotFound",
        "InvalidTransition",
        "UnknownSignal",
        "UnknownApproval",
        "NotAnApprover",
        "ApprovalRejected",
        "WaitTimeout",
        "DataError",
        "NonRetryableError",
    ],
)
def test_every_documented_error_is_a_treadle_error(name: str) -> None:
    assert issubclass(getattr(treadle, name), treadle.TreadleError)


async def test_a_burst_of_starts_never_executes_more_than_max_concurrent_runs(
    make_engine: EngineFactory,
) -> None:
    running: list[str] = []
    most = 0

    async def hold(ctx: Context, state: State) -> None:
        nonlocal most
        running.append(ctx.run_id)
        most = max(most, len(running))
        await asyncio.sleep(0.02)
        running.remove(ctx.run_id)

    wf = treadle.new("limited").step("hold", hold).build()
    engine = await make_engine(wf, max_concurrent_runs=3)
    ids = await asyncio.gather(*(engine.start("limited") for _ in range(20)))
    states = await asyncio.gather(*(engine.wait(run_id, 10) for run_id in ids))
    assert all(s.status is Status.COMPLETED for s in states)
    assert most == 3, f"{most} runs executed at once with max_concurrent_runs=3"
