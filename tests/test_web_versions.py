"""The HTTP API and the dashboard for runs that outlive their code: retry, skip and abort a held
run as the token's identity, migrate a run (or plan it), fork one; runs show their definition."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from test_web_api import TOKENS, _client, as_, assert_error

import treadle


def _charge(ctx: treadle.Context, state: treadle.State) -> None:
    state.data["charged"] = True


def _refund(ctx: treadle.Context, state: treadle.State) -> None:
    state.data["refunded"] = True


def _ship(ctx: treadle.Context, state: treadle.State) -> None:
    if not state.data.get("stock"):
        raise treadle.NonRetryableError("out of stock")
    state.data["shipped"] = True


FRAGILE = (
    treadle.new("fragile", on_failure="hold")
    .step("charge", _charge, compensate=_refund)
    .step("ship", _ship)
    .build()
)
ORDER_V1 = treadle.new("order", version="1").step("charge", _charge).await_signal("go").build()
ORDER_V2 = treadle.new("order", version="2").step("charge", _charge).await_signal("ready").build()


@pytest.fixture
async def engine() -> AsyncIterator[treadle.Engine]:
    engine = treadle.Engine(treadle.MemoryPersistence(), poll_interval=0.2)
    engine.register(FRAGILE, ORDER_V1, ORDER_V2)
    async with engine:
        yield engine


@pytest.fixture
async def client(engine: treadle.Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(engine, TOKENS) as c:
        yield c


async def held(engine: treadle.Engine, data: dict[str, Any] | None = None) -> str:
    run_id = await engine.start("fragile", data)
    await engine.settle()
    assert (await engine.status(run_id)).status is treadle.Status.HELD
    return run_id


async def on_v1(engine: treadle.Engine) -> str:
    """A run of order version 1 waiting for its signal ``go``."""
    run_id = await engine.start("order", version="1")
    await engine.settle()
    assert (await engine.status(run_id)).waiting_for == ["signal:go"]
    return run_id


BODIES: dict[str, dict[str, Any]] = {
    "retry": {},
    "skip": {"data": {}},
    "abort": {"reason": "x"},
    "migrate": {"to": "2"},
    "fork": {"from_step": "ship"},
}
"""A well-formed body for each action."""


async def details(engine: treadle.Engine, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e.detail for e in await engine.history(run_id) if e.kind == kind]


async def post(client: httpx.AsyncClient, path: str, who: str = "alice", **kw: Any) -> Any:
    return await client.post(path, headers=as_(who), **kw)


# Held runs ------------------------------------------------------------------------------------


async def test_a_held_run_shows_its_definition_and_why(
    client: httpx.AsyncClient, engine: treadle.Engine
) -> None:
    run_id = await held(engine)
    run = (await client.get(f"/api/runs/{run_id}", headers=as_("viewer"))).json()
    assert run["status"] == "held" and run["waiting_for"] == ["held:ship"]
    metrics = (await client.get("/metrics", headers=as_("viewer"))).text
    assert 'treadle_runs{status="held"} 1.0' in metrics
    assert run["definition_id"] == FRAGILE.id and run["version"] is None
    assert run["forked_from"] is None and "out of stock" in run["error"]


async def test_retry_runs_the_step_again_as_the_tokens_identity(
    client: httpx.AsyncClient, engine: treadle.Engine
) -> None:
    run_id = await held(engine)
    response = await post(client, f"/api/runs/{run_id}/retry", "bob")
    assert response.status_code == 200, response.text
    assert response.json()["id"] == run_id
    await engine.settle()
    assert (await engine.status(run_id)).status is treadle.Status.HELD  # still out of stock
    assert await details(engine, run_id, "run_retried") == [{"by": "bob"}]
    assert len(await details(engine, run_id, "step_failed")) == 2


async def test_retry_of_a_run_that_is_not_held_is_409_and_of_none_404(
    client: httpx.AsyncClient, engine: treadle.Engine
) -> None:
    waiting = await on_v1(engine)
    body = assert_error(await post(client, f"/api/runs/{waiting}/retry"), 409, "InvalidTransition")
    assert "not held" in body["error"]["message"]
    for action, body in BODIES.items():
        response = await post(client, f"/api/runs/nope/{action}", json=body)
        assert_error(response, 404, "RunNotFound")
    run_id = await held(engine)
    for action, body in BODIES.items():
        response = await post(client, f"/api/runs/{run_id}/{action}", "viewer", json=body)
        assert_error(response, 403, "Forbidden")
    assert (await engine.status(run_id)).status is treadle.Status.HELD


async def test_skip_merges_data_and_goes_on_as_the_tokens_identity(
    client: httpx.AsyncClient, engine: treadle.Engine
) -> None:
    run_id = await held(engine)
    for bad in ({"data": [1]}, {"data": {"a": 1}, "extra": 1}, {"data": "x"}):
        assert_error(await post(client, f"/api/runs/{run_id}/skip", json=bad), 400, "BadRequest")
    response = await post(
        client, f"/api/runs/{run_id}/skip", "carol", json={"data": {"by": "hand"}}
    )
    assert response.status_code == 200, response.text
    done = await engine.wait(run_id, timeout=5)
    assert done.status is treadle.Status.COMPLETED
    assert done.data == {"charged": True, "by": "hand"}
    assert await details(engine, run_id, "step_skipped") == [
        {"by": "carol", "data": {"by": "hand"}}
    ]


async def test_abort_needs_a_reason_then_compensates_and_fails(
    client: httpx.AsyncClient, engine: treadle.Engine
) -> None:
    run_id = await held(engine)
    path = f"/api/runs/{run_id}/abort"
    assert_error(await post(client, path), 400, "BadRequest")  # the body is required
    for bad in ({}, {"reason": 5}, {"reason": ""}, {"why": "x"}):
        body = assert_error(await post(client, path, json=bad), 400, "BadRequest")
        assert "reason" in body["error"]["message"] or "why" in body["error"]["message"]
    response = await post(client, path, "bob", json={"reason": "customer left"})
    assert response.status_code == 200, response.text
    ended = await engine.wait(run_id, timeout=5)
    assert ended.status is treadle.Status.FAILED and "aborted: customer left" in str(ended.error)
    assert ended.data["refunded"] is True
    assert await details(engine, run_id, "run_aborted") == [
        {"by": "bob", "reason": "customer left"}
    ]


# Migration ------------------------------------------------------------------------------------


async def test_migrate_plans_refuses_with_reasons_and_moves_as_the_tokens_identity(
    client: httpx.AsyncClient, engine: treadle.Engine
) -> None:
    run_id = await on_v1(engine)
    path = f"/api/runs/{run_id}/migrate"
    plan = (await post(client, path, json={"to": "2", "dry_run": True})).json()
    assert plan["ok"] is False and plan["moved"] is False
    assert plan["source"] == ORDER_V1.id and plan["target"] == ORDER_V2.id
    assert plan["source_version"] == "1" and plan["target_version"] == "2"
    assert plan["reasons"] and any("go" in reason for reason in plan["reasons"])

    body = assert_error(await post(client, path, json={"to": "2"}), 409, "DefinitionMismatch")
    assert "cannot move to definition 2" in body["error"]["message"]
    assert (await engine.status(run_id)).version == "1"

    response = await post(client, path, "bob", json={"to": "2", "rename": {"go": "ready"}})
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True and response.json()["moved"] is True
    run = (await client.get(f"/api/runs/{run_id}", headers=as_("viewer"))).json()
    assert run["version"] == "2" and run["definition_id"] == ORDER_V2.id
    assert run["waiting_for"] == ["signal:ready"]
    (moved,) = await details(engine, run_id, "run_migrated")
    assert moved["by"] == "bob" and moved["rename"] == {"go": "ready"}


async def test_migrate_bad_bodies_are_400_and_an_unknown_version_404(
    client: httpx.AsyncClient, engine: treadle.Engine
) -> None:
    run_id = await on_v1(engine)
    path = f"/api/runs/{run_id}/migrate"
    for bad in ({"rename": {"go": 1}}, {"dry_run": "yes"}, {"to": 2}, {"target": "2"}):
        assert_error(await post(client, path, json=bad), 400, "BadRequest")
    body = assert_error(await post(client, path, json={"to": "9"}), 404, "WorkflowNotFound")
    assert "has no definition '9'" in body["error"]["message"]


# Forks ----------------------------------------------------------------------------------------


async def test_fork_starts_a_new_run_from_a_step(
    client: httpx.AsyncClient, engine: treadle.Engine
) -> None:
    run_id = await held(engine)
    path = f"/api/runs/{run_id}/fork"
    response = await post(client, path, json={"from_step": "ship", "data": {"stock": 1}})
    assert response.status_code == 201, response.text
    forked = response.json()["run_id"]
    assert response.headers["location"] == f"/api/runs/{forked}"
    done = await engine.wait(forked, timeout=5)
    assert done.status is treadle.Status.COMPLETED and done.forked_from == run_id
    assert done.data == {"stock": 1, "shipped": True}
    run = (await client.get(f"/api/runs/{forked}", headers=as_("viewer"))).json()
    assert run["forked_from"] == run_id
    body = assert_error(
        await post(client, path, json={"from_step": "pack"}), 400, "DefinitionError"
    )
    assert "'pack' is not a step" in body["error"]["message"]
    assert_error(await post(client, path, json={"version": "9"}), 404, "WorkflowNotFound")
    assert_error(await post(client, path, json={"data": [1]}), 400, "BadRequest")


# The document and the dashboard ---------------------------------------------------------------


def test_the_openapi_document_has_the_new_fields_and_bodies() -> None:
    from treadle.web import openapi_document

    doc = openapi_document()
    run = doc["components"]["schemas"]["Run"]
    assert {"definition_id", "version", "forked_from"} <= set(run["properties"])
    assert "held" in doc["components"]["schemas"]["Status"]["enum"]
    paths = doc["paths"]
    abort = paths["/api/runs/{run_id}/abort"]["post"]
    assert abort["requestBody"]["required"] is True
    migrate = paths["/api/runs/{run_id}/migrate"]["post"]
    assert migrate["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MigrationPlan"
    }
    assert "409" in migrate["responses"]
    assert "201" in paths["/api/runs/{run_id}/fork"]["post"]["responses"]
    assert "409" in paths["/api/runs/{run_id}/retry"]["post"]["responses"]


async def test_the_run_page_of_a_held_run_offers_retry_skip_abort_and_fork(
    client: httpx.AsyncClient, engine: treadle.Engine
) -> None:
    run_id = await held(engine)
    html = (await client.get(f"/ui/runs/{run_id}", headers=as_("alice"))).text
    assert 'data-status="held"' in html and "status-held" in html
    assert "Held</b> at step <b>ship</b>" in html and "out of stock" in html
    base = f'data-url="/api/runs/{run_id}'
    for action in ("retry", "skip", "abort", "fork", "cancel"):
        assert f'{base}/{action}"' in html, action
    assert f'{base}/pause"' not in html  # a held run is decided, not paused
    assert 'data-fields="reason=abort-reason"' in html and "decided as alice" in html
    assert '<option value="ship">from ship</option>' in html
    assert f'title="definition {FRAGILE.id}">{FRAGILE.id}</b>' in html

    waiting = await on_v1(engine)
    html = (await client.get(f"/ui/runs/{waiting}", headers=as_("alice"))).text
    assert 'class="version" title="definition ' in html and ">1</b>" in html
    assert f'/api/runs/{waiting}/retry"' not in html and f'/api/runs/{waiting}/fork"' in html
    await engine.cancel(waiting)
    await engine.wait(waiting, timeout=5)
    html = (await client.get(f"/ui/runs/{waiting}", headers=as_("alice"))).text
    assert f'/api/runs/{waiting}/fork"' in html and f'/api/runs/{waiting}/cancel"' not in html
    rows = (await client.get("/ui/runs", headers=as_("viewer"))).text
    assert "<th>Version</th>" in rows and "status-held" in rows
