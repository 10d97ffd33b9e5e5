"""A dispatcher without room makes no queries for an overdue timer, and an engine that executes
nothing makes none at all (issue 11.0b), on every backend: counted, not timed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from enginekit import until_status

import treadle


class _Polls:
    """Counts the dispatcher's queries for work (claims and timer look-ups) of a persistence."""

    def __init__(self, persistence: treadle.Persistence) -> None:
        self.count = 0
        claim, next_wake = persistence.claim_runs, persistence.next_wake

        async def counted_claim(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await claim(*args, **kwargs)

        async def counted_next_wake(*args: Any, **kwargs: Any) -> datetime | None:
            self.count += 1
            return await next_wake(*args, **kwargs)

        persistence.claim_runs = counted_claim  # type: ignore[method-assign]
        persistence.next_wake = counted_next_wake  # type: ignore[method-assign]


def _gated() -> tuple[treadle.Workflow, asyncio.Event, asyncio.Event]:
    entered, gate = asyncio.Event(), asyncio.Event()

    async def hold(ctx: treadle.Context, state: treadle.State) -> None:
        entered.set()
        await gate.wait()

    return treadle.new("hold").step("h", hold).build(), entered, gate


def _nap() -> treadle.Workflow:
    async def noop(ctx: treadle.Context, state: treadle.State) -> None:
        pass

    return treadle.new("nap").sleep("pause", "10ms").step("b", noop).build()


@pytest.mark.timeout(30)
async def test_a_full_engine_does_not_poll_for_an_overdue_timer(
    make_persistence: Callable[[], treadle.Persistence], clock: treadle.FakeClock
) -> None:
    hold, entered, gate = _gated()
    persistence = make_persistence()
    polls = _Polls(persistence)
    engine = treadle.Engine(persistence, clock=clock, max_concurrent_runs=1, poll_interval=60)
    engine.register(hold)
    engine.register(_nap())
    async with engine:
        napping = await engine.start("nap")
        await until_status(engine, napping, treadle.Status.WAITING)
        holding = await engine.start("hold")
        await asyncio.wait_for(entered.wait(), 5)
        clock.advance("1s")  # the nap is overdue, and there is no room for it
        await asyncio.sleep(0)
        polls.count = 0
        for _ in range(50):  # fifty round trips of ours: a polling dispatcher would match them
            assert (await engine.status(napping)).status is treadle.Status.WAITING
        assert polls.count <= 2
        gate.set()
        assert (await engine.wait(holding, timeout=5)).status is treadle.Status.COMPLETED
        assert (await engine.wait(napping, timeout=5)).status is treadle.Status.COMPLETED


@pytest.mark.timeout(30)
# Two engines on one database: memory has one object for both, which would count both.
@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_an_engine_that_executes_nothing_never_polls_for_work_yet_serves_wait(
    make_persistence: Callable[[], treadle.Persistence], clock: treadle.FakeClock
) -> None:
    worker = treadle.Engine(make_persistence(), clock=clock, poll_interval=0.2)
    worker.register(_nap())
    persistence = make_persistence()
    polls = _Polls(persistence)
    control = treadle.Engine(persistence, clock=clock, max_concurrent_runs=0, poll_interval=0.2)
    control.register(_nap())
    async with worker, control:
        run_id = await control.start("nap")  # stored for a worker; the definition with it
        waiting = asyncio.create_task(control.wait(run_id, timeout=10))
        await until_status(worker, run_id, treadle.Status.WAITING)
        clock.advance("1s")  # wakes every dispatcher on the clock
        assert (await waiting).status is treadle.Status.COMPLETED
        await control.settle()
    assert polls.count == 0
