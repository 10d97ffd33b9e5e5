"""Conformance: parameters from the run's data, deadlines and results (API.md "Parameters from
the run's data, deadlines and results"). Every test runs on every persistence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from enginekit import events, start, until_status, waiting_for

import treadle
from treadle import Context, State, Status
from treadle.testing import TestKit

# Parameters from the run's data -----------------------------------------------------------


async def test_approvers_computed_from_the_data_are_recorded_and_checked(
    engine: treadle.Engine,
) -> None:
    calls: list[str] = []

    def manager(s: State) -> list[str]:
        calls.append(s.data["manager"])
        return [s.data["manager"]]

    wf = treadle.new("dyn-approve").await_approval("ok", manager).build()
    run_id = await start(engine, wf, {"manager": "carol"})
    state = await waiting_for(engine, run_id, "approval:ok")
    assert state.params == {"ok": {"approvers": ["carol"]}}
    with pytest.raises(treadle.NotAnApprover, match="carol"):
        await engine.approve(run_id, "ok", by="alice")
    await engine.approve(run_id, "ok", by="carol")
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert final.data["ok"]["by"] == ["carol"]
    assert calls == ["carol"]  # evaluated once, when the step started
    [computed] = await events(engine, run_id, "params_computed")
    assert computed.step == "ok" and computed.detail == {"params": {"approvers": ["carol"]}}


async def test_a_client_without_step_code_checks_the_recorded_approvers(
    make_engine: Any, make_persistence: Any
) -> None:
    wf = treadle.new("dyn-client").await_approval("ok", lambda s: [s.data["boss"]]).build()
    worker = await make_engine(wf)
    run_id = await worker.start("dyn-client", {"boss": "dora"})
    await waiting_for(worker, run_id, "approval:ok")
    async with treadle.Client(make_persistence()) as client:
        with pytest.raises(treadle.NotAnApprover):
            await client.approve(run_id, "ok", by="eve")
        await client.approve(run_id, "ok", by="dora")
        assert (await client.wait(run_id, 5)).status is Status.COMPLETED


async def test_dynamic_quorum_and_timeout(kit: TestKit) -> None:
    wf = (
        treadle.new("dyn-quorum")
        .await_approval("ok", lambda s: s.data["board"])
        .quorum(lambda s: len(s.data["board"]))
        .timeout(lambda s: s.data["hours"] * 3600)
        .build()
    )
    kit.register(wf)
    run_id = await kit.start("dyn-quorum", {"board": ["a", "b"], "hours": 2})
    await kit.engine.approve(run_id, "ok", by="a")
    await kit.run_until_idle()
    assert (await kit.engine.status(run_id)).params["ok"] == {
        "approvers": ["a", "b"],
        "quorum": 2,
        "timeout": 7200.0,
    }
    await kit.advance("2h")
    final = await kit.engine.status(run_id)
    assert final.status is Status.FAILED
    assert "WaitTimeout" in (final.error or "")


async def test_sleep_for_a_computed_duration_and_until_a_computed_time(kit: TestKit) -> None:
    at = kit.clock.now() + timedelta(hours=5)
    wf = (
        treadle.new("dyn-sleep")
        .sleep("cool-off", lambda s: f"{s.data['minutes']}m")
        .sleep_until("delivery", lambda s: datetime.fromisoformat(s.data["delivery"]))
        .build()
    )
    kit.register(wf)
    run_id = await kit.start("dyn-sleep", {"minutes": 30, "delivery": at.isoformat()})
    await kit.advance("29m")
    assert "timer:cool-off" in (await kit.engine.status(run_id)).waiting_for
    await kit.advance("1m")
    state = await kit.engine.status(run_id)
    assert state.waiting_for == ["timer:delivery"]
    assert state.params["delivery"] == {"until": at.timestamp()}
    await kit.advance("4h29m")
    assert (await kit.engine.status(run_id)).status is Status.WAITING
    await kit.advance("1m")
    assert (await kit.engine.status(run_id)).status is Status.COMPLETED


async def test_sleep_until_a_fixed_time_in_the_past_does_not_wait(kit: TestKit) -> None:
    past = datetime(2000, 1, 1, tzinfo=UTC)
    kit.register(treadle.new("dyn-past").sleep_until("then", past).build())
    run_id = await kit.start("dyn-past")
    await kit.run_until_idle()
    assert (await kit.engine.status(run_id)).status is Status.COMPLETED


async def test_a_dynamic_parameter_of_the_wrong_type_fails_the_step_naming_the_value(
    engine: treadle.Engine,
) -> None:
    wf = treadle.new("dyn-bad").await_approval("ok", lambda s: "carol").build()
    final = await engine.wait(await start(engine, wf), 5)
    assert final.status is Status.FAILED
    assert "step 'ok'" in (final.error or "") and "'carol'" in (final.error or "")


async def test_sub_workflow_name_and_input_from_the_data(engine: treadle.Engine) -> None:
    child = treadle.new("invoice").step("bill", lambda c, s: s.data["amount"] * 2).build()
    engine.register(child)
    wf = (
        treadle.new("dyn-parent")
        .sub_workflow("bill", lambda s: s.data["kind"], lambda s: {"amount": s.data["n"]})
        .build()
    )
    final = await engine.wait(await start(engine, wf, {"kind": "invoice", "n": 21}), 5)
    assert final.status is Status.COMPLETED
    assert final.data["bill"] == {"amount": 21, "bill": 42}


async def test_retry_attempts_from_the_data(engine: treadle.Engine) -> None:
    tries: list[int] = []
    seen: list[dict[str, Any]] = []

    def flaky(ctx: Context, s: State) -> None:
        tries.append(ctx.attempt)
        seen.append(ctx.params)
        raise RuntimeError("down")

    policy = treadle.RetryPolicy().attempts(lambda s: s.data["tries"]).backoff("1ms", "1ms")
    wf = treadle.new("dyn-retry").step("call", flaky, retry=policy).build()
    final = await engine.wait(await start(engine, wf, {"tries": 4}), 5)
    assert final.status is Status.FAILED
    assert tries == [1, 2, 3, 4]
    assert seen == [{"attempts": 4}] * 4, "ctx.params: the recorded value, in every attempt"
    assert len(await events(engine, run_id=final.id, kind="params_computed")) == 1


async def test_a_step_without_computed_parameters_has_empty_ctx_params(
    engine: treadle.Engine,
) -> None:
    seen: list[dict[str, Any]] = []
    policy = treadle.RetryPolicy().attempts(3)
    wf = treadle.new("static").step("call", lambda c, s: seen.append(c.params), retry=policy)
    final = await engine.wait(await start(engine, wf.build(), {}), 5)
    assert final.status is Status.COMPLETED
    assert seen == [{}]


# Deadlines --------------------------------------------------------------------------------


def _undo(log: list[str], name: str) -> Any:
    return lambda ctx, s: log.append(name)


async def test_a_waiting_run_is_cancelled_at_its_deadline_with_compensation(kit: TestKit) -> None:
    undone: list[str] = []
    wf = (
        treadle.new("dl-order")
        .deadline("7d")
        .step("reserve", lambda c, s: None, compensate=_undo(undone, "reserve"))
        .await_signal("paid")
        .build()
    )
    kit.register(wf)
    run_id = await kit.start("dl-order")
    state = await kit.engine.status(run_id)
    assert state.deadline == kit.clock.now() + timedelta(days=7)
    await kit.advance("6d23h")
    assert (await kit.engine.status(run_id)).status is Status.WAITING
    await kit.advance("1h")
    final = await kit.engine.status(run_id)
    assert final.status is Status.CANCELLED
    assert (final.error or "").startswith("DeadlineExceeded: ")
    assert undone == ["reserve"]
    assert [e.kind for e in await kit.events(run_id, "deadline_exceeded")] == ["deadline_exceeded"]


async def test_start_deadline_stops_a_running_step(engine: treadle.Engine) -> None:
    import asyncio

    async def slow(ctx: Context, s: State) -> None:
        await asyncio.sleep(30)

    wf = treadle.new("dl-slow").step("slow", slow).build()
    engine.register(wf)
    run_id = await engine.start("dl-slow", deadline=0.3)
    final = await engine.wait(run_id, 10)
    assert final.status is Status.CANCELLED
    assert "DeadlineExceeded" in (final.error or "")


async def test_children_inherit_the_remaining_deadline_unless_theirs_is_shorter(
    kit: TestKit,
) -> None:
    kit.register(treadle.new("dl-child").await_signal("never").build())
    kit.register(treadle.new("dl-short").deadline("1h").await_signal("never").build())
    parent = (
        treadle.new("dl-parent")
        .parallel(
            "both",
            treadle.new("a").sub_workflow("long", "dl-child").build(),
            treadle.new("b").sub_workflow("short", "dl-short").build(),
        )
        .build()
    )
    kit.register(parent)
    started = kit.clock.now()
    run_id = await kit.engine.start("dl-parent", deadline="1d")
    await kit.run_until_idle()
    children = {c.workflow: c for c in await kit.engine.runs(parent_id=run_id)}
    assert children["dl-child"].deadline == started + timedelta(days=1)
    assert children["dl-short"].deadline == started + timedelta(hours=1)
    await kit.advance("1h")  # the short child passes its own deadline: the parent fails
    short = await kit.engine.status(children["dl-short"].id)
    assert short.status is Status.CANCELLED and "DeadlineExceeded" in (short.error or "")
    assert (await kit.engine.status(run_id)).status is Status.FAILED
    long = await kit.engine.status(children["dl-child"].id)
    assert long.status is Status.CANCELLED and long.error == "cancelled"


async def test_a_bad_start_deadline_is_one_clear_error(engine: treadle.Engine) -> None:
    engine.register(treadle.new("dl-bad").step("a", lambda c, s: None).build())
    with pytest.raises(treadle.DataError, match="positive duration, not '0s'"):
        await engine.start("dl-bad", deadline="0s")
    with pytest.raises(treadle.DataError, match="negative duration"):
        await engine.start("dl-bad", deadline="-1s")
    with pytest.raises(treadle.DataError, match="timezone"):
        await engine.start("dl-bad", deadline=datetime(2030, 1, 1))


# Children when the parent ends first ------------------------------------------------------


async def test_children_are_cancelled_when_the_parent_fails_unless_abandoned(
    engine: treadle.Engine,
) -> None:
    engine.register(treadle.new("kid").await_signal("never").build())

    def boom(ctx: Context, s: State) -> None:
        raise treadle.NonRetryableError("no")

    wf = (
        treadle.new("fails")
        .parallel(
            "fan",
            treadle.new("x").sub_workflow("kept", "kid", on_parent_end="abandon").build(),
            treadle.new("y").sub_workflow("ended", "kid").build(),
            treadle.new("z").sleep("pause", "50ms").step("boom", boom).build(),
        )
        .build()
    )
    final = await engine.wait(await start(engine, wf), 5)
    assert final.status is Status.FAILED
    by_step = {c.id.split(".")[1]: c for c in await engine.runs(parent_id=final.id)}
    assert by_step["kept"].status is Status.WAITING
    await until_status(engine, by_step["ended"].id, Status.CANCELLED)


async def test_the_child_of_a_losing_branch_is_cancelled_and_losers_compensated(
    engine: treadle.Engine,
) -> None:
    engine.register(treadle.new("slowkid").await_signal("never").build())
    undone: list[str] = []
    wf = (
        treadle.new("race")
        .parallel(
            "race",
            treadle.new("fast").await_signal("go").build(),
            treadle.new("slow")
            .step("prep", lambda c, s: None, compensate=_undo(undone, "prep"))
            .sub_workflow("wait-kid", "slowkid")
            .build(),
        )
        .wait_for(treadle.WaitAny)
        .compensate_losers()
        .build()
    )
    engine.register(wf)
    run_id = await engine.start("race")
    await waiting_for(engine, run_id, "signal:go")
    [kid] = await engine.runs(parent_id=run_id)
    await engine.signal(run_id, "go")
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert undone == ["prep"]
    await until_status(engine, kid.id, Status.CANCELLED)


# Results ----------------------------------------------------------------------------------


async def test_output_is_the_run_result_and_a_parent_stores_it(engine: treadle.Engine) -> None:
    child = (
        treadle.new("quote")
        .step("price", lambda c, s: 10 * s.data["n"])
        .output(lambda s: {"total": s.data["price"]})
        .build()
    )
    engine.register(child)
    parent = treadle.new("buyer").sub_workflow("quote", "quote", {"n": 3}).build()
    final = await engine.wait(await start(engine, parent), 5)
    assert final.data["quote"] == {"total": 30}
    [kid] = await engine.runs(parent_id=final.id)
    assert (await engine.status(kid.id)).result == {"total": 30}
    assert await engine.result(kid.id) == {"total": 30}
    assert await engine.result(final.id) is None  # no output declared


async def test_result_of_a_run_that_has_not_completed_says_its_status(
    engine: treadle.Engine,
) -> None:
    run_id = await start(engine, treadle.new("unfinished").await_signal("go").build())
    await waiting_for(engine, run_id, "signal:go")
    with pytest.raises(treadle.InvalidTransition, match=r"read the result of run .* waiting"):
        await engine.result(run_id)


async def test_an_output_that_raises_fails_the_run(engine: treadle.Engine) -> None:
    undone: list[str] = []
    wf = (
        treadle.new("bad-output")
        .step("a", lambda c, s: None, compensate=_undo(undone, "a"))
        .output(lambda s: s.data["missing"])
        .build()
    )
    final = await engine.wait(await start(engine, wf), 5)
    assert final.status is Status.FAILED
    assert "step 'output' failed" in (final.error or "")
    assert undone == ["a"]


# Builder misuse ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: treadle.new("w").deadline("0s"), "deadline must be positive"),
        (lambda: treadle.new("w").deadline("soon"), "workflow 'w'"),
        (
            lambda: treadle.new("w").sub_workflow("c", "kid", on_parent_end="keep"),
            "on_parent_end must be 'cancel' or 'abandon', not 'keep'",
        ),
        (lambda: treadle.new("w").sleep_until("s", datetime(2030, 1, 1)), "timezone-aware"),
        (lambda: treadle.new("w").output(42), "output 42 is not callable"),
    ],
)
def test_builder_misuse_is_a_definition_error(make: Any, message: str) -> None:
    with pytest.raises(treadle.DefinitionError, match=message):
        make()


def test_dynamic_parameters_show_in_the_shape() -> None:
    wf = (
        treadle.new("shape")
        .await_approval("ok", lambda s: ["x"])
        .sleep_until("then", lambda s: datetime.now(UTC))
        .build()
    )
    approval, sleep = wf.describe()["steps"]
    assert approval["dynamic"] == ["approvers"] and approval["approvers"] == []
    assert sleep["dynamic"] == ["until"]
    plain = treadle.new("shape").await_approval("ok", ["x"]).build()
    assert "dynamic" not in plain.describe()["steps"][0]
