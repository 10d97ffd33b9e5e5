"""Large values of a run's data are stored beside the run (``run_values``), written only when
they change, read back whole wherever the data is read, and deleted with the run."""

from __future__ import annotations

from typing import Any

import pytest
from sample_codec import Base64Codec

import treadle
from treadle import Context, State, Status
from treadle._interpreter.texts import CHUNK
from treadle.persistence._sql import Tx

N = 2 * CHUNK + 500  # three chunks


def rows(engine: treadle.Engine, run_id: str) -> Any:
    """The rows stored beside ``run_id``, and its ``runs.data`` as stored (no codec, no
    assembly: the raw transaction)."""
    persistence: Any = engine.persistence

    def read(tx: Tx) -> tuple[list[tuple[str, int, str]], str]:
        stored = [(r["key"], r["part"], r["content"]) for r in tx.all("run_values", run_id=run_id)]
        row = tx.one("lock_run", id=run_id)
        return stored, "" if row is None else row["data"]

    return persistence._run(read)


def change_one(ctx: Context, state: State) -> None:
    state.data["items"][7] = "seven"
    state.data["count"] = state.data.get("count", 0) + 1


def grow(ctx: Context, state: State) -> None:
    state.data["items"].append("last")


def small(ctx: Context, state: State) -> None:
    state.data["note"] = "touched nothing large"


WORKFLOW = (
    treadle.new("big")
    .step("change", change_one)
    .await_signal("go")
    .step("small", small)
    .step("grow", grow)
    .build()
)


def expected(start: list[str]) -> list[str]:
    items = list(start)
    items[7] = "seven"
    return [*items, "last"]


async def test_a_long_list_is_stored_in_chunks_written_only_when_they_change(
    engine: treadle.Engine,
) -> None:
    engine.register(WORKFLOW)
    items = [f"element-{i}" for i in range(N)]
    run_id = await engine.start("big", {"items": items, "who": "me"})
    await engine.settle()
    stored, data = await rows(engine, run_id)
    assert data.startswith("~aside:"), data[:40]
    assert [(k, p) for k, p, _ in stored] == [("items", 1), ("items", 2), ("items", 3)]
    state = await engine.status(run_id)
    assert state.status is Status.WAITING
    assert state.data["items"][7] == "seven" and state.data["items"][:7] == items[:7]
    assert state.data == {"items": state.data["items"], "who": "me", "count": 1}
    assert list(state.data) == ["items", "who", "count"], "the order of the keys is kept"

    await engine.signal(run_id, "go", {"ok": True})
    final = await engine.wait(run_id, timeout=10)
    assert final.status is Status.COMPLETED, final.error
    assert final.data["items"] == expected(items)
    assert final.data["note"] == "touched nothing large" and final.data["go"] == {"ok": True}
    stored, _ = await rows(engine, run_id)
    assert [p for _, p, _ in stored] == [1, 2, 3]

    assert await engine.delete(run_id) == [run_id]
    assert (await rows(engine, run_id))[0] == [], "deleted with the run"


async def test_a_fork_and_a_parent_get_the_whole_data(engine: treadle.Engine) -> None:
    child = treadle.new("kid").step("change", change_one).build()
    parent = treadle.new("mom").sub_workflow("kid-run", "kid", lambda s: s.data).build()
    engine.register(child)
    engine.register(parent)
    items = [f"e{i}" for i in range(N)]
    run_id = await engine.start("mom", {"items": items})
    final = await engine.wait(run_id, timeout=10)
    assert final.status is Status.COMPLETED, final.error
    got = final.data["kid-run"]
    assert got["items"][7] == "seven" and len(got["items"]) == N and got["count"] == 1
    kids = [r for r in await engine.runs(workflow="kid")]
    assert kids and (await rows(engine, kids[0].id))[1].startswith("~aside:")

    forked = await engine.fork(kids[0].id)
    again = await engine.wait(forked, timeout=10)
    assert again.status is Status.COMPLETED, again.error
    assert again.data["items"] == got["items"] and again.data["count"] == 2


async def test_retention_deletes_the_values_stored_beside_a_run(
    engine: treadle.Engine, clock: treadle.FakeClock
) -> None:
    engine.register(treadle.new("kid").step("change", change_one).build())
    run_id = await engine.start("kid", {"items": list(range(N))})
    await engine.wait(run_id, timeout=10)
    assert (await rows(engine, run_id))[0]
    clock.advance("2d")
    report = await engine.prune("1d")
    assert report.count == 1
    assert (await rows(engine, run_id))[0] == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_values_stored_beside_a_run_go_through_the_codec(
    persistence: treadle.Persistence,
) -> None:
    engine = treadle.Engine(persistence, codec=Base64Codec())
    engine.register(treadle.new("kid").step("change", change_one).build())
    async with engine:
        run_id = await engine.start("kid", {"items": [f"secret-{i}" for i in range(N)]})
        final = await engine.wait(run_id, timeout=10)
        assert final.data["items"][8] == "secret-8"
        stored, data = await rows(engine, run_id)
        assert data.startswith("~codec:")
        assert stored and all(c.startswith("~codec:") and "secret" not in c for _, _, c in stored)


async def test_the_http_api_shows_the_whole_data() -> None:
    import httpx

    from treadle.web import create_app

    engine = treadle.Engine(treadle.MemoryPersistence())
    engine.register(treadle.new("kid").step("change", change_one).build())
    async with engine:
        run_id = await engine.start("kid", {"items": [f"e{i}" for i in range(N)]})
        await engine.wait(run_id, timeout=10)
        assert (await rows(engine, run_id))[0], "stored beside the run"
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            got = (await http.get(f"/api/runs/{run_id}")).json()
            assert got["data"]["items"][7] == "seven" and len(got["data"]["items"]) == N
            listed = (await http.get("/api/runs")).json()["runs"]
            assert [len(r["data"]["items"]) for r in listed] == [N]
