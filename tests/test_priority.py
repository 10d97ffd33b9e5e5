"""Priority (API.md "Priority and debounce"): engines claim runnable runs of higher priority
first, FIFO within one priority; a child run has its parent's priority.

A backlog is made by an engine that executes nothing (``max_concurrent_runs=0``), then one
engine that executes one run at a time works through it: the order its runs begin in is the
order they were claimed in.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from enginekit import EngineFactory

import treadle
from treadle import Context, State, Status


def recording(order: list[str]) -> treadle.Workflow:
    lock = threading.Lock()

    def note(ctx: Context, state: State) -> None:
        with lock:
            order.append(state.data["name"])

    return treadle.new("job").step("note", note).build()


async def test_a_backlog_of_mixed_priorities_runs_highest_first_and_fifo_within_one(
    make_engine: EngineFactory,
) -> None:
    order: list[str] = []
    starter = await make_engine(recording(order), max_concurrent_runs=0)
    backlog = [("low-1", -5), ("mid-1", 0), ("high-1", 10), ("mid-2", 0), ("low-2", -5)]
    backlog += [("high-2", 10), ("top", 1000), ("mid-3", 0), ("bottom", -1000), ("high-3", 10)]
    ids = {}
    for name, priority in backlog:
        ids[name] = await starter.start("job", {"name": name}, priority=priority)
    assert (await starter.status(ids["high-1"])).priority == 10
    assert (await starter.status(ids["mid-1"])).priority == 0

    worker = await make_engine(recording(order), max_concurrent_runs=1)
    await worker.settle()

    assert order == [
        "top",
        "high-1",
        "high-2",
        "high-3",
        "mid-1",
        "mid-2",
        "mid-3",
        "low-1",
        "low-2",
        "bottom",
    ]
    for name, priority in backlog:
        state = await worker.status(ids[name])
        assert (state.status, state.priority) == (Status.COMPLETED, priority)


async def test_a_due_timer_and_a_pending_run_are_claimed_by_priority_together(
    make_engine: EngineFactory,
) -> None:
    order: list[str] = []
    clock = treadle.FakeClock()
    napper = (
        treadle.new("napper")
        .sleep("nap", "1m")
        .step("note", lambda ctx, s: order.append(s.data["name"]))
        .build()
    )
    starter = await make_engine(recording(order), napper, clock=clock)
    woken = await starter.start("napper", {"name": "woken"}, priority=3)
    await starter.settle()
    assert (await starter.status(woken)).status is Status.WAITING
    await starter.close()

    parked = await make_engine(recording(order), napper, clock=clock, max_concurrent_runs=0)
    await parked.start("job", {"name": "plain"}, priority=1)
    await parked.start("job", {"name": "urgent"}, priority=5)
    clock.advance("2m")  # the nap is due: it competes with the two pending runs
    worker = await make_engine(recording(order), napper, clock=clock, max_concurrent_runs=1)
    await worker.settle()
    assert order == ["urgent", "woken", "plain"]


async def test_a_child_run_has_its_parents_priority(engine: treadle.Engine) -> None:
    child = treadle.new("child").step("c", lambda ctx, s: None).build()
    parent = treadle.new("parent").sub_workflow("kid", "child").build()
    engine.register(child, parent)
    run_id = await engine.start("parent", priority=42)
    assert (await engine.wait(run_id, timeout=10)).status is Status.COMPLETED
    [kid] = await engine.runs(parent_id=run_id)
    assert kid.priority == 42


async def test_the_sync_facade_and_a_client_take_a_priority(
    make_engine: EngineFactory, make_persistence: Any
) -> None:
    await make_engine(recording([]), max_concurrent_runs=0)  # stores the definition
    async with treadle.Client(make_persistence(), poll_interval=0.2) as client:
        run_id = await client.start("job", {"name": "x"}, priority=-7)
        assert (await client.status(run_id)).priority == -7
    with treadle.SyncEngine(treadle.MemoryPersistence()) as sync:
        sync.register(recording([]))
        assert sync.status(sync.start("job", {"name": "y"}, priority=9)).priority == 9


@pytest.mark.parametrize(
    ("priority", "message"),
    [
        (1001, "priority 1001 is out of range: use an int from -1000 to 1000"),
        (-1001, "priority -1001 is out of range"),
        ("high", "priority must be an int from -1000 to 1000, not str 'high'"),
        (2.5, "not float 2.5"),
        (True, "not bool True"),
        (None, "not NoneType None"),
    ],
)
async def test_a_priority_that_is_not_an_int_within_bounds_is_refused_before_anything_is_stored(
    engine: treadle.Engine, priority: Any, message: str
) -> None:
    engine.register(recording([]))
    with pytest.raises(ValueError, match=message):
        await engine.start("job", {"name": "x"}, priority=priority)
    assert await engine.runs() == []
