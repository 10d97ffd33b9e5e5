"""Where concurrent steps meet no write is lost; compensation waits are durable timers; a
checkpoint the database refuses ends the run instead of looping (issue: correctness)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from enginekit import EngineFactory, until, waiting_for

import treadle
from treadle import Status
from treadle._interpreter import NEW_CURSOR
from treadle.persistence._records import Checkpoint


async def test_parallel_branches_keep_each_others_writes_and_record_the_conflict(
    engine: treadle.Engine,
) -> None:
    started: list[str] = []
    both_started = asyncio.Event()
    first_done = asyncio.Event()

    async def branch(ctx: treadle.Context, state: treadle.State) -> None:
        started.append(ctx.step)
        if len(started) == 2:
            both_started.set()
        await both_started.wait()  # both read the same base before either writes
        if ctx.step == "sms":
            await first_done.wait()  # completion order: email, then sms
        state.data["log"].append(f"{ctx.step} sent")
        state.data["count"] += 1
        if ctx.step == "email":
            first_done.set()

    wf = (
        treadle.new("notify-all")
        .parallel("notify", treadle.step("email", branch), treadle.step("sms", branch))
        .build()
    )
    engine.register(wf)
    run_id = await engine.start("notify-all", {"log": [], "count": 0})
    final = await engine.wait(run_id, 10)
    assert final.status is Status.COMPLETED
    assert final.data["log"] == ["email sent", "sms sent"]  # both writes kept, in order
    assert final.data["count"] == 1  # a true conflict: the later completion wins ...
    conflicts = [e for e in await engine.history(run_id) if e.kind == "data_conflict"]
    assert len(conflicts) == 1  # ... and it is recorded, naming the path and both steps
    assert conflicts[0].step == "sms"
    assert conflicts[0].detail["path"] == "count"
    assert conflicts[0].detail["other"] == "email"
    # both values as JSON text: sms's 1 is kept, email's 1 is lost (a lost count, said so)
    assert conflicts[0].detail["kept"] == "1" and conflicts[0].detail["lost"] == "1"


async def test_for_each_bodies_in_parallel_branches_fill_one_results_list(
    engine: treadle.Engine,
) -> None:
    def collect(ctx: treadle.Context, state: treadle.State) -> None:
        state.data["results"].append(ctx.item)

    def branch(name: str, key: str) -> treadle.Workflow:
        return (
            treadle.new(name)
            .loop(f"{name}-loop")
            .for_each(key)
            .do(treadle.step(f"{name}-collect", collect))
            .end()
            .build()
        )

    both = (branch("left", "a"), branch("right", "b"))
    wf = treadle.new("fan-collect").parallel("both", *both).build()
    engine.register(wf)
    run_id = await engine.start("fan-collect", {"a": [1, 2, 3], "b": [10, 20], "results": []})
    final = await engine.wait(run_id, 10)
    assert final.status is Status.COMPLETED
    assert sorted(final.data["results"]) == [1, 2, 3, 10, 20]


async def test_a_compensation_retry_waits_on_the_engine_clock_as_a_durable_timer(
    engine: treadle.Engine, clock: treadle.FakeClock
) -> None:
    attempts: list[int] = []

    def undo(ctx: treadle.Context, state: treadle.State) -> None:
        attempts.append(ctx.attempt)
        if len(attempts) < 3:
            raise RuntimeError("the partner API is down")

    def fail(ctx: treadle.Context, state: treadle.State) -> None:
        raise treadle.NonRetryableError("out of stock")

    retry = treadle.RetryPolicy().attempts(5).backoff("1h", "2h")
    wf = (
        treadle.new("saga-timer")
        .step("reserve", lambda c, s: None, compensate=undo, retry=retry)
        .step("ship", fail)
        .build()
    )
    engine.register(wf)
    run_id = await engine.start("saga-timer")
    await waiting_for(engine, run_id, "retry:reserve")
    await engine.settle()
    assert attempts == [1]  # no task sleeps through the wait: the clock has not moved
    clock.advance("3h")
    await until(engine, run_id, lambda s: len(attempts) >= 2 and s.status is Status.WAITING)
    await engine.settle()
    assert attempts == [1, 2]
    clock.advance("3h")
    final = await engine.wait(run_id, 10)
    assert final.status is Status.FAILED and "out of stock" in (final.error or "")
    assert attempts == [1, 2, 3]
    kinds = [e.kind for e in await engine.history(run_id)]
    assert kinds.count("compensation_retry") == 2 and "compensated" in kinds


class _RefusingCheckpoints(treadle.MemoryPersistence):
    """Refuses, as a database refuses a value it can never store, one run's checkpoints that
    carry the marker in their data."""

    async def save_checkpoint(self, checkpoint: Any) -> Any:
        if "refused-by-the-database" in checkpoint.data:
            raise treadle.DataError("value too long for type character varying(10)")
        return await super().save_checkpoint(checkpoint)


async def test_a_checkpoint_the_database_refuses_fails_the_run_once_and_compensates() -> None:
    ran: list[str] = []

    def reserve(ctx: treadle.Context, state: treadle.State) -> None:
        ran.append("reserve")

    def release(ctx: treadle.Context, state: treadle.State) -> None:
        ran.append("release")

    def poison(ctx: treadle.Context, state: treadle.State) -> None:
        ran.append("poison")
        state.data["note"] = "refused-by-the-database"

    wf = (
        treadle.new("refused")
        .step("reserve", reserve, compensate=release)
        .step("poison", poison)
        .step("after", lambda c, s: ran.append("after"))
        .build()
    )
    engine = treadle.Engine(_RefusingCheckpoints())
    engine.register(wf)
    async with engine:
        run_id = await engine.start("refused")
        final = await engine.wait(run_id, 10)
        assert final.status is Status.FAILED
        assert "varying(10)" in (final.error or "")
        await engine.settle()
    assert ran == ["reserve", "poison", "release"]


async def test_a_step_error_holding_a_lone_surrogate_is_stored_and_fails_the_run_once(
    make_engine: EngineFactory,
) -> None:
    ran: list[int] = []

    def bad(ctx: treadle.Context, state: treadle.State) -> None:
        ran.append(1)
        raise RuntimeError("cannot open \udcff.csv\x00")

    wf = treadle.new("surrogate").step("read", bad).build()
    engine = await make_engine(wf)
    run_id = await engine.start("surrogate")
    final = await engine.wait(run_id, 10)
    assert final.status is Status.FAILED
    await engine.settle()
    assert ran == [1]
    stored = await engine.status(run_id)
    assert "cannot open" in (stored.error or "") and "\udcff" not in (stored.error or "")


async def test_a_waiting_compensation_retry_resumes_in_a_restarted_engine(
    make_engine: EngineFactory, clock: treadle.FakeClock
) -> None:
    attempts: list[int] = []

    def undo(ctx: treadle.Context, state: treadle.State) -> None:
        attempts.append(ctx.attempt)
        if len(attempts) < 2:
            raise RuntimeError("the partner API is down")

    def fail(ctx: treadle.Context, state: treadle.State) -> None:
        raise treadle.NonRetryableError("out of stock")

    retry = treadle.RetryPolicy().attempts(3).backoff("1h", "2h")
    wf = (
        treadle.new("saga-restart")
        .step("reserve", lambda c, s: None, compensate=undo, retry=retry)
        .step("ship", fail)
        .build()
    )
    first = await make_engine(wf, clock=clock)
    run_id = await first.start("saga-restart")
    await waiting_for(first, run_id, "retry:reserve")
    await first.close(drain=0.5)
    assert attempts == [1]
    second = await make_engine(wf, clock=clock)
    await waiting_for(second, run_id, "retry:reserve")  # the timer survived the restart
    clock.advance("3h")
    final = await second.wait(run_id, 10)
    assert final.status is Status.FAILED and "out of stock" in (final.error or "")
    assert attempts == [1, 2]  # the next attempt, numbered on from the stored one
    kinds = [e.kind for e in await second.history(run_id)]
    assert kinds.count("compensating") == 1  # the unwind did not start over
    assert kinds.count("compensation_retry") == 1 and kinds.count("compensated") == 1


async def test_a_refused_checkpoint_fails_the_run_on_every_backend(
    engine: treadle.Engine, persistence: treadle.Persistence
) -> None:
    real = persistence.save_checkpoint
    refused: list[str] = []

    async def save_checkpoint(checkpoint: Any) -> Any:
        if "refused-by-the-database" in checkpoint.data:
            refused.append(checkpoint.run_id)
            raise treadle.DataError("value too long for type character varying(10)")
        return await real(checkpoint)

    persistence.save_checkpoint = save_checkpoint  # type: ignore[method-assign]
    ran: list[str] = []

    def poison(ctx: treadle.Context, state: treadle.State) -> None:
        ran.append("poison")
        state.data["note"] = "refused-by-the-database"

    wf = (
        treadle.new("refused-everywhere")
        .step(
            "reserve",
            lambda c, s: ran.append("reserve"),
            compensate=lambda c, s: ran.append("release"),
        )
        .step("poison", poison)
        .step("after", lambda c, s: ran.append("after"))
        .build()
    )
    engine.register(wf)
    run_id = await engine.start("refused-everywhere")
    final = await engine.wait(run_id, 10)
    assert final.status is Status.FAILED
    assert "cannot be stored" in (final.error or "") and "varying(10)" in (final.error or "")
    await engine.settle()
    assert ran == ["reserve", "poison", "release"]  # once each; "after" never ran
    assert refused == [run_id]  # refused once, not retried in a loop
    stored = await engine.status(run_id)
    assert stored.status is Status.FAILED and "note" not in stored.data
    kinds = [e.kind for e in await engine.history(run_id)]
    assert kinds.count("compensated") == 1


async def test_a_surrogate_step_error_is_read_back_by_a_fresh_engine(
    make_engine: EngineFactory,
) -> None:
    ran: list[int] = []

    def bad(ctx: treadle.Context, state: treadle.State) -> None:
        ran.append(1)
        raise RuntimeError("cannot open \udcff.csv")

    wf = treadle.new("surrogate-restart").step("read", bad).build()
    first = await make_engine(wf)
    run_id = await first.start("surrogate-restart")
    assert (await first.wait(run_id, 10)).status is Status.FAILED
    await first.close(drain=0.5)
    second = await make_engine(wf)
    stored = await second.status(run_id)
    assert stored.status is Status.FAILED
    assert "cannot open" in (stored.error or "") and ".csv" in (stored.error or "")
    await second.settle()
    assert ran == [1]


async def test_a_late_hand_over_of_a_lease_already_executed_runs_nothing_again(
    engine: treadle.Engine,
) -> None:
    # A signal's delivery and an approval's both hand the executor the run's lease (the same
    # token); the later one may arrive after a driver ran the run to its end under it. That
    # stale record must neither run steps again nor overwrite the end with an old position.
    ran: list[str] = []

    def step(ctx: treadle.Context, state: treadle.State) -> None:
        ran.append(ctx.step)

    engine.register(
        treadle.new("late").step("first", step).await_signal("go").step("after", step).build()
    )
    run_id = await engine.start("late")
    await waiting_for(engine, run_id, "signal:go")
    await engine.signal(run_id, "go", 1)
    assert (await engine.wait(run_id, 5)).status is Status.COMPLETED
    ended = await engine.persistence.get_run(run_id)
    assert ended is not None
    stale = dataclasses.replace(  # its lease, from before any of its steps
        ended, status=Status.RUNNING, cursor=NEW_CURSOR, data="{}", owner=engine.owner
    )
    engine._executor._spawn(stale)
    await engine.settle()
    assert ran == ["first", "after"], "a step ran again under a lease already executed"
    assert (await engine.status(run_id)).status is Status.COMPLETED
    assert [e.kind for e in await engine.history(run_id)][-1] == "run_completed"


async def test_an_ended_run_refuses_every_checkpoint_even_with_its_token(
    engine: treadle.Engine,
) -> None:
    engine.register(treadle.new("done").step("s", lambda ctx, state: None).build())
    run_id = await engine.start("done")
    assert (await engine.wait(run_id, 5)).status is Status.COMPLETED
    ended = await engine.persistence.get_run(run_id)
    assert ended is not None
    for status in (Status.RUNNING, Status.WAITING, Status.FAILED):
        with pytest.raises(treadle.LeaseLost):
            await engine.persistence.save_checkpoint(
                Checkpoint(
                    run_id, ended.token, status, "{}", ended.cursor, engine.clock.now(),
                    waiting_for=["signal:x"] if status is Status.WAITING else [],
                )
            )  # fmt: skip
    assert (await engine.status(run_id)).status is Status.COMPLETED
