"""PostgreSQL stopped and started while runs are active: every run completes, nothing is lost or
written twice, and what happened is logged."""

from __future__ import annotations

import asyncio
import collections
import logging
import time

import pytest
from pgserver import PgServer, fresh_pg_dsn, pg_server  # noqa: F401  (fixtures)

import treadle
from treadle.persistence._postgres import PostgresPersistence

STEPS = ("s1", "s2", "s3", "s4", "s5")


def _workflow() -> treadle.Workflow:
    async def work(ctx: treadle.Context, state: treadle.State) -> None:
        await asyncio.sleep(0.05)
        state.data[ctx.step] = state.data.get(ctx.step, 0) + 1

    builder = treadle.new("outage")
    for name in STEPS[:3]:
        builder = builder.step(name, work)
    builder = builder.sleep("pause", "1s")
    for name in STEPS[3:]:
        builder = builder.step(name, work)
    return builder.build()


@pytest.mark.timeout(120)
async def test_runs_survive_a_restart_of_postgres(
    pg_server: PgServer,  # noqa: F811
    fresh_pg_dsn: str,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    workflow = _workflow()
    engines = []
    for _ in range(2):
        engine = treadle.Engine(PostgresPersistence(fresh_pg_dsn), poll_interval=0.2)
        engine.register(workflow)
        engines.append(engine)
    caplog.set_level(logging.WARNING, logger="treadle")
    async with engines[0], engines[1]:
        ids = await asyncio.gather(*(engines[n % 2].start("outage", {}) for n in range(40)))
        await asyncio.sleep(0.3)  # runs are in their first steps or their pause
        states = [await engines[0].status(i) for i in ids]
        assert any(s.status is not treadle.Status.COMPLETED for s in states)
        stopped = time.monotonic()
        await asyncio.to_thread(pg_server.stop)
        await asyncio.sleep(1.5)  # steps finish meanwhile; their checkpoints wait and retry
        await asyncio.to_thread(pg_server.start)
        down = time.monotonic() - stopped
        finals = await asyncio.gather(*(engines[0].wait(i, timeout=60) for i in ids))
        recovered = time.monotonic() - stopped
    assert all(s.status is treadle.Status.COMPLETED for s in finals), finals
    # Nothing lost and nothing doubled: every step ran and was recorded exactly once.
    assert all(s.data == {name: 1 for name in STEPS} for s in finals), finals
    check = treadle.Engine(PostgresPersistence(fresh_pg_dsn), max_concurrent_runs=0)
    async with check:
        for run_id in ids:
            history = await check.history(run_id)
            counts = collections.Counter(e.step for e in history if e.kind == "step_completed")
            assert counts == {name: 1 for name in STEPS}, (run_id, counts)
    messages = caplog.text
    assert "PostgreSQL connection failed" in messages
    assert "PostgreSQL reachable again" in messages
    assert "LISTEN connection to PostgreSQL lost" in messages
    print(f"\n[restart] PostgreSQL down {down:.1f}s; all 40 runs done {recovered:.1f}s after stop")


@pytest.mark.timeout(60)
async def test_an_outage_longer_than_the_retries_leaves_no_run_stuck(
    pg_server: PgServer,  # noqa: F811
    fresh_pg_dsn: str,  # noqa: F811
) -> None:
    # Operations give up after 0.3 s: the checkpoint fails, the lease cannot be released at
    # once, and yet the run goes on once PostgreSQL is back.
    workflow = _workflow()
    engine = treadle.Engine(
        PostgresPersistence(fresh_pg_dsn, retry_for=0.3), poll_interval=0.2, lease=5
    )
    engine.register(workflow)
    async with engine:
        run_id = await engine.start("outage", {})
        await asyncio.to_thread(pg_server.stop)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(pg_server.start)
        final = await engine.wait(run_id, timeout=30)
    assert final.status is treadle.Status.COMPLETED
    assert set(final.data) == set(STEPS)
