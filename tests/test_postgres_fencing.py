"""Fencing on PostgreSQL: a worker whose lease was taken over cannot write its stale checkpoint."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import timedelta

import psycopg
import pytest
from pgserver import fresh_pg_dsn  # noqa: F401  (fixture)

import treadle
from treadle.persistence._base import utcnow
from treadle.persistence._postgres import PostgresPersistence
from treadle.persistence._records import Checkpoint, NewEvent, RunRecord


async def test_a_stale_token_cannot_checkpoint(fresh_pg_dsn: str) -> None:  # noqa: F811
    first, second = PostgresPersistence(fresh_pg_dsn), PostgresPersistence(fresh_pg_dsn)
    await first.open()
    await second.open()
    try:
        now = utcnow()
        run = RunRecord(
            id="r1",
            workflow="w",
            definition_id="d",
            status=treadle.Status.RUNNING,
            data='{"n": 0}',
            cursor="{}",
            created_at=now,
            updated_at=now,
            owner="a:1:x",
            lease_until=now - timedelta(seconds=1),  # already expired
            token=1,
        )
        await first.create_run(run, NewEvent("created"))
        claimed = await second.claim_runs(
            "b:2:y", ["d"], utcnow(), utcnow() + timedelta(seconds=10), 10
        )
        assert [r.id for r in claimed] == ["r1"]
        assert claimed[0].token == 2
        # While b holds it, nobody else can claim it.
        assert (
            await first.claim_runs("a:1:x", ["d"], utcnow(), utcnow() + timedelta(seconds=10), 10)
            == []
        )

        def checkpoint(token: int, n: int) -> Checkpoint:
            return Checkpoint(
                run_id="r1",
                token=token,
                status=treadle.Status.RUNNING,
                data=f'{{"n": {n}}}',
                cursor="{}",
                now=utcnow(),
                events=[NewEvent("step_completed", step=f"s{n}")],
            )

        with pytest.raises(treadle.LeaseLost):
            await first.save_checkpoint(checkpoint(token=1, n=99))
        await second.save_checkpoint(checkpoint(token=2, n=1))
        stored = await first.get_run("r1")
        assert stored is not None and stored.data == '{"n": 1}'
        steps = [e.step for e in await first.history("r1") if e.kind == "step_completed"]
        assert steps == ["s1"]  # the stale checkpoint's event was rolled back with it
    finally:
        await first.close()
        await second.close()


async def test_an_engine_that_lost_its_lease_does_not_overwrite_the_new_owner(
    fresh_pg_dsn: str,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    release_a = threading.Event()
    a_started = threading.Event()

    def work(ctx: treadle.Context, state: treadle.State) -> None:
        # One definition on both engines (a run executes only where its definition is): the
        # first call, on a, is slow; the second, on b, is quick.
        if not a_started.is_set():
            a_started.set()
            release_a.wait(10)
            state.data["by"] = "a"
        else:
            state.data["by"] = "b"

    def shape(fn: treadle.StepFunc) -> treadle.Workflow:
        return treadle.new("fenced").step("work", fn).step("after", lambda c, s: None).build()

    # a has room for one run only, so that its own dispatcher cannot claim back the run whose
    # lease it lost while its step still runs (b must be the one that takes it over).
    a = treadle.Engine(
        PostgresPersistence(fresh_pg_dsn), lease=30, poll_interval=0.1, max_concurrent_runs=1
    )
    a.register(shape(work))
    b = treadle.Engine(PostgresPersistence(fresh_pg_dsn), lease=30, poll_interval=0.1)
    b.register(shape(work))
    async with a:
        run_id = await a.start("fenced")  # started on a: leased to a at once
        assert await asyncio.to_thread(a_started.wait, 5)
        # a is stuck (a long GC pause, a partition...) and its lease runs out:
        with psycopg.connect(fresh_pg_dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE runs SET lease_until = now() - interval '1 second' WHERE id = %s",
                (run_id,),
            )
        async with b:
            state = await b.wait(run_id, timeout=10)
            assert state.status is treadle.Status.COMPLETED
            assert state.data == {"by": "b"}
            with caplog.at_level(logging.WARNING, logger="treadle"):
                release_a.set()  # a wakes up and tries to checkpoint its stale progress
                for _ in range(200):
                    if "lease lost" in caplog.text:
                        break
                    await asyncio.sleep(0.02)
            assert "lease lost" in caplog.text
            final = await b.status(run_id)
            assert final.status is treadle.Status.COMPLETED
            assert final.data == {"by": "b"}
            history = await b.history(run_id)
            assert [e.step for e in history if e.kind == "step_completed"] == ["work", "after"]
