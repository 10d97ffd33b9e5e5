"""Conformance: steps, their data, their context, retries and timeouts (API.md "Steps",
"Retry policy"). Every test runs on every persistence (see conftest.py)."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest
from enginekit import events, run_to_end, start, until, waiting_for

import treadle
from treadle import Context, State, Status

# Data and return values -------------------------------------------------------------------


async def test_step_return_value_is_stored_at_data_step_name(engine: treadle.Engine) -> None:
    wf = treadle.new("ret").step("price", lambda ctx, s: {"amount": 12}).build()
    final = await run_to_end(engine, wf, {"given": 1})
    assert final.status is Status.COMPLETED
    assert final.data == {"given": 1, "price": {"amount": 12}}


async def test_step_returning_none_stores_nothing(engine: treadle.Engine) -> None:
    wf = treadle.new("none").step("quiet", lambda ctx, s: None).build()
    final = await run_to_end(engine, wf, {"a": 1})
    assert final.data == {"a": 1}


async def test_step_changes_to_state_data_are_kept_for_later_steps(
    engine: treadle.Engine,
) -> None:
    def first(ctx: Context, state: State) -> None:
        state.data["n"] = 1
        del state.data["drop"]

    def second(ctx: Context, state: State) -> int:
        return int(state.data["n"]) + 1

    wf = treadle.new("data").step("first", first).then().step("second", second).build()
    final = await run_to_end(engine, wf, {"drop": True})
    assert final.data == {"n": 1, "second": 2}


async def test_coroutine_step_functions_are_awaited(engine: treadle.Engine) -> None:
    async def fetch(ctx: Context, state: State) -> str:
        await asyncio.sleep(0)
        return "fetched"

    final = await run_to_end(engine, treadle.new("co").step("fetch", fetch).build())
    assert final.data == {"fetch": "fetched"}


async def test_sync_steps_run_in_worker_threads_without_blocking_the_loop(
    engine: treadle.Engine,
) -> None:
    seen: dict[str, Any] = {}

    def slow(ctx: Context, state: State) -> None:
        seen["thread"] = threading.current_thread()
        threading.Event().wait(0.2)

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        final = await run_to_end(engine, treadle.new("sync").step("slow", slow).build())
    finally:
        task.cancel()
    assert final.status is Status.COMPLETED
    assert seen["thread"] is not threading.main_thread()
    assert ticks >= 8, f"the event loop was blocked: only {ticks} ticks in 0.2 s"


class Tally:
    """A user class satisfying the Step protocol."""

    name = "tally"

    async def execute(self, ctx: Context, state: State) -> None:
        state.data["tally"] = state.data.get("tally", 0) + 1
        state.data["ctx_step"] = ctx.step


async def test_user_class_satisfying_step_runs_as_one_unit(engine: treadle.Engine) -> None:
    wf = treadle.new("custom").if_("always", lambda s: True).then(Tally()).end().build()
    run_id = await start(engine, wf)
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert final.data == {"tally": 1, "ctx_step": "tally"}
    assert [e.step for e in await events(engine, run_id, "step_completed")] == ["tally"]


# Context ---------------------------------------------------------------------------------


async def test_context_tells_the_step_its_run_workflow_name_and_attempt(
    engine: treadle.Engine,
) -> None:
    seen: list[Context] = []
    wf = treadle.new("where").step("here", lambda ctx, s: seen.append(ctx)).build()
    run_id = await start(engine, wf)
    await engine.wait(run_id, 5)
    [ctx] = seen
    assert (ctx.run_id, ctx.workflow, ctx.step, ctx.attempt) == (run_id, "where", "here", 1)
    assert (ctx.item, ctx.index, ctx.iteration) == (None, None, None)
    assert ctx.idempotency_key


async def test_context_gives_item_index_and_iteration_of_the_innermost_loop(
    engine: treadle.Engine,
) -> None:
    seen: list[tuple[Any, ...]] = []

    def note(ctx: Context, state: State) -> None:
        seen.append((ctx.step, ctx.item, ctx.index, ctx.iteration))

    inner = treadle.new("inner-body").step("leaf", note).build()
    wf = (
        treadle.new("loops")
        .loop("outer")
        .for_each("rows")
        .do(
            treadle.step("row", note),
            treadle.new("nested").loop("inner").for_each("cols").do(inner).end().build(),
        )
        .end()
        .build()
    )
    final = await run_to_end(engine, wf, {"rows": ["r0", "r1"], "cols": ["c0", "c1"]})
    assert final.status is Status.COMPLETED
    assert seen == [
        ("row", "r0", 0, 0),
        ("leaf", "c0", 0, 0),
        ("leaf", "c1", 1, 1),
        ("row", "r1", 1, 1),
        ("leaf", "c0", 0, 0),
        ("leaf", "c1", 1, 1),
    ]


async def test_idempotency_key_is_stable_across_attempts_and_unique_elsewhere(
    engine: treadle.Engine, clock: treadle.FakeClock
) -> None:
    keys: list[tuple[str, int, str]] = []

    def charge(ctx: Context, state: State) -> None:
        keys.append((ctx.run_id, ctx.attempt, ctx.idempotency_key))
        if ctx.attempt == 1:
            raise RuntimeError("flaky")

    retry = treadle.RetryPolicy().attempts(2).backoff("1s", "1s")
    wf = (
        treadle.new("keys")
        .loop("each")
        .for_each("items")
        .do(treadle.step("charge", charge, retry=retry))
        .end()
        .build()
    )
    engine.register(wf)
    first = await engine.start("keys", {"items": [1, 2]})
    second = await engine.start("keys", {"items": [1]})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not all([(await engine.status(r)).status.finished for r in (first, second)]):
        assert loop.time() < deadline, "the runs did not finish"
        clock.advance("2s")  # the retries are due
        await asyncio.sleep(0.01)
    for run_id in (first, second):
        assert (await engine.status(run_id)).status is Status.COMPLETED
    # Every (run, iteration) retried once: two attempts share a key, keys differ otherwise.
    first_keys = [k for r, _, k in keys if r == first]
    second_keys = [k for r, _, k in keys if r == second]
    assert len(first_keys) == 4 and len(second_keys) == 2
    assert len(set(first_keys)) == 2 and len(set(second_keys)) == 1
    assert not set(first_keys) & set(second_keys)
    for run_id in (first, second):
        attempts = [(a, k) for r, a, k in keys if r == run_id]
        for key in {k for _, k in attempts}:
            assert sorted(a for a, k in attempts if k == key) == [1, 2]


# JSON data -------------------------------------------------------------------------------


async def test_unserialisable_data_fails_with_data_error_and_keeps_last_checkpoint_data(
    engine: treadle.Engine,
) -> None:
    calls: list[int] = []

    def bad(ctx: Context, state: State) -> None:
        calls.append(ctx.attempt)
        state.data["n"] = 2
        state.data["when"] = object()

    wf = (
        treadle.new("bad-data")
        .step("ok", lambda ctx, s: s.data.update(n=1))
        .step("bad", bad, retry=treadle.RetryPolicy().attempts(3).backoff("1ms", "1ms"))
        .build()
    )
    final = await run_to_end(engine, wf)
    assert final.status is Status.FAILED
    assert final.error is not None and "DataError" in final.error and "bad" in final.error
    assert final.data == {"n": 1}
    assert calls == [1], "a DataError is not retried"


async def test_unserialisable_return_value_is_a_data_error(engine: treadle.Engine) -> None:
    wf = treadle.new("bad-return").step("odd", lambda ctx, s: {1, 2}).build()
    final = await run_to_end(engine, wf, {"kept": True})
    assert final.status is Status.FAILED
    assert final.error is not None and "DataError" in final.error
    assert final.data == {"kept": True}


async def test_start_with_unserialisable_data_raises_data_error(engine: treadle.Engine) -> None:
    engine.register(treadle.new("start-bad").step("a", lambda ctx, s: None).build())
    with pytest.raises(treadle.DataError):
        await engine.start("start-bad", {"x": object()})
    assert await engine.runs(workflow="start-bad") == []


# Retries ---------------------------------------------------------------------------------


async def test_failing_step_is_retried_with_increasing_attempt_numbers(
    engine: treadle.Engine, clock: treadle.FakeClock
) -> None:
    attempts: list[int] = []

    def flaky(ctx: Context, state: State) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError(f"try {ctx.attempt}")
        return "ok"

    retry = treadle.RetryPolicy().attempts(3).backoff("1s", "10s")
    run_id = await start(engine, treadle.new("flaky").step("call", flaky, retry=retry).build())
    state = await waiting_for(engine, run_id, "retry:call")
    assert attempts == [1]
    clock.advance("1.5s")
    state = await until(engine, run_id, lambda s: len(attempts) == 2 and s.waiting_for != [])
    assert state.waiting_for == ["retry:call"]
    clock.advance("3s")
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert final.data == {"call": "ok"}
    assert attempts == [1, 2, 3]
    failed = await events(engine, run_id, "step_failed")
    assert [e.detail["attempt"] for e in failed] == [1, 2]


async def test_retry_waits_grow_exponentially_up_to_max_wait(
    engine: treadle.Engine, clock: treadle.FakeClock
) -> None:
    attempts: list[int] = []

    def failing(ctx: Context, state: State) -> None:
        attempts.append(ctx.attempt)
        raise RuntimeError("down")

    retry = treadle.RetryPolicy(max_attempts=5, multiplier=3.0).backoff("1s", "5s")
    run_id = await start(engine, treadle.new("backoff").step("call", failing, retry=retry).build())
    expected = [1.0, 3.0, 5.0, 5.0]  # min(1 * 3**(k-1), 5)
    for k, wait in enumerate(expected, start=1):

        def failed_and_waiting(state: State, k: int = k) -> bool:
            return len(attempts) == k and bool(state.waiting_for)

        await until(engine, run_id, failed_and_waiting)
        clock.advance(timedelta(seconds=wait * 0.75))  # below the lowest jitter (-20%)
        await asyncio.sleep(0.05)
        assert len(attempts) == k, f"attempt {k + 1} came before its wait of {wait}s"
        clock.advance(timedelta(seconds=wait * 0.5))  # beyond the highest jitter (+20%)
    final = await engine.wait(run_id, 5)
    assert final.status is Status.FAILED
    assert attempts == [1, 2, 3, 4, 5]
    failed = await events(engine, run_id, "step_failed")
    waits = [e.detail.get("retry_in") for e in failed]
    for got, want in zip(waits, expected, strict=False):
        assert want * 0.8 <= got <= want * 1.2
    assert failed[-1].detail.get("final") is True


async def test_non_retryable_error_stops_retries_at_once(engine: treadle.Engine) -> None:
    attempts: list[int] = []

    class CardDeclined(treadle.NonRetryableError):
        pass

    def charge(ctx: Context, state: State) -> None:
        attempts.append(ctx.attempt)
        raise CardDeclined("insufficient funds")

    retry = treadle.RetryPolicy().attempts(5).backoff("1ms", "1ms")
    final = await run_to_end(engine, treadle.new("nr").step("charge", charge, retry=retry).build())
    assert final.status is Status.FAILED
    assert attempts == [1]
    assert final.error is not None and "insufficient funds" in final.error


async def test_retry_on_decides_which_errors_are_retried(
    engine: treadle.Engine, clock: treadle.FakeClock
) -> None:
    attempts: list[int] = []

    def call(ctx: Context, state: State) -> None:
        attempts.append(ctx.attempt)
        raise (ConnectionError if ctx.attempt == 1 else ValueError)("boom")

    retry = treadle.RetryPolicy(
        max_attempts=5, retry_on=lambda exc: isinstance(exc, ConnectionError)
    ).backoff("1s", "1s")
    run_id = await start(engine, treadle.new("retry-on").step("call", call, retry=retry).build())
    await waiting_for(engine, run_id, "retry:call")
    clock.advance("2s")
    final = await engine.wait(run_id, 5)
    assert final.status is Status.FAILED
    assert attempts == [1, 2], "the ValueError of attempt 2 is not retried"
    assert final.error is not None and "ValueError" in final.error


async def test_step_without_retry_policy_gets_one_attempt(engine: treadle.Engine) -> None:
    attempts: list[int] = []

    def once(ctx: Context, state: State) -> None:
        attempts.append(ctx.attempt)
        raise RuntimeError("no luck")

    final = await run_to_end(engine, treadle.new("one-shot").step("once", once).build())
    assert final.status is Status.FAILED
    assert attempts == [1]
    assert final.error is not None and "once" in final.error and "no luck" in final.error


def test_new_retry_policy_has_the_seed_defaults() -> None:
    policy = treadle.new_retry_policy()
    assert policy == treadle.RetryPolicy()
    assert (policy.max_attempts, policy.multiplier) == (3, 2.0)
    assert (policy.initial_wait, policy.max_wait) == (timedelta(seconds=1), timedelta(seconds=30))


# Step timeouts ---------------------------------------------------------------------------


async def test_async_step_attempt_running_over_its_timeout_fails(engine: treadle.Engine) -> None:
    cancelled = asyncio.Event()

    async def hang(ctx: Context, state: State) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    wf = treadle.new("slow").step("hang", hang, timeout="50ms").build()
    final = await run_to_end(engine, wf)
    assert final.status is Status.FAILED
    assert final.error is not None and "StepTimeout" in final.error and "hang" in final.error
    assert cancelled.is_set()


async def test_sync_step_running_over_its_timeout_fails_and_its_changes_are_dropped(
    engine: treadle.Engine,
) -> None:
    release = threading.Event()

    def hang(ctx: Context, state: State) -> None:
        state.data["late"] = True
        release.wait(2)

    wf = treadle.new("slow-sync").step("hang", hang, timeout=0.05).build()
    try:
        final = await run_to_end(engine, wf, {"x": 1})
    finally:
        release.set()
    assert final.status is Status.FAILED
    assert final.error is not None and "StepTimeout" in final.error
    assert final.data == {"x": 1}


async def test_step_timeout_applies_per_attempt_with_retries(
    engine: treadle.Engine, clock: treadle.FakeClock
) -> None:
    attempts: list[int] = []

    async def slow_then_fast(ctx: Context, state: State) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            await asyncio.sleep(30)
        return "fast"

    retry = treadle.RetryPolicy().attempts(2).backoff("1s", "1s")
    wf = treadle.new("timeout-retry").step("s", slow_then_fast, retry=retry, timeout="50ms")
    run_id = await start(engine, wf.build())
    await waiting_for(engine, run_id, "retry:s")
    clock.advance("2s")
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert final.data == {"s": "fast"}
    assert attempts == [1, 2]
