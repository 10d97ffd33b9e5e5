"""An engine claims only the runs it can make progress on now: runs of plain steps up to its free
step threads, runs of coroutine steps up to its run limit; a run whose next plain step waits
long for a thread is handed back at that step for another engine to take."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
from enginekit import EngineFactory

import treadle
from treadle import Status


async def _claimed(engine: treadle.Engine, ids: list[str]) -> list[str]:
    """The runs of ``ids`` that an engine executes now (RUNNING; the others wait PENDING)."""
    states = [await engine.status(run_id) for run_id in ids]
    return [s.id for s in states if s.status is Status.RUNNING]


async def _until(what: str, holds: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll ``holds`` until it does, or fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await holds():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _store(make_engine: EngineFactory, workflow: treadle.Workflow, n: int) -> list[str]:
    """``n`` runs stored by an engine that executes none: PENDING for the next to claim."""
    control = await make_engine(workflow, max_concurrent_runs=0)
    return [await control.start(workflow.name, {"n": i}) for i in range(n)]


@pytest.mark.timeout(30)
async def test_an_engine_claims_no_more_runs_of_plain_steps_than_it_has_step_threads(
    make_engine: EngineFactory,
) -> None:
    gate = threading.Event()
    entered: list[str] = []

    def blocked(ctx: treadle.Context, state: treadle.State) -> None:
        entered.append(ctx.run_id)
        assert gate.wait(10)

    workflow = treadle.new("plain").step("a", blocked).step("b", lambda ctx, s: None).build()
    ids = await _store(make_engine, workflow, 6)
    worker = await make_engine(workflow, max_concurrent_runs=8, step_threads=2)

    async def two_entered() -> bool:
        return len(entered) == 2

    await _until("two plain steps running", two_entered)
    assert len(await _claimed(worker, ids)) == 2  # the other four stay PENDING for others
    gate.set()
    for run_id in ids:
        assert (await worker.wait(run_id, timeout=10)).status is Status.COMPLETED
    assert sorted(Counter(entered).values()) == [1] * 6


@pytest.mark.timeout(30)
async def test_runs_of_coroutine_steps_are_claimed_up_to_the_run_limit(
    make_engine: EngineFactory,
) -> None:
    gate = asyncio.Event()
    entered: list[str] = []

    async def blocked(ctx: treadle.Context, state: treadle.State) -> None:
        entered.append(ctx.run_id)
        await gate.wait()

    workflow = treadle.new("coro").step("a", blocked).build()
    ids = await _store(make_engine, workflow, 10)
    worker = await make_engine(workflow, max_concurrent_runs=8, step_threads=2)

    async def eight_entered() -> bool:
        return len(entered) == 8

    await _until("eight coroutine steps running", eight_entered)
    assert len(await _claimed(worker, ids)) == 8
    gate.set()
    for run_id in ids:
        assert (await worker.wait(run_id, timeout=10)).status is Status.COMPLETED


@pytest.mark.timeout(30)
async def test_a_run_whose_plain_step_finds_no_thread_for_long_is_handed_back_at_that_step(
    make_engine: EngineFactory,
) -> None:
    go = asyncio.Event()
    release = threading.Event()
    lock = threading.Lock()
    prepared: list[str] = []
    plain: list[str] = []

    async def prepare(ctx: treadle.Context, state: treadle.State) -> None:
        prepared.append(ctx.run_id)
        await go.wait()

    def call(ctx: treadle.Context, state: treadle.State) -> None:
        with lock:
            plain.append(ctx.run_id)
            first = len(plain) == 1
        if first:  # the first holds the first engine's one thread
            assert release.wait(10)

    workflow = treadle.new("mixed").step("prepare", prepare).step("call", call).build()
    ids = await _store(make_engine, workflow, 3)
    # Coroutine steps take no thread: all three are claimed, then all reach the plain step.
    first = await make_engine(workflow, max_concurrent_runs=4, step_threads=1, lease=0.6)

    async def all_prepared() -> bool:
        return len(prepared) == 3

    await _until("the three runs at their coroutine step", all_prepared)
    go.set()
    # One thread: two runs find none for a third of the lease and are handed back; the first
    # engine claims nothing while its thread is busy, so the second takes them.
    second = await make_engine(workflow, step_threads=4)

    async def two_done_elsewhere() -> bool:
        states = [await second.status(run_id) for run_id in ids]
        return sum(s.status is Status.COMPLETED for s in states) == 2

    await _until("the two handed-back runs completed by the second engine", two_done_elsewhere)
    assert not release.is_set() and len(plain) == 3
    release.set()
    for run_id in ids:
        assert (await first.wait(run_id, timeout=10)).status is Status.COMPLETED
    # Handed back before the step: nothing ran twice.
    assert sorted(Counter(prepared).values()) == [1, 1, 1]
    assert sorted(Counter(plain).values()) == [1, 1, 1]


@pytest.mark.timeout(30)
async def test_a_rate_limited_step_handed_back_for_want_of_a_thread_reserves_no_call(
    make_engine: EngineFactory,
) -> None:
    hold_go, call_go = asyncio.Event(), asyncio.Event()
    blocking, release = threading.Event(), threading.Event()
    calls: list[str] = []

    async def hold_wait(ctx: treadle.Context, state: treadle.State) -> None:
        await hold_go.wait()

    async def call_wait(ctx: treadle.Context, state: treadle.State) -> None:
        await call_go.wait()

    def block(ctx: treadle.Context, state: treadle.State) -> None:
        blocking.set()
        assert release.wait(10)

    def call(ctx: treadle.Context, state: treadle.State) -> None:
        calls.append(ctx.run_id)

    hourly = treadle.RateLimit("hourly", 1, per="1h")  # one call, then the next in an hour
    hog = treadle.new("hog").step("wait", hold_wait).step("block", block).build()
    limited = treadle.new("limited").step("wait", call_wait).step("call", call, rate_limit=hourly)
    workflows = (hog, limited.build())
    control = await make_engine(*workflows, max_concurrent_runs=0)
    hog_id = await control.start("hog", {})
    run_id = await control.start("limited", {})
    first = await make_engine(*workflows, max_concurrent_runs=4, step_threads=1, lease=0.6)

    async def both_claimed() -> bool:
        return len(await _claimed(first, [hog_id, run_id])) == 2

    await _until("both runs at their coroutine step", both_claimed)
    hold_go.set()  # the hog takes the one thread
    assert await asyncio.to_thread(blocking.wait, 10)
    call_go.set()  # no thread for the call: the run is handed back before it, to the second
    second = await make_engine(*workflows, step_threads=2)
    # Its one call is the limiter's first: it goes at once, not an hour later.
    assert (await second.wait(run_id, timeout=10)).status is Status.COMPLETED
    assert calls == [run_id]
    release.set()
    assert (await first.wait(hog_id, timeout=10)).status is Status.COMPLETED
