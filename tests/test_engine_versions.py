"""Runs that outlive their code: several definitions per name, pinning, held failures with
retry/skip/abort, migration and forks (on every backend of the ``make_engine`` fixture)."""

from __future__ import annotations

from typing import Any

import pytest
from enginekit import EngineFactory, completed_steps, events, until_status, waiting_for

import treadle
from treadle import Context, State, Status

FAILING = {"on": True}
ATTEMPTS: list[int] = []  # of the failing step (a failed attempt leaves no data behind)


def _a(ctx: Context, state: State) -> None:
    state.data.setdefault("ran", []).append(ctx.step)


def _flaky(ctx: Context, state: State) -> None:
    ATTEMPTS.append(ctx.attempt)
    if FAILING["on"]:
        raise RuntimeError("partner API down")
    state.data.setdefault("ran", []).append(ctx.step)


def _undo(ctx: Context, state: State) -> None:
    state.data.setdefault("undone", []).append(ctx.step)


def _v1(**options: Any) -> treadle.Workflow:
    return (
        treadle.new("order", version="1", **options)
        .step("a", _a)
        .await_signal("go")
        .step("b", _a)
        .build()
    )


def _v2(**options: Any) -> treadle.Workflow:
    return (
        treadle.new("order", version="2", **options)
        .step("a", _a)
        .step("inserted", _a)
        .await_signal("go")
        .step("b", _a)
        .step("c", _a)
        .build()
    )


async def test_runs_stay_on_the_definition_they_started_on(make_engine: EngineFactory) -> None:
    engine = await make_engine(_v1(), _v2())
    old = await engine.start("order", version="1")
    new = await engine.start("order")  # the newest registered
    await waiting_for(engine, old, "signal:go")
    await waiting_for(engine, new, "signal:go")
    assert (await engine.status(old)).version == "1"
    assert (await engine.status(new)).version == "2"
    for run_id in (old, new):
        await engine.signal(run_id, "go")
    assert (await engine.wait(old, 5)).data["ran"] == ["a", "b"]
    assert (await engine.wait(new, 5)).data["ran"] == ["a", "inserted", "b", "c"]
    with pytest.raises(treadle.WorkflowNotFound, match="no definition '3'"):
        await engine.start("order", version="3")


async def test_a_run_whose_definition_no_engine_has_waits_for_one(
    make_engine: EngineFactory,
) -> None:
    first = await make_engine(_v1())
    run_id = await first.start("order")
    await waiting_for(first, run_id, "signal:go")
    await first.close()
    second = await make_engine(_v2())  # a deploy that dropped v1
    await second.signal(run_id, "go")  # checked against the run's own definition
    await second.settle()
    state = await second.status(run_id)
    assert state.status is Status.PENDING
    assert state.waiting_for == [f"worker:{_v1().id}"]
    third = await make_engine(_v1())  # a worker with v1 comes back
    final = await third.wait(run_id, 5)
    assert final.status is Status.COMPLETED and final.data["ran"] == ["a", "b"]


async def test_auto_upgrade_moves_a_run_whose_position_maps(make_engine: EngineFactory) -> None:
    first = await make_engine(_v1())
    run_id = await first.start("order")
    await waiting_for(first, run_id, "signal:go")
    await first.close()
    second = await make_engine(_v2(auto_upgrade=True))
    await second.signal(run_id, "go")
    final = await second.wait(run_id, 5)
    # "inserted" comes before the wait the run was in: it is not run; "c" is.
    assert final.data["ran"] == ["a", "b", "c"]
    assert final.version == "2" and final.definition_id == _v2().id
    [moved] = await events(second, run_id, "run_migrated")
    assert moved.detail["automatic"] is True


async def test_auto_upgrade_holds_a_run_whose_position_is_gone_and_abort_compensates(
    make_engine: EngineFactory,
) -> None:
    v1 = (
        treadle.new("order", version="1").step("a", _a, compensate=_undo).await_signal("go").build()
    )
    v2 = treadle.new("order", version="2", auto_upgrade=True).step("a", _a, compensate=_undo)
    first = await make_engine(v1)
    run_id = await first.start("order")
    await waiting_for(first, run_id, "signal:go")
    await first.close()
    second = await make_engine(v2.step("z", _a).build())
    await second.signal(run_id, "go")
    held = await until_status(second, run_id, Status.HELD)
    assert held.waiting_for == ["held:definition"]
    assert held.error is not None and "'go'" in held.error
    assert held.data == {"ran": ["a"]}, "nothing was undone or run"
    with pytest.raises(treadle.InvalidTransition):
        await second.skip(run_id)  # no step failed: nothing to skip
    await second.abort(run_id, "obsolete", by="ops")
    final = await second.wait(run_id, 5)
    assert final.status is Status.FAILED and final.error == "aborted: obsolete"
    assert final.data["undone"] == ["a"]
    [aborted] = await events(second, run_id, "run_aborted")
    assert aborted.detail["by"] == "ops"


def _held_workflow(**options: Any) -> treadle.Workflow:
    return (
        treadle.new("pay", on_failure="hold", **options)
        .step("reserve", _a, compensate=_undo)
        .step("charge", _flaky, retry=treadle.RetryPolicy().attempts(2).backoff("0s", "0s"))
        .step("ship", _a)
        .build()
    )


async def _held(engine: treadle.Engine) -> str:
    FAILING["on"] = True
    ATTEMPTS.clear()
    run_id = await engine.start("pay")
    held = await until_status(engine, run_id, Status.HELD)
    assert held.waiting_for == ["held:charge"]
    assert held.error is not None and "partner API down" in held.error
    assert held.data == {"ran": ["reserve"]}, "nothing compensated"
    assert ATTEMPTS == [1, 2]
    return run_id


async def test_a_held_step_runs_again_with_fresh_attempts_on_retry(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine(_held_workflow())
    run_id = await _held(engine)
    with pytest.raises(treadle.InvalidTransition):
        await engine.pause(run_id)
    FAILING["on"] = False
    await engine.retry(run_id, by="alice")
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert final.data["ran"] == ["reserve", "charge", "ship"]
    assert ATTEMPTS == [1, 2, 1], "fresh attempts"
    history = await engine.history(run_id)
    assert completed_steps(history) == ["reserve", "charge", "ship"]
    [retried] = [e for e in history if e.kind == "run_retried"]
    assert retried.detail["by"] == "alice"
    with pytest.raises(treadle.InvalidTransition, match="not held"):
        await engine.retry(run_id)


async def test_a_held_step_can_be_skipped_with_data_or_aborted(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine(_held_workflow())
    skipped = await _held(engine)
    await engine.skip(skipped, {"charged": "by hand"}, by="bob")
    final = await engine.wait(skipped, 5)
    assert final.status is Status.COMPLETED
    assert final.data["charged"] == "by hand"
    assert final.data["ran"] == ["reserve", "ship"]
    aborted = await _held(engine)
    await engine.abort(aborted, "customer left")
    final = await engine.wait(aborted, 5)
    assert final.status is Status.FAILED and final.data["undone"] == ["reserve"]
    cancelled = await _held(engine)
    await engine.cancel(cancelled)
    final = await engine.wait(cancelled, 5)
    assert final.status is Status.CANCELLED and final.data["undone"] == ["reserve"]


async def test_a_step_may_hold_while_its_workflow_compensates(make_engine: EngineFactory) -> None:
    FAILING["on"] = True
    wf = (
        treadle.new("mixed")
        .step("reserve", _a, compensate=_undo)
        .step("charge", _flaky, on_failure="hold")
        .build()
    )
    engine = await make_engine(wf)
    run_id = await engine.start("mixed")
    assert (await until_status(engine, run_id, Status.HELD)).waiting_for == ["held:charge"]


async def test_migrate_moves_a_waiting_run_with_a_rename_and_refuses_what_does_not_map(
    make_engine: EngineFactory,
) -> None:
    renamed = (
        treadle.new("order", version="3")
        .step("a", _a)
        .await_signal("go-ahead")
        .step("b", _a)
        .build()
    )
    no_wait = treadle.new("order", version="4").step("a", _a).step("b", _a).build()
    engine = await make_engine(_v1(), renamed, no_wait)
    run_id = await engine.start("order", version="1")
    await waiting_for(engine, run_id, "signal:go")
    plan = await engine.plan_migration(run_id, to="4")
    assert not plan.ok and any("'go'" in r for r in plan.reasons)
    with pytest.raises(treadle.DefinitionMismatch) as refused:
        await engine.migrate(run_id, to="4")
    assert refused.value.reasons == plan.reasons
    assert (await engine.status(run_id)).version == "1", "nothing changed"
    moved = await engine.migrate(run_id, to="3", rename={"go": "go-ahead"}, by="ops")
    assert moved.moved and moved.target_version == "3"
    state = await engine.status(run_id)
    assert state.version == "3" and state.waiting_for == ["signal:go-ahead"]
    await engine.signal(run_id, "go-ahead")
    final = await engine.wait(run_id, 5)
    assert final.data["ran"] == ["a", "b"]
    with pytest.raises(treadle.DefinitionError, match="rename"):
        await engine.migrate(run_id, rename={"a": 1})  # type: ignore[dict-item]


async def test_migrate_runs_lists_what_moves_and_why_the_others_cannot(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine(_v1(), _v2())
    runs = [await engine.start("order", version="1") for _ in range(3)]
    for run_id in runs:
        await waiting_for(engine, run_id, "signal:go")
    dry = await engine.migrate_runs("order", source="1", to="2", dry_run=True)
    assert sorted(p.run_id for p in dry) == sorted(runs)
    assert all(p.ok and not p.moved for p in dry)
    assert {(await engine.status(r)).version for r in runs} == {"1"}
    done = await engine.migrate_runs("order", source="1", to="2")
    assert all(p.moved for p in done)
    for run_id in runs:
        await engine.signal(run_id, "go")
        assert (await engine.wait(run_id, 5)).data["ran"] == ["a", "b", "c"]


async def test_fork_keeps_the_steps_before_and_runs_from_the_given_step(
    make_engine: EngineFactory,
) -> None:
    engine = await make_engine(_held_workflow())
    run_id = await _held(engine)
    await engine.abort(run_id, "retry it as a new order")
    failed = await engine.wait(run_id, 5)
    assert failed.status is Status.FAILED
    FAILING["on"] = False
    fork = await engine.fork(run_id, from_step="charge", data={"ran": ["reserve"]})
    final = await engine.wait(fork, 5)
    assert final.status is Status.COMPLETED
    assert final.forked_from == run_id
    assert final.data["ran"] == ["reserve", "charge", "ship"]
    assert completed_steps(await engine.history(fork)) == ["charge", "ship"]
    with pytest.raises(treadle.DefinitionError, match="not a step of the top level"):
        await engine.fork(run_id, from_step="nope")


async def test_the_fingerprint_covers_timeouts_backoffs_and_on_failure() -> None:
    def build(**step: Any) -> treadle.Workflow:
        return treadle.new("w").step("s", _a, **step).build()

    base = build()
    policy = treadle.RetryPolicy()
    assert len({
        base.id,
        build(timeout="5s").id,
        build(retry=policy).id,
        build(retry=policy.backoff("1s", "1m")).id,
        build(on_failure="hold").id,
        treadle.new("w", version="x").step("s", _a).build().id,
    }) == 6  # fmt: skip
    with pytest.raises(treadle.DefinitionError, match="on_failure"):
        treadle.new("w", on_failure="ignore")


async def test_an_engine_without_the_code_starts_runs_from_the_stored_definitions(
    make_engine: EngineFactory,
) -> None:
    web = await make_engine(max_concurrent_runs=0)  # a web process: no step code, no execution
    with pytest.raises(treadle.WorkflowNotFound):
        await web.start("order")  # no engine has stored a definition of it yet
    worker = await make_engine(_v1(), _v2())
    await worker.settle()  # it has stored its definitions
    newest = await web.start("order", {"from": "web"})
    older = await web.start("order", version="1")
    assert (await web.status(newest)).version == "2"
    assert (await web.status(older)).version == "1"
    for run_id in (newest, older):
        await waiting_for(worker, run_id, "signal:go")
        await web.signal(run_id, "go")  # checked against the stored definition
    assert (await worker.wait(newest, 5)).data["ran"] == ["a", "inserted", "b", "c"]
    assert (await worker.wait(older, 5)).data["ran"] == ["a", "b"]
    with pytest.raises(treadle.WorkflowNotFound, match="no definition '9'"):
        await web.start("order", version="9")
