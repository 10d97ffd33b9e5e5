"""Retention: finished runs past their retention are deleted whole (history, inbox, labels), in
the background of engines that execute; unfinished runs never; ``engine.prune`` and
``engine.delete`` on request. Every test runs on memory, SQLite and PostgreSQL (conftest.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from enginekit import EngineFactory, until_status, waiting_for
from retentionkit import add_label, new_like, orphans, query, rows_by_run, seed_finished

import treadle
from treadle import InvalidTransition, RunNotFound, Status
from treadle._engine.sync import _EngineOptions
from treadle.persistence._records import NewEvent, RunRecord


def done(ctx: treadle.Context, state: treadle.State) -> None:
    state.data["done"] = True


def boom(ctx: treadle.Context, state: treadle.State) -> None:
    raise treadle.NonRetryableError("boom")


quick = treadle.new("quick").step("s", done).build()
failing = treadle.new("failing").step("s", boom).build()
signalled = treadle.new("signalled").await_signal("go").step("s", done).build()
waits = treadle.new("waits").await_signal("never").build()
held = treadle.new("held", on_failure="hold").step("s", boom).build()
parent = treadle.new("parent").sub_workflow("child", "quick").await_signal("go").build()
kept_long = treadle.new("long").step("s", done).retention("1y").build()
kept_short = treadle.new("short").step("s", done).retention("1d").build()


async def gone(engine: treadle.RunControl, run_id: str) -> bool:
    try:
        await engine.status(run_id)
    except RunNotFound:
        return True
    return False


def assert_gone_whole(persistence: treadle.Persistence, run_ids: list[str]) -> None:
    rows = rows_by_run(persistence)
    for table, counts in rows.items():
        assert not [r for r in run_ids if counts[r]], f"rows of deleted runs left in {table}"


# The background pruner ---------------------------------------------------------------------


async def test_runs_past_the_retention_are_deleted_whole_and_younger_ones_kept(
    make_engine: EngineFactory, persistence: treadle.Persistence, clock: treadle.FakeClock
) -> None:
    engine = await make_engine(quick, failing, signalled, waits, clock=clock, retention="30d")
    old = [await engine.start("quick") for _ in range(3)]
    old.append(await engine.start("failing"))
    sig = await engine.start("signalled")
    await waiting_for(engine, sig, "signal:go")
    await engine.signal(sig, "go", {"n": 1})  # an inbox row, consumed
    old.append(sig)
    waiting = await engine.start("waits")
    await engine.settle()
    add_label(persistence, old[0], "customer", "c-42")
    assert rows_by_run(persistence)["inbox"][sig] == 1

    clock.advance("20d")
    await engine.settle()
    assert not [r for r in old if await gone(engine, r)]  # 20 days: all kept
    young = [await engine.start("quick") for _ in range(2)]
    await engine.settle()
    before = rows_by_run(persistence)

    clock.advance("11d")  # the first ones ended 31 days ago, the young ones 11
    await engine.settle()
    assert [r for r in old if await gone(engine, r)] == old
    assert_gone_whole(persistence, old)
    after = rows_by_run(persistence)
    for run_id in [*young, waiting]:  # what is kept is kept whole
        for table in after:
            assert after[table][run_id] == before[table][run_id], (table, run_id)
    assert (await engine.status(waiting)).status is Status.WAITING
    assert orphans(persistence) == {"events": 0, "inbox": 0, "run_labels": 0, "parent_id": 0}


async def test_a_workflows_own_retention_wins_over_the_engines(
    make_engine: EngineFactory, clock: treadle.FakeClock
) -> None:
    engine = await make_engine(quick, kept_long, kept_short, clock=clock, retention="30d")
    assert engine.retention == timedelta(days=30)
    assert kept_long.retention == timedelta(days=365)
    runs = {name: await engine.start(name) for name in ("quick", "long", "short")}
    await engine.settle()

    clock.advance("2d")
    await engine.settle()
    assert [n for n, r in runs.items() if await gone(engine, r)] == ["short"]
    clock.advance("29d")
    await engine.settle()
    assert [n for n, r in runs.items() if await gone(engine, r)] == ["quick", "short"]
    clock.advance("335d")  # 366 days
    await engine.settle()
    assert [n for n, r in runs.items() if await gone(engine, r)] == ["quick", "long", "short"]


async def test_unfinished_runs_are_never_deleted_however_old(
    make_engine: EngineFactory, clock: treadle.FakeClock
) -> None:
    engine = await make_engine(waits, held, parent, quick, clock=clock, retention="1d")
    waiting = await engine.start("waits")
    paused = await engine.start("waits")
    on_hold = await engine.start("held")
    family = await engine.start("parent")
    await waiting_for(engine, paused, "signal:never")
    await engine.pause(paused)
    await until_status(engine, on_hold, Status.HELD)
    await waiting_for(engine, family, "signal:go")  # its child has completed
    child = (await engine.runs(parent_id=family))[0].id
    await engine.settle()
    histories = {r: len(await engine.history(r)) for r in (waiting, paused, on_hold, family)}

    clock.advance(timedelta(days=3650))
    await engine.settle()
    for run_id, length in histories.items():
        assert len(await engine.history(run_id)) == length
    assert (await engine.status(paused)).status is Status.PAUSED
    # A finished child of an unfinished parent is kept: the parent may still read its result.
    assert (await engine.status(child)).status is Status.COMPLETED

    await engine.signal(family, "go")
    await until_status(engine, family, Status.COMPLETED)
    clock.advance("2d")
    await engine.settle()
    assert await gone(engine, family) and await gone(engine, child)


async def test_an_engine_that_executes_nothing_prunes_nothing_in_the_background(
    make_engine: EngineFactory, clock: treadle.FakeClock
) -> None:
    worker = await make_engine(quick, clock=clock)
    run_id = await worker.start("quick")
    await worker.settle()
    control = await make_engine(quick, clock=clock, retention="1d", max_concurrent_runs=0)
    clock.advance("2d")
    await control.settle()
    await worker.settle()
    assert not await gone(control, run_id)


def test_retention_options_are_checked_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="retention must be more than 0"):
        treadle.Engine(retention="0")
    with pytest.raises(ValueError, match="invalid duration '30 days'"):
        treadle.Engine(retention="30 days")
    with pytest.raises(treadle.DefinitionError, match="workflow 'x': retention: invalid"):
        treadle.new("x").retention("1 year")
    with pytest.raises(treadle.DefinitionError, match="must be more than 0"):
        treadle.new("x").retention(0)
    assert treadle.Engine(retention="1w").retention == timedelta(days=7)
    assert treadle.Engine().retention is None
    assert "retention" in _EngineOptions.__annotations__


def test_retention_is_not_part_of_the_fingerprint() -> None:
    plain = treadle.new("fp").step("s", done).build()
    kept = treadle.new("fp").retention("90d").step("s", done).build()
    assert kept.id == plain.id and kept.describe() == plain.describe()
    assert kept.retention == timedelta(days=90) and plain.retention is None
    # A builder keeps its kind: options of the last step still apply after .retention().
    timed = treadle.new("t").await_signal("go").retention("1d").timeout("1h").build()
    assert timed.retention == timedelta(days=1)


# Pruning and deleting on request -------------------------------------------------------------


async def test_prune_dry_run_deletes_nothing_and_filters_by_status_and_workflow(
    make_engine: EngineFactory, persistence: treadle.Persistence, clock: treadle.FakeClock
) -> None:
    engine = await make_engine(quick, failing, signalled, clock=clock)
    completed = [await engine.start("quick") for _ in range(3)]
    failed = [await engine.start("failing") for _ in range(2)]
    await engine.settle()
    clock.advance("10d")
    before = rows_by_run(persistence)

    report = await engine.prune("7d", dry_run=True)
    assert report.dry_run and report.count == 5
    assert sorted(report.run_ids) == sorted(completed + failed)
    assert report.before == clock.now() - timedelta(days=7)
    assert rows_by_run(persistence) == before
    assert (await engine.prune("30d", dry_run=True)).count == 0

    report = await engine.prune("7d", status="failed")
    assert (report.count, sorted(report.run_ids)) == (2, sorted(failed))
    assert (await engine.prune("7d", workflow="failing")).count == 0
    report = await engine.prune("7d", workflow="quick", batch_size=2)
    assert report.count == 3 and not report.dry_run
    assert_gone_whole(persistence, completed + failed)
    with pytest.raises(ValueError, match="status 'waiting' is not one of completed"):
        await engine.prune("7d", status="waiting")
    with pytest.raises(ValueError, match="older_than: invalid duration"):
        await engine.prune("seven days")


async def test_delete_removes_a_finished_run_whole_and_refuses_an_unfinished_one(
    make_engine: EngineFactory, persistence: treadle.Persistence
) -> None:
    engine = await make_engine(quick, signalled, parent)
    finished = await engine.start("quick")
    waiting = await engine.start("signalled")
    family = await engine.start("parent")
    await waiting_for(engine, family, "signal:go")
    child = (await engine.runs(parent_id=family))[0].id
    await until_status(engine, finished, Status.COMPLETED)
    await waiting_for(engine, waiting, "signal:go")
    add_label(persistence, finished, "customer", "c-42")

    assert await engine.delete(finished) == [finished]
    assert_gone_whole(persistence, [finished])
    with pytest.raises(RunNotFound):
        await engine.delete(finished)
    with pytest.raises(InvalidTransition, match=r"it is waiting .*cancel it first"):
        await engine.delete(waiting)
    with pytest.raises(InvalidTransition, match=f"a child of run '{family}'.*parent"):
        await engine.delete(child)  # its parent still runs and may read its result

    await engine.signal(family, "go")
    await until_status(engine, family, Status.COMPLETED)
    assert await engine.delete(family) == [family, child]  # with its children
    assert_gone_whole(persistence, [family, child])
    assert len(await engine.history(waiting)) > 0


async def test_a_finished_parent_with_an_unfinished_child_is_kept_and_refuses_delete(
    make_engine: EngineFactory, persistence: treadle.Persistence, clock: treadle.FakeClock
) -> None:
    engine = await make_engine(clock=clock)
    now = clock.now()

    async def create(run_id: str, status: Status, parent_id: str | None = None) -> None:
        run = RunRecord(run_id, "w", "def", status, "{}", "{}", now, now, parent_id=parent_id)
        await engine.persistence.create_run(run, NewEvent("created"))

    await create("p", Status.FAILED)
    await create("c", Status.WAITING, "p")
    await create("p2", Status.COMPLETED)
    await create("c2", Status.COMPLETED, "p2")
    clock.advance("10d")
    with pytest.raises(InvalidTransition, match="cancel run 'c' first"):
        await engine.delete("p")
    report = await engine.prune("1d")
    assert sorted(report.run_ids) == ["c2", "p2"]
    assert not await gone(engine, "p") and not await gone(engine, "c")


async def test_runs_that_outlive_a_deleted_parent_lose_the_link(
    make_engine: EngineFactory, persistence: treadle.Persistence, clock: treadle.FakeClock
) -> None:
    engine = await make_engine(clock=clock)
    seed_finished(persistence, 10, clock.now(), prefix="fam")  # fam-000000 and its 9 children
    query(persistence, "UPDATE runs SET updated_at = updated_at + ? WHERE id <> 'fam-000000'",
          (86400 * 5 if not isinstance(persistence, treadle.PostgresPersistence) else
           timedelta(days=5),))  # fmt: skip
    clock.advance("3d")
    assert (await engine.prune("2d")).run_ids == ("fam-000000",)
    assert orphans(persistence) == {"events": 0, "inbox": 0, "run_labels": 0, "parent_id": 0}
    assert len(await engine.runs(limit=100)) == 9


async def test_pruners_at_once_each_delete_a_run_once(
    persistence: treadle.Persistence, clock: treadle.FakeClock
) -> None:
    async with treadle.Engine(persistence, clock=clock, max_concurrent_runs=0) as first:
        seeded = seed_finished(persistence, 1200, clock.now())
        clock.advance("2d")
        other = new_like(persistence)
        async with treadle.Engine(other, clock=clock, max_concurrent_runs=0) as second:
            reports = await asyncio.gather(
                first.prune("1d", batch_size=50), second.prune("1d", batch_size=50)
            )
            assert sum(r.count for r in reports) == len(seeded)
            assert all(r.count for r in reports) or isinstance(
                persistence, treadle.SQLitePersistence
            )
            assert await first.runs() == []
            assert orphans(persistence) == {
                "events": 0,
                "inbox": 0,
                "run_labels": 0,
                "parent_id": 0,
            }


async def test_a_client_prunes_and_deletes_by_the_wall_clock(
    persistence: treadle.Persistence,
) -> None:
    async with treadle.Engine(persistence, max_concurrent_runs=0) as engine:
        ended = datetime.now(UTC) - timedelta(days=40)
        ids = seed_finished(persistence, 20, ended)
        client = treadle.Client(new_like(persistence))
        async with client:
            assert (await client.prune("30d", dry_run=True)).count == 20
            assert await client.delete(ids[1]) == [ids[1]]
            assert (await client.prune("30d")).count == 19
        assert await engine.runs() == []
