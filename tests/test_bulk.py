"""Bulk actions on every persistence: each action on what a filter matches, skips with their
reasons, dry runs that touch nothing, who did it in each run's history, and paging in batches."""

from __future__ import annotations

import pytest

import treadle
from treadle import DataError, RunFilter, Status
from treadle._state import EventKind

parked = treadle.new("parked").await_signal("go").build()


def always_fails(ctx: treadle.Context, state: treadle.State) -> None:
    raise RuntimeError("the ledger is closed")


held = treadle.new("held", on_failure="hold").step("post", always_fails).build()


async def _events(engine: treadle.Engine, run_id: str, kind: str) -> list[treadle.Event]:
    return [e for e in await engine.history(run_id) if e.kind == kind]


async def test_bulk_cancel_cancels_what_the_filter_matches_as_who_asked(
    engine: treadle.Engine,
) -> None:
    engine.register(parked)
    mine = [await engine.start("parked", labels={"team": "a"}) for _ in range(5)]
    other = await engine.start("parked", labels={"team": "b"})
    await engine.settle()
    result = await engine.bulk("cancel", labels={"team": "a"}, by="ops", batch=2)
    assert sorted(result.applied) == sorted(mine) and result.skipped == {}
    for run_id in mine:
        assert (await engine.wait(run_id, timeout=10)).status is Status.CANCELLED
        [asked] = await _events(engine, run_id, EventKind.CANCEL_REQUESTED)
        assert asked.detail == {"by": "ops", "bulk": True}
    assert (await engine.status(other)).status is Status.WAITING
    again = await engine.bulk("cancel", labels={"team": "a"}, by="ops")
    assert again.applied == [] and set(again.skipped.values()) == {"it is cancelled"}


async def test_a_dry_run_lists_the_runs_and_touches_nothing(engine: treadle.Engine) -> None:
    engine.register(parked)
    ids = [await engine.start("parked") for _ in range(3)]
    await engine.settle()
    result = await engine.bulk("cancel", RunFilter(workflow="parked"), dry_run=True, by="ops")
    assert result.dry_run and sorted(result.applied) == sorted(ids)
    for run_id in ids:
        assert (await engine.status(run_id)).status is Status.WAITING
        assert await _events(engine, run_id, EventKind.CANCEL_REQUESTED) == []


async def test_bulk_retry_and_abort_act_on_held_runs_and_skip_the_others(
    engine: treadle.Engine,
) -> None:
    engine.register(held)
    engine.register(parked)
    stuck = [await engine.start("held") for _ in range(3)]
    waiting = await engine.start("parked")
    await engine.settle()
    assert [(await engine.status(r)).status for r in stuck] == [Status.HELD] * 3
    result = await engine.bulk("abort", status="held", by="ops", reason="ledger gone")
    assert sorted(result.applied) == sorted(stuck)
    for run_id in stuck:
        state = await engine.wait(run_id, timeout=10)
        assert state.status is Status.FAILED and "ledger gone" in (state.error or "")
        [aborted] = await _events(engine, run_id, EventKind.RUN_ABORTED)
        assert aborted.detail["by"] == "ops" and aborted.detail["bulk"] is True
    retried = await engine.bulk("retry", RunFilter(), by="ops")
    assert retried.applied == []
    assert retried.skipped[waiting] == "it is waiting, not held"
    with pytest.raises(DataError, match="needs a reason"):
        await engine.bulk("abort", status="held")


async def test_bulk_resume_resumes_paused_runs_only(engine: treadle.Engine) -> None:
    engine.register(parked)
    paused, left = await engine.start("parked"), await engine.start("parked")
    await engine.settle()
    await engine.pause(paused)
    result = await engine.bulk("resume", workflow="parked", by="ops")
    assert result.applied == [paused] and result.skipped == {left: "it is waiting, not paused"}
    [resumed] = await _events(engine, paused, EventKind.RESUMED)
    assert resumed.detail == {"by": "ops", "bulk": True}


async def test_bulk_on_named_runs_acts_on_those_only(engine: treadle.Engine) -> None:
    engine.register(parked)
    ids = [await engine.start("parked") for _ in range(4)]
    await engine.settle()
    result = await engine.bulk("cancel", run_ids=ids[:2], by="web")
    assert sorted(result.applied) == sorted(ids[:2])
    for run_id in ids[2:]:
        assert (await engine.status(run_id)).status is Status.WAITING


async def test_an_unknown_action_is_refused(engine: treadle.Engine) -> None:
    with pytest.raises(DataError, match="unknown bulk action 'explode': one of cancel"):
        await engine.bulk("explode", workflow="parked")


async def test_a_single_cancel_records_who_asked(engine: treadle.Engine) -> None:
    engine.register(parked)
    run_id = await engine.start("parked")
    await engine.cancel(run_id, by="alice")
    [asked] = await _events(engine, run_id, EventKind.CANCEL_REQUESTED)
    assert asked.detail == {"by": "alice"}


async def test_bulk_migrate_plans_in_a_dry_run_and_moves_for_real(
    engine: treadle.Engine,
) -> None:
    v1 = treadle.new("mig", version="v1").await_signal("go").build()
    v2 = (
        treadle.new("mig", version="v2")
        .await_signal("go")
        .step("after", lambda ctx, s: None)
        .build()
    )
    engine.register(v1)
    ids = [await engine.start("mig", version="v1") for _ in range(2)]
    await engine.settle()
    engine.register(v2)
    dry = await engine.bulk("migrate", workflow="mig", to="v2", dry_run=True, by="ops")
    assert sorted(dry.applied) == sorted(ids)
    assert {(await engine.status(r)).version for r in ids} == {"v1"}
    moved = await engine.bulk("migrate", workflow="mig", to="v2", by="ops")
    assert sorted(moved.applied) == sorted(ids)
    for run_id in ids:
        assert (await engine.status(run_id)).version == "v2"
        [event] = await _events(engine, run_id, EventKind.RUN_MIGRATED)
        assert event.detail["by"] == "ops"
    nowhere = await engine.bulk("migrate", workflow="mig", to="v9", dry_run=True)
    assert nowhere.applied == [] and all("v9" in why for why in nowhere.skipped.values())


async def test_bulk_delete_deletes_finished_runs_whole_and_skips_unfinished(
    engine: treadle.Engine,
) -> None:
    engine.register(parked, treadle.new("quick").step("s", lambda ctx, state: None).build())
    done = [await engine.start("quick", labels={"batch": "x"}) for _ in range(4)]
    waiting = await engine.start("parked", labels={"batch": "x"})
    for run_id in done:
        await engine.wait(run_id, timeout=10)
    await engine.settle()
    dry = await engine.bulk("delete", labels={"batch": "x"}, dry_run=True, by="ops")
    assert sorted(dry.applied) == sorted(done) and dry.skipped == {
        waiting: "it is waiting, not finished"
    }
    assert len(await engine.runs(labels={"batch": "x"})) == 5  # a dry run deletes nothing
    result = await engine.bulk("delete", labels={"batch": "x"}, by="ops", batch=2)
    assert sorted(result.applied) == sorted(done)
    for run_id in done:
        with pytest.raises(treadle.RunNotFound):
            await engine.status(run_id)
        assert await engine.persistence.history(run_id) == []
    assert (await engine.status(waiting)).status is Status.WAITING
