"""Signals and decisions stored once, and starts that name an existing run (on every backend)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from enginekit import events, waiting_for
from test_web_api import TOKENS, _client, as_

import treadle
from treadle import Context, State, Status


def _collect(name: str) -> Any:
    def collect(ctx: Context, state: State) -> None:
        state.data.setdefault("got", []).append(state.data[name])

    return collect


def _rounds(workflow: str, body: treadle.Workflow) -> treadle.Workflow:
    return treadle.new(workflow).loop("rounds").max_iterations(2).do(body).end().build()


SIGNALS = _rounds(
    "twice", treadle.new("body").await_signal("item").step("collect", _collect("item")).build()
)
APPROVALS = _rounds("review", treadle.new("body").await_approval("ok", ["alice", "bob"]).build())


async def test_a_signal_sent_twice_with_one_key_is_consumed_once(
    engine: treadle.Engine,
) -> None:
    engine.register(SIGNALS)
    run_id = await engine.start("twice")
    await waiting_for(engine, run_id, "signal:item")
    await engine.signal(run_id, "item", 1, idempotency_key="req-1")
    await engine.signal(run_id, "item", 1, idempotency_key="req-1")  # acknowledged
    await engine.settle()
    state = await engine.status(run_id)
    assert state.status is Status.WAITING and state.data["got"] == [1]  # round 2 still waits
    assert len(await events(engine, run_id, "signal_received")) == 1
    await engine.signal(run_id, "item", 2, idempotency_key="req-2")
    final = await engine.wait(run_id, 5)
    assert final.status is Status.COMPLETED and final.data["got"] == [1, 2]


async def test_a_keyed_delivery_repeated_after_it_ended_the_run_is_acknowledged(
    engine: treadle.Engine,
) -> None:
    # A client's POST times out after the signal was stored and the run went on to its end:
    # retrying it with the same key must succeed, not say "the run is completed".
    engine.register(treadle.new("once").await_signal("go").build())
    engine.register(treadle.new("ok-once").await_approval("ok", ["ann"]).build())
    signalled, approved = await engine.start("once"), await engine.start("ok-once")
    await engine.signal(signalled, "go", 1, idempotency_key="req-1")
    await engine.approve(approved, "ok", by="ann", idempotency_key="req-2")
    for run_id in (signalled, approved):
        assert (await engine.wait(run_id, 5)).status is Status.COMPLETED
    await engine.signal(signalled, "go", 1, idempotency_key="req-1")
    await engine.approve(approved, "ok", by="ann", idempotency_key="req-2")
    assert len(await events(engine, signalled, "signal_received")) == 1
    assert len(await events(engine, approved, "approval_received")) == 1
    with pytest.raises(treadle.InvalidTransition):  # another key: a new delivery, refused
        await engine.signal(signalled, "go", 2, idempotency_key="req-3")
    with pytest.raises(treadle.InvalidTransition):  # no key: refused as before
        await engine.signal(signalled, "go", 2)


async def test_concurrent_deliveries_with_one_key_from_two_engines_store_one(
    make_engine: Any,
) -> None:
    first, second = await make_engine(SIGNALS), await make_engine(SIGNALS)
    run_id = await first.start("twice")
    await waiting_for(first, run_id, "signal:item")
    await asyncio.gather(
        *(e.signal(run_id, "item", 1, idempotency_key="once") for e in (first, second) * 3)
    )
    await first.settle()
    await second.settle()
    assert len(await events(first, run_id, "signal_received")) == 1
    assert (await first.status(run_id)).data["got"] == [1]


@pytest.mark.parametrize("key", ["", "-x", "a b", "x" * 201])
async def test_an_idempotency_key_that_is_not_an_id_is_refused(
    engine: treadle.Engine, key: str
) -> None:
    engine.register(SIGNALS)
    run_id = await engine.start("twice")
    with pytest.raises(treadle.InvalidId):
        await engine.signal(run_id, "item", 1, idempotency_key=key)
    with pytest.raises(treadle.InvalidId):
        await engine.approve(run_id, "ok", by="alice", idempotency_key=key)


async def test_approving_twice_does_not_approve_the_next_round_of_a_looped_approval(
    engine: treadle.Engine,
) -> None:
    engine.register(APPROVALS)
    run_id = await engine.start("review")
    await waiting_for(engine, run_id, "approval:ok")
    await engine.pause(run_id)  # hold the first decision unconsumed in the inbox
    await engine.approve(run_id, "ok", by="alice")
    await engine.approve(run_id, "ok", by="alice")  # a double click: acknowledged, dropped
    await engine.resume(run_id)
    await engine.settle()
    state = await engine.status(run_id)
    assert state.status is Status.WAITING and "approval:ok" in state.waiting_for
    assert len(await events(engine, run_id, "approval_received")) == 1
    await engine.approve(run_id, "ok", by="bob", idempotency_key="k-1")
    await engine.approve(run_id, "ok", by="bob", idempotency_key="k-1")
    assert (await engine.wait(run_id, 5)).status is Status.COMPLETED


async def test_a_start_naming_a_run_of_another_workflow_or_data_raises_run_exists(
    engine: treadle.Engine,
) -> None:
    engine.register(SIGNALS)
    engine.register(APPROVALS)
    run_id = await engine.start("twice", {"b": 1, "a": [1, 2]}, run_id="order-7")
    # The same workflow and data (keys in another order) is an idempotent start.
    assert await engine.start("twice", {"a": [1, 2], "b": 1}, run_id="order-7") == run_id
    with pytest.raises(treadle.RunExists) as other_data:
        await engine.start("twice", {"a": [1, 2]}, run_id="order-7")
    assert "'order-7'" in str(other_data.value) and "other data" in str(other_data.value)
    with pytest.raises(treadle.RunExists) as other_workflow:
        await engine.start("review", {"b": 1, "a": [1, 2]}, run_id="order-7")
    message = str(other_workflow.value)
    assert "'order-7'" in message and "'twice'" in message and "'review'" in message
    assert isinstance(other_workflow.value, treadle.TreadleError)
    assert len(await engine.runs()) == 1


async def test_the_idempotency_key_header_is_passed_on_and_documented(
    engine: treadle.Engine,
) -> None:
    engine.register(SIGNALS)
    engine.register(APPROVALS)
    run_id = await engine.start("twice")
    review = await engine.start("review")
    await waiting_for(engine, run_id, "signal:item")
    await waiting_for(engine, review, "approval:ok")
    async with _client(engine, TOKENS) as client:
        for _ in range(2):
            sent = await client.post(
                f"/api/runs/{run_id}/signal/item",
                json={"data": 1},
                headers={**as_("alice"), "Idempotency-Key": "req-9"},
            )
            assert sent.status_code == 200, sent.text
            decided = await client.post(
                f"/api/runs/{review}/approve/ok",
                json={},
                headers={**as_("bob"), "Idempotency-Key": "dec-1"},
            )
            assert decided.status_code == 200, decided.text
        bad: httpx.Response = await client.post(
            f"/api/runs/{run_id}/signal/item",
            json={"data": 1},
            headers={**as_("alice"), "Idempotency-Key": "not an id"},
        )
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "InvalidId"
        exists = await client.post(
            "/api/runs",
            json={"workflow": "review", "run_id": run_id},
            headers=as_("alice"),
        )
        assert exists.status_code == 409 and exists.json()["error"]["type"] == "RunExists"
        document = (await client.get("/api/openapi.json")).json()
    await engine.settle()
    assert len(await events(engine, run_id, "signal_received")) == 1
    assert len(await events(engine, review, "approval_received")) == 1
    for op in ("signal", "approve", "reject"):
        operation = document["paths"][f"/api/runs/{{run_id}}/{op}/{{name}}"]["post"]
        headers = [p["name"] for p in operation["parameters"] if p["in"] == "header"]
        assert headers == ["Idempotency-Key"]
