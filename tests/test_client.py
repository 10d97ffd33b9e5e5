"""The client (API.md "Clients"): a process without step code starts and controls runs by
workflow name on the definitions that workers stored, and executes none of them.

Workers and clients here are separate persistence objects on one storage (separate connections
to one SQLite file or PostgreSQL database), and in the SIGKILL test separate processes. Nothing
sleeps to wait: runs are awaited with ``wait``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from enginekit import EngineFactory, completed_steps, waiting_for
from recoverykit import Harness

import treadle
from treadle import Client, Context, EngineNotOpen, State, Status, SyncClient


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Clients are for databases that several processes share: SQLite files and PostgreSQL."""
    name: str = request.param
    return name


def reserve(ctx: Context, state: State) -> dict[str, Any]:
    return {"reserved": state.data["items"]}


def charge(ctx: Context, state: State) -> dict[str, Any]:
    return {"charged": state.data["payment"]["amount"]}


def order() -> treadle.Workflow:
    return (
        treadle.new("order", version="v1")
        .step("reserve", reserve)
        .await_signal("payment")
        .await_approval("review", approvers=["ops"])
        .step("charge", charge)
        .build()
    )


async def open_client(make_persistence: Callable[[], treadle.Persistence]) -> Client:
    client = Client(make_persistence(), poll_interval=0.2)
    await client.open()
    return client


async def test_a_run_started_by_name_is_executed_by_the_worker_that_has_the_code(
    make_engine: EngineFactory, make_persistence: Callable[[], treadle.Persistence]
) -> None:
    await make_engine(order())  # the worker: opening stores the definition
    client = await open_client(make_persistence)
    try:
        run_id = await client.start("order", {"items": [1, 2]})
        await waiting_for(client, run_id, "signal:payment")
        await client.signal(run_id, "payment", {"amount": 30})
        await waiting_for(client, run_id, "approval:review")
        await client.approve(run_id, "review", by="ops", comment="fine")
        final = await client.wait(run_id, timeout=10)
        assert final.status is Status.COMPLETED
        assert final.data["charge"] == {"charged": 30}
        assert final.version == "v1"
        assert completed_steps(await client.history(run_id)) == ["reserve", "charge"]
        kinds = [e.kind for e in await client.history(run_id)]
        assert "signal_consumed" in kinds and "approval_received" in kinds
        assert [s.id for s in await client.runs(workflow="order")] == [run_id]
        assert (await client.definition(run_id))["name"] == "order"
    finally:
        await client.close()


async def test_a_client_registers_and_executes_nothing(
    make_engine: EngineFactory, make_persistence: Callable[[], treadle.Persistence]
) -> None:
    worker = await make_engine(order())
    await worker.close()  # the definition is stored; no worker is up now
    client = await open_client(make_persistence)
    try:
        assert not hasattr(client, "register") and not hasattr(client, "settle")
        run_id = await client.start("order", {"items": [1]})
        state = await client.status(run_id)
        assert state.status is Status.PENDING
        assert [e.kind for e in await client.history(run_id)] == ["created"]
        await make_engine(order())  # a worker comes up and goes on with it
        await waiting_for(client, run_id, "signal:payment")
    finally:
        await client.close()


async def test_names_and_versions_no_worker_stored_are_clear_errors(
    make_engine: EngineFactory, make_persistence: Callable[[], treadle.Persistence]
) -> None:
    client = await open_client(make_persistence)
    try:
        with pytest.raises(treadle.WorkflowNotFound, match="not registered, here or by any worker"):
            await client.start("order", {})
        await make_engine(order())
        with pytest.raises(treadle.WorkflowNotFound, match=r"no definition 'v9' \(known: v1\)"):
            await client.start("order", {}, version="v9")
        run_id = await client.start("order", {"items": []}, version="v1")
        with pytest.raises(treadle.UnknownSignal):
            await client.signal(run_id, "paymnet", {})
        with pytest.raises(treadle.NotAnApprover):
            await client.approve(run_id, "review", by="intern")
        with pytest.raises(treadle.RunNotFound):
            await client.status("no-such-run")
        with pytest.raises(treadle.InvalidId):
            await client.status("not an id!")
        with pytest.raises(treadle.RunExists):
            await client.start("order", {"items": [9]}, run_id=run_id)
    finally:
        await client.close()


async def test_pause_resume_and_cancel_from_a_client_reach_the_worker(
    make_engine: EngineFactory, make_persistence: Callable[[], treadle.Persistence]
) -> None:
    await make_engine(order())
    client = await open_client(make_persistence)
    try:
        run_id = await client.start("order", {"items": [1]})
        await waiting_for(client, run_id, "signal:payment")
        await client.pause(run_id)
        await client.signal(run_id, "payment", {"amount": 5})
        assert (await client.status(run_id)).status is Status.PAUSED
        await client.resume(run_id)
        await waiting_for(client, run_id, "approval:review")
        await client.cancel(run_id)
        assert (await client.wait(run_id, timeout=10)).status is Status.CANCELLED
    finally:
        await client.close()


async def test_a_client_on_memory_url_is_refused_with_what_to_do_instead() -> None:
    with pytest.raises(ValueError, match="would see no worker's runs"):
        Client("memory://")
    with pytest.raises(EngineNotOpen, match="this Client is not open: use 'async with client:'"):
        await Client(treadle.MemoryPersistence()).status("r-1")


def test_a_sync_client_serves_many_threads_while_a_sync_engine_executes(
    make_persistence: Callable[[], treadle.Persistence],
) -> None:
    worker = treadle.SyncEngine(make_persistence(), poll_interval=0.2)
    worker.register(order())
    client = SyncClient(make_persistence(), poll_interval=0.2)
    with pytest.raises(EngineNotOpen, match="this SyncClient is not open"):
        client.start("order", {})
    barrier = threading.Barrier(8)

    def one(n: int) -> State:
        barrier.wait()
        run_id = client.start("order", {"items": [n]}, run_id=f"o-{n}")
        client.signal(run_id, "payment", {"amount": n})
        client.approve(run_id, "review", by="ops")
        return client.wait(run_id, timeout=30)

    with worker, client:
        with ThreadPoolExecutor(8) as pool:
            finals = list(pool.map(one, range(8)))
        assert [f.data["charge"] for f in finals] == [{"charged": n} for n in range(8)]
        assert all(f.status is Status.COMPLETED for f in finals)
    with pytest.raises(EngineNotOpen):
        client.status("o-1")


async def test_a_clients_wait_outlives_a_worker_killed_mid_step(harness: Harness) -> None:
    harness.spawn(block=("s2",))
    await harness.ready()  # the worker stored its definitions: the client can start by name
    run_id = await harness.client.start("chain", run_id="c-9")
    await harness.until(lambda: harness.count(run_id, "s2") == 1, "s2 in flight")
    harness.kill()
    harness.spawn()
    final = await harness.client.wait(run_id, timeout=15)
    assert final.status is Status.COMPLETED
    assert harness.counts(run_id) == {("s1", "do"): 1, ("s2", "do"): 2, ("s3", "do"): 1}


def test_the_clients_methods_are_the_engines() -> None:
    shared = {
        name
        for name in dir(treadle.RunControl)
        if not name.startswith("_") and callable(getattr(treadle.RunControl, name))
    }
    assert {"start", "signal", "approve", "reject", "wait", "history", "runs"} <= shared
    for name in shared:
        assert getattr(Client, name) is getattr(treadle.Engine, name), name
        assert hasattr(SyncClient, name), name
