"""Rate limits: ``treadle.RateLimit`` shared by steps of any workflow, its calls reserved in the
database, waiting runs parked until their reserved time."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pgserver import fresh_pg_dsn  # noqa: F401  (fixture)
from ratekit import check_calls, most_in_window
from workers.rate_worker import SkewedClock

import treadle
from treadle import DefinitionError, RateLimit, Status
from treadle.persistence._postgres import PostgresPersistence
from treadle.testing import TestKit

# Settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("", 10), {}, "invalid rate limit name ''"),
        (("a b", 10), {}, "invalid rate limit name 'a b'"),
        ((7, 10), {}, "invalid rate limit name 7"),
        (("psp", 0), {}, "rate limit 'psp': limit must be an int >= 1, not 0"),
        (("psp", 2.5), {}, "limit must be an int >= 1, not 2.5"),
        (("psp", True), {}, "limit must be an int >= 1, not True"),
        (("psp", 10), {"per": "0s"}, "per must be a duration > 0, not '0s'"),
        (("psp", 10), {"per": "-1s"}, "negative duration"),
        (("psp", 10), {"per": "soon"}, "'soon'"),
        (("psp", 10), {"burst": 0}, "burst must be an int >= 1, not 0"),
    ],
)
def test_bad_settings_are_a_definition_error_naming_the_value(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        RateLimit(*args, **kwargs)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_limit_normalises_its_period_and_reads_as_people_write_it() -> None:
    psp = RateLimit("psp", 10, per="1s")
    assert psp.per == timedelta(seconds=1) and psp == RateLimit("psp", 10, per=1)
    assert psp.interval == pytest.approx(0.1) and psp.capacity == 1
    assert psp.describe() == "psp (10 per 1s)"
    assert RateLimit("mail", 100, per="1m", burst=20).describe() == "mail (100 per 1m)"
    assert RateLimit("x", 3, per="250ms").describe() == "x (3 per 250ms)"
    with pytest.raises(AttributeError):
        psp.limit = 5  # type: ignore[misc]


def test_a_step_takes_only_a_rate_limit() -> None:
    with pytest.raises(DefinitionError, match=r"rate_limit must be a treadle\.RateLimit"):
        treadle.new("w").step("a", lambda c, s: None, rate_limit="psp")  # type: ignore[arg-type]


def test_one_name_with_two_settings_is_refused_in_a_workflow_and_in_an_engine() -> None:
    fast, slow = RateLimit("psp", 10), RateLimit("psp", 1)
    with pytest.raises(DefinitionError, match="'psp' is defined twice with different settings"):
        (
            treadle.new("w")
            .step("a", lambda c, s: None, rate_limit=fast)
            .parallel("p", treadle.step("b", lambda c, s: None, rate_limit=slow))
            .build()
        )
    engine = treadle.Engine(treadle.MemoryPersistence())
    engine.register(treadle.new("one").step("a", lambda c, s: None, rate_limit=fast).build())
    with pytest.raises(DefinitionError, match="psp \\(10 per 1s\\) at step 'a' of 'one'"):
        engine.register(treadle.new("two").step("a", lambda c, s: None, rate_limit=slow).build())
    same = RateLimit("psp", 10, per="1s")
    engine.register(treadle.new("three").step("a", lambda c, s: None, rate_limit=same).build())


def test_steps_without_a_rate_limit_keep_their_fingerprint() -> None:
    def f(ctx: treadle.Context, state: treadle.State) -> None:
        return None

    plain = treadle.new("w").step("a", f).build()
    limited = treadle.new("w").step("a", f, rate_limit=RateLimit("psp", 10)).build()
    assert "rate_limit" not in plain.describe()["steps"][0]
    assert limited.describe()["steps"][0]["rate_limit"] == "psp"
    assert plain.id != limited.id


# Waiting, on a fake clock ------------------------------------------------------------------


def _recording(calls: list[tuple[str, int, float]], kit: Callable[[], TestKit]) -> Any:
    def call(ctx: treadle.Context, state: treadle.State) -> None:
        calls.append((ctx.run_id, ctx.attempt, kit().clock.now().timestamp()))
        if state.data.get("fail") and ctx.attempt == 1:
            raise RuntimeError("the partner said no")

    return call


async def test_runs_beyond_the_limit_park_until_their_reserved_time() -> None:
    calls: list[tuple[str, int, float]] = []
    holder: list[TestKit] = []
    psp = RateLimit("psp", 2, per="1m")
    wf = treadle.new("pay").step("charge", _recording(calls, lambda: holder[0]), rate_limit=psp)
    async with TestKit(wf.build()) as kit:
        holder.append(kit)
        ids = [await kit.start("pay", {}) for _ in range(5)]
        await kit.run_until_idle()
        assert len(calls) == 1  # burst 1: then one call every 30 s
        waiting = [await kit.engine.status(i) for i in ids[1:]]
        assert {s.status for s in waiting} == {Status.WAITING}
        assert {tuple(s.waiting_for) for s in waiting} == {("rate:psp",)}
        (state,) = await kit.engine.persistence.rate_limits()
        assert (state.name, state.limit, state.per_seconds, state.burst) == ("psp", 2, 60.0, 1)
        assert state.waiting == 4 and state.available == 0
        assert state.next_free == kit.clock.now() + timedelta(minutes=2, seconds=30)
        await kit.advance("29s")
        assert len(calls) == 1
        await kit.advance("1s")
        assert len(calls) == 2
        await kit.advance("2m")
        assert len(calls) == 5
        for run_id in ids:
            assert (await kit.engine.status(run_id)).status is Status.COMPLETED
        times = [t for _, _, t in calls]
        assert [b - a for a, b in itertools.pairwise(times)] == [30.0] * 4
        (state,) = await kit.engine.persistence.rate_limits()  # 30 s after the last call
        assert state.waiting == 0 and state.available == 1
        assert state.next_free == kit.clock.now()


async def test_every_attempt_takes_a_call_and_a_burst_goes_at_once() -> None:
    calls: list[tuple[str, int, float]] = []
    holder: list[TestKit] = []
    psp = RateLimit("psp", 1, per="10s", burst=3)
    retry = treadle.RetryPolicy().attempts(2).backoff("1s", "1s")
    wf = treadle.new("pay").step(
        "charge", _recording(calls, lambda: holder[0]), rate_limit=psp, retry=retry
    )
    async with TestKit(wf.build()) as kit:
        holder.append(kit)
        start = kit.clock.now().timestamp()
        failing = await kit.start("pay", {"fail": True})
        others = [await kit.start("pay", {}) for _ in range(2)]
        await kit.run_until_idle()
        assert [(r, a) for r, a, _ in calls] == [(failing, 1), (others[0], 1), (others[1], 1)]
        await kit.advance("9s")  # the retry (due after 1 s) waits for the next call: at 10 s
        assert len(calls) == 3
        await kit.advance("1s")
        assert calls[3][:2] == (failing, 2) and calls[3][2] == start + 10
        assert (await kit.engine.status(failing)).status is Status.COMPLETED
        assert await kit.attempts(failing, "charge") == 2


# Across backends, in real time -------------------------------------------------------------


def _limited_everywhere(limit: RateLimit, calls: list[float]) -> treadle.Workflow:
    """A rate-limited step at the top, in parallel branches, in a loop and in a map."""

    async def call(ctx: treadle.Context, state: treadle.State) -> None:
        calls.append(time.monotonic())

    def step(name: str) -> treadle.ActionStep:
        return treadle.step(name, call, rate_limit=limit)

    return (
        treadle.new("everywhere")
        .step("top", call, rate_limit=limit)
        .parallel("both", step("left"), step("right"))
        .loop("each")
        .for_each("items")
        .do(step("item"))
        .end()
        .loop("fan")
        .for_each("items")
        .parallel(max=3)
        .do(step("mapped"))
        .end()
        .build()
    )


async def test_limited_steps_anywhere_in_a_workflow_keep_the_limit(
    engine: treadle.Engine,
) -> None:
    calls: list[float] = []
    limit = RateLimit("shared", 20, per="1s")
    engine.register(_limited_everywhere(limit, calls))
    ids = [await engine.start("everywhere", {"items": [1, 2]}) for _ in range(4)]
    for run_id in ids:
        state = await engine.wait(run_id, timeout=30)
        assert state.status is Status.COMPLETED, state.error
    assert len(calls) == 4 * 7
    check_calls(calls, limit)
    assert most_in_window(calls, 3.0) <= 60  # and it did go at the limit's pace, not slower
    assert max(calls) - min(calls) >= (len(calls) - 1) * limit.interval - 0.05
    (state,) = await engine.persistence.rate_limits()
    assert state.name == "shared" and state.waiting == 0


async def test_engines_whose_clocks_are_a_second_apart_keep_the_limit_on_postgres(
    fresh_pg_dsn: str,  # noqa: F811
) -> None:
    calls: list[float] = []
    limit = RateLimit("skewed", 5, per="1s")
    engines = []
    for offset in (1.0, -1.0):
        engine = treadle.Engine(
            PostgresPersistence(fresh_pg_dsn), clock=SkewedClock(offset), poll_interval=0.2
        )
        engine.owner = f"skew{offset}:{engine.owner}"
        engine.register(_limited_everywhere(limit, calls))
        await engine.open()
        engines.append(engine)
    try:
        ids = [await engines[n % 2].start("everywhere", {"items": [n]}) for n in range(6)]
        for run_id in ids:
            state = await engines[0].wait(run_id, timeout=60)
            assert state.status is Status.COMPLETED, state.error
    finally:
        await asyncio.gather(*(e.close(drain=0.5) for e in engines))
    assert len(calls) == 6 * 5
    check_calls(calls, limit)
