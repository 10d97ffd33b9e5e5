"""Conformance: signals, approvals and their timeouts (API.md "Semantics"). Every test runs on
every persistence."""

from __future__ import annotations

import asyncio

import pytest
from enginekit import events, start, until_status, waiting_for

import treadle
from treadle import Context, State, Status

# Signals ---------------------------------------------------------------------------------


async def test_signal_data_is_stored_at_data_signal_name(engine: treadle.Engine) -> None:
    wf = treadle.new("pay").step("order", lambda c, s: "placed").await_signal("payment").build()
    run_id = await start(engine, wf)
    state = await waiting_for(engine, run_id, "signal:payment")
    assert state.data == {"order": "placed"}
    await engine.signal(run_id, "payment", {"amount": 250})
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert final.data == {"order": "placed", "payment": {"amount": 250}}
    kinds = [e.kind for e in await engine.history(run_id)]
    assert kinds.index("signal_received") < kinds.index("signal_consumed")


async def test_signal_without_data_stores_none(engine: treadle.Engine) -> None:
    run_id = await start(engine, treadle.new("pinger").await_signal("ping").build())
    await waiting_for(engine, run_id, "signal:ping")
    await engine.signal(run_id, "ping")
    assert (await engine.wait(run_id, 5)).data == {"ping": None}


async def test_signal_sent_before_the_run_reaches_the_wait_is_kept(
    engine: treadle.Engine,
) -> None:
    gate = asyncio.Event()

    async def busy(ctx: Context, state: State) -> None:
        await asyncio.wait_for(gate.wait(), 5)

    wf = treadle.new("early").step("busy", busy).await_signal("go").build()
    run_id = await start(engine, wf)
    await until_status(engine, run_id, Status.RUNNING)
    await engine.signal(run_id, "go", "early bird")
    gate.set()
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert final.data == {"go": "early bird"}


async def test_early_signals_are_kept_in_order_and_consumed_one_per_wait(
    engine: treadle.Engine,
) -> None:
    gate = asyncio.Event()

    async def busy(ctx: Context, state: State) -> None:
        await asyncio.wait_for(gate.wait(), 5)

    def collect(ctx: Context, state: State) -> None:
        state.data.setdefault("got", []).append(state.data["item"])

    wf = (
        treadle.new("inbox")
        .step("busy", busy)
        .loop("each")
        .max_iterations(3)
        .do(treadle.new("body").await_signal("item").step("collect", collect).build())
        .end()
        .build()
    )
    run_id = await start(engine, wf)
    await until_status(engine, run_id, Status.RUNNING)
    for n in (1, 2, 3, 4):
        await engine.signal(run_id, "item", n)
    gate.set()
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert final.data["got"] == [1, 2, 3]
    consumed = await events(engine, run_id, "signal_consumed")
    assert len(consumed) == 3


async def test_signal_while_paused_is_accepted_and_consumed_after_resume(
    engine: treadle.Engine,
) -> None:
    run_id = await start(engine, treadle.new("paused-sig").await_signal("go").build())
    await waiting_for(engine, run_id, "signal:go")
    await engine.pause(run_id)
    await until_status(engine, run_id, Status.PAUSED)
    await engine.signal(run_id, "go", 7)
    await engine.settle()  # had the signal resumed the run, it would have completed by now
    state = await engine.status(run_id)
    assert state.status is Status.PAUSED and "go" not in state.data
    await engine.resume(run_id)
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED and final.data == {"go": 7}


async def test_signal_the_definition_never_awaits_raises_unknown_signal(
    engine: treadle.Engine,
) -> None:
    run_id = await start(engine, treadle.new("one-sig").await_signal("known").build())
    with pytest.raises(treadle.UnknownSignal):
        await engine.signal(run_id, "unknown", 1)
    assert not await events(engine, run_id, "signal_received")


async def test_signal_to_a_finished_run_raises_invalid_transition(engine: treadle.Engine) -> None:
    wf = (
        treadle.new("done-sig")
        .if_("never", lambda s: False)
        .then(treadle.new("arm").await_signal("late").build())
        .end()
        .build()
    )
    run_id = await start(engine, wf)
    assert (await engine.wait(run_id, 5)).status is Status.COMPLETED
    with pytest.raises(treadle.InvalidTransition):
        await engine.signal(run_id, "late")


async def test_signal_timeout_fails_the_step_with_wait_timeout(
    engine: treadle.Engine, clock: treadle.FakeClock
) -> None:
    wf = treadle.new("sig-timeout").await_signal("payment").timeout("48h").build()
    run_id = await start(engine, wf)
    await waiting_for(engine, run_id, "signal:payment")
    clock.advance("47h")
    await engine.settle()  # a timeout due by now would have failed the run
    assert (await engine.status(run_id)).status is Status.WAITING
    clock.advance("1h")
    final = await engine.wait(run_id, 5)
    assert final.status is Status.FAILED
    assert final.error is not None and "WaitTimeout" in final.error
    assert "payment" in final.error


async def test_signal_arriving_before_its_timeout_completes_the_wait(
    engine: treadle.Engine, clock: treadle.FakeClock
) -> None:
    wf = treadle.new("sig-in-time").await_signal("payment").timeout("1h").build()
    run_id = await start(engine, wf)
    await waiting_for(engine, run_id, "signal:payment")
    clock.advance("30m")
    await engine.signal(run_id, "payment", 1)
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED and final.data == {"payment": 1}
    clock.advance("2h")
    await engine.settle()  # the timeout, due by now, must not touch the completed run
    assert (await engine.status(run_id)).status is Status.COMPLETED
    assert not await events(engine, run_id, "step_failed")


# Approvals -------------------------------------------------------------------------------


def approval_flow(name: str, approvers: list[str], quorum: int | None = None) -> treadle.Workflow:
    builder = treadle.new(name).await_approval("manager", approvers)
    if quorum is not None:
        builder = builder.quorum(quorum)
    return builder.step("after", lambda c, s: "approved").build()


async def test_approval_by_an_approver_stores_the_outcome_and_goes_on(
    engine: treadle.Engine,
) -> None:
    run_id = await start(engine, approval_flow("appr", ["alice", "bob"]))
    await waiting_for(engine, run_id, "approval:manager")
    await engine.approve(run_id, "manager", by="alice", comment="fine")
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert final.data == {
        "manager": {"approved": True, "by": ["alice"], "comment": "fine"},
        "after": "approved",
    }
    assert [e.kind for e in await engine.history(run_id)].count("approval_received") == 1


async def test_approval_by_someone_not_an_approver_raises_and_changes_nothing(
    engine: treadle.Engine,
) -> None:
    run_id = await start(engine, approval_flow("appr-nobody", ["alice"]))
    before = await waiting_for(engine, run_id, "approval:manager")
    history = await engine.history(run_id)
    with pytest.raises(treadle.NotAnApprover):
        await engine.approve(run_id, "manager", by="mallory")
    with pytest.raises(treadle.NotAnApprover):
        await engine.reject(run_id, "manager", by="mallory")
    with pytest.raises(treadle.NotAnApprover):
        await engine.approve(run_id, "manager")  # anonymous, but approvers are named
    await engine.settle()
    after = await engine.status(run_id)
    assert (after.status, after.data, after.waiting_for) == (
        before.status,
        before.data,
        before.waiting_for,
    )
    assert await engine.history(run_id) == history
    await engine.approve(run_id, "manager", by="alice")
    final = await engine.wait(run_id, 5)
    assert final.data["manager"]["by"] == ["alice"]


async def test_anonymous_approval_is_allowed_when_approvers_are_empty(
    engine: treadle.Engine,
) -> None:
    run_id = await start(engine, approval_flow("appr-anyone", []))
    await waiting_for(engine, run_id, "approval:manager")
    await engine.approve(run_id, "manager")
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert final.data["manager"]["approved"] is True


async def test_quorum_needs_that_many_distinct_approvers(engine: treadle.Engine) -> None:
    run_id = await start(engine, approval_flow("appr-quorum", ["alice", "bob", "carol"], 2))
    await waiting_for(engine, run_id, "approval:manager")
    await engine.approve(run_id, "manager", by="alice")
    await engine.approve(run_id, "manager", by="alice")  # the same person twice counts once
    await engine.settle()  # had one approver been enough, the run would have completed by now
    state = await engine.status(run_id)
    assert state.status is Status.WAITING and "manager" not in state.data
    await engine.approve(run_id, "manager", by="carol", comment="ok")
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert final.data["manager"]["approved"] is True
    assert final.data["manager"]["by"] == ["alice", "carol"]


async def test_rejection_fails_the_step_with_approval_rejected_and_stores_the_outcome(
    engine: treadle.Engine,
) -> None:
    run_id = await start(engine, approval_flow("appr-reject", ["alice", "bob"]))
    await waiting_for(engine, run_id, "approval:manager")
    await engine.reject(run_id, "manager", by="bob", reason="too expensive")
    final = await engine.wait(run_id, 5)
    assert final.status is Status.FAILED
    assert final.error is not None and "ApprovalRejected" in final.error
    assert "too expensive" in final.error
    assert final.data["manager"] == {"approved": False, "by": ["bob"], "reason": "too expensive"}
    assert "after" not in final.data


async def test_rejected_approval_compensates_completed_steps(engine: treadle.Engine) -> None:
    undone: list[str] = []

    def undo(ctx: Context, state: State) -> None:
        undone.append(ctx.step)

    wf = (
        treadle.new("appr-saga")
        .step("reserve", lambda c, s: "held", compensate=undo)
        .step("log", lambda c, s: None)
        .step("charge", lambda c, s: "charged", compensate=undo)
        .await_approval("manager", ["alice"])
        .build()
    )
    run_id = await start(engine, wf)
    await waiting_for(engine, run_id, "approval:manager")
    await engine.reject(run_id, "manager", by="alice", reason="no")
    final = await engine.wait(run_id, 5)
    assert final.status is Status.FAILED
    assert undone == ["charge", "reserve"]


async def test_decision_sent_before_the_run_reaches_the_approval_is_kept(
    engine: treadle.Engine,
) -> None:
    gate = asyncio.Event()

    async def busy(ctx: Context, state: State) -> None:
        await asyncio.wait_for(gate.wait(), 5)

    wf = treadle.new("appr-early").step("busy", busy).await_approval("boss", ["ann"]).build()
    run_id = await start(engine, wf)
    await until_status(engine, run_id, Status.RUNNING)
    await engine.approve(run_id, "boss", by="ann")
    gate.set()
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED
    assert final.data["boss"] == {"approved": True, "by": ["ann"], "comment": None}


async def test_approval_timeout_fails_the_step_with_wait_timeout(
    engine: treadle.Engine, clock: treadle.FakeClock
) -> None:
    wf = treadle.new("appr-timeout").await_approval("manager", ["alice"]).timeout("2h").build()
    run_id = await start(engine, wf)
    await waiting_for(engine, run_id, "approval:manager")
    clock.advance("2h")
    final = await engine.wait(run_id, 5)
    assert final.status is Status.FAILED
    assert final.error is not None and "WaitTimeout" in final.error


async def test_unknown_approval_name_raises_unknown_approval(engine: treadle.Engine) -> None:
    run_id = await start(engine, approval_flow("appr-unknown", ["alice"]))
    await waiting_for(engine, run_id, "approval:manager")
    with pytest.raises(treadle.UnknownApproval):
        await engine.approve(run_id, "director", by="alice")
    with pytest.raises(treadle.UnknownApproval):
        await engine.reject(run_id, "director", by="alice")


async def test_decision_on_a_finished_run_raises_invalid_transition(
    engine: treadle.Engine,
) -> None:
    run_id = await start(engine, approval_flow("appr-finished", ["alice"]))
    await waiting_for(engine, run_id, "approval:manager")
    await engine.approve(run_id, "manager", by="alice")
    await engine.wait(run_id, 5)
    with pytest.raises(treadle.InvalidTransition):
        await engine.approve(run_id, "manager", by="alice")
    with pytest.raises(treadle.InvalidTransition):
        await engine.reject(run_id, "manager", by="alice")
