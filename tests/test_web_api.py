"""The HTTP API: every endpoint, its error shapes and statuses, and who may do what."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from enginekit import until_status, waiting_for

import treadle
from treadle._loader import load_workflows
from treadle.web import Identity, create_app, load_tokens, parse_tokens, parse_tokens_env
from treadle.web._server import LOCALHOST, safe_host

TOKENS = {
    "tok-alice": Identity("alice", True),
    "tok-bob": Identity("bob", True),
    "tok-carol": Identity("carol", True),
    "tok-viewer": Identity("viewer", False),
}


def _prepare(ctx: treadle.Context, state: treadle.State) -> None:
    state.data["prepared"] = True


def _pay(ctx: treadle.Context, state: treadle.State) -> str:
    return "paid"


def _boom(ctx: treadle.Context, state: treadle.State) -> None:
    raise treadle.NonRetryableError("card declined")


EXPENSE = (
    treadle.new("expense")
    .step("prepare", _prepare)
    .await_approval("manager", ["alice", "bob"])
    .step("pay", _pay)
    .build()
)
OPEN_APPROVAL = treadle.new("open").await_approval("anyone", []).build()
PAYMENT = treadle.new("payment").await_signal("paid").step("ship", _pay).build()
BROKEN = treadle.new("broken").step("charge", _boom).build()
WORKFLOWS = (EXPENSE, OPEN_APPROVAL, PAYMENT, BROKEN)


@pytest.fixture
async def web_engine() -> AsyncIterator[treadle.Engine]:
    engine = treadle.Engine(treadle.MemoryPersistence(), poll_interval=0.2)
    for workflow in WORKFLOWS:
        engine.register(workflow)
    async with engine:
        yield engine


def _client(engine: treadle.Engine, tokens: dict[str, Identity] | None) -> httpx.AsyncClient:
    app = create_app(engine, tokens=tokens)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080"
    )


@pytest.fixture
async def client(web_engine: treadle.Engine) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app with tokens configured (pass ``headers=as_("alice")``)."""
    async with _client(web_engine, TOKENS) as c:
        yield c


@pytest.fixture
async def open_client(web_engine: treadle.Engine) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app without tokens (open mode)."""
    async with _client(web_engine, None) as c:
        yield c


def as_(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer tok-{name}"}


def assert_error(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == type_, body
    assert body["error"]["message"]
    return body


async def start(client: httpx.AsyncClient, workflow: str, **extra: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/runs", json={"workflow": workflow, **extra}, headers=as_("alice")
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# The document ------------------------------------------------------------------------------


async def test_openapi_document_describes_exactly_the_routes_served(
    client: httpx.AsyncClient, web_engine: treadle.Engine
) -> None:
    response = await client.get("/api/openapi.json")  # public: no token needed
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    app = create_app(web_engine, tokens=None)
    served = {
        (route.path, method)
        for route in app.routes
        if getattr(route, "path", "").startswith("/api/") and route.path != "/api/openapi.json"
        for method in (getattr(route, "methods", None) or ()) - {"HEAD"}
    }
    assert documented == served
    for ops in doc["paths"].values():
        for op in ops.values():
            assert op["operationId"] and op["responses"]


# Runs --------------------------------------------------------------------------------------


async def test_start_get_and_list_runs(
    client: httpx.AsyncClient, web_engine: treadle.Engine
) -> None:
    run = await start(client, "expense", data={"amount": 12})
    assert run["workflow"] == "expense" and run["data"]["amount"] == 12
    await waiting_for(web_engine, run["id"], "approval:manager")

    got = (await client.get(f"/api/runs/{run['id']}", headers=as_("viewer"))).json()
    assert got["status"] == "waiting"
    assert got["waiting_for"] == ["approval:manager"]
    assert got["data"] == {"amount": 12, "prepared": True}

    await start(client, "payment")
    listed = (await client.get("/api/runs", headers=as_("viewer"))).json()["runs"]
    assert {r["workflow"] for r in listed} == {"expense", "payment"}
    only = await client.get(
        "/api/runs",
        params={"workflow": "expense", "status": "waiting", "limit": 5},
        headers=as_("viewer"),
    )
    assert [r["id"] for r in only.json()["runs"]] == [run["id"]]


async def test_start_with_own_run_id_is_idempotent(client: httpx.AsyncClient) -> None:
    first = await start(client, "payment", run_id="order-42")
    again = await start(client, "payment", run_id="order-42")
    assert first["id"] == again["id"] == "order-42"
    assert again["data"] == {}
    other = await client.post(
        "/api/runs",
        json={"workflow": "payment", "run_id": "order-42", "data": {"x": 1}},
        headers=as_("alice"),
    )
    assert other.status_code == 409 and other.json()["error"]["type"] == "RunExists"


@pytest.mark.parametrize(
    ("params", "what"),
    [({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"), ({"status": "sleeping"}, "status")],
)
async def test_bad_list_parameters_are_400(
    client: httpx.AsyncClient, params: dict[str, str], what: str
) -> None:
    body = assert_error(
        await client.get("/api/runs", params=params, headers=as_("viewer")), 400, "BadRequest"
    )
    assert what in body["error"]["message"]


async def test_unknown_run_and_workflow_are_404(client: httpx.AsyncClient) -> None:
    for path in ("/api/runs/nope", "/api/runs/nope/history", "/api/runs/nope/definition"):
        assert_error(await client.get(path, headers=as_("viewer")), 404, "RunNotFound")
    for action in ("pause", "resume", "cancel", "signal/paid", "approve/manager"):
        response = await client.post(f"/api/runs/nope/{action}", headers=as_("alice"))
        assert_error(response, 404, "RunNotFound")
    response = await client.post("/api/runs", json={"workflow": "nope"}, headers=as_("alice"))
    assert_error(response, 404, "WorkflowNotFound")
    assert_error(
        await client.get("/api/workflows/nope", headers=as_("viewer")), 404, "WorkflowNotFound"
    )


async def test_history_and_definition(
    client: httpx.AsyncClient, web_engine: treadle.Engine
) -> None:
    run = await start(client, "expense")
    await waiting_for(web_engine, run["id"], "approval:manager")
    events = (await client.get(f"/api/runs/{run['id']}/history", headers=as_("viewer"))).json()
    kinds = [e["kind"] for e in events["events"]]
    assert kinds[0] == "created"
    assert "step_completed" in kinds and kinds[-1] == "waiting"
    assert all(e["at"].endswith("+00:00") for e in events["events"])
    shape = (await client.get(f"/api/runs/{run['id']}/definition", headers=as_("viewer"))).json()
    assert shape == EXPENSE.describe()


async def test_workflows_list_their_definitions(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/workflows", headers=as_("viewer"))).json()
    assert [w["name"] for w in body["workflows"]] == ["broken", "expense", "open", "payment"]
    one = (await client.get("/api/workflows/expense", headers=as_("viewer"))).json()
    assert one["id"] == EXPENSE.id and one["definition"]["steps"][1]["kind"] == "approval"


# Signals, approvals and control --------------------------------------------------------------


async def test_signal_delivers_data_and_unknown_signal_is_422(
    client: httpx.AsyncClient, web_engine: treadle.Engine
) -> None:
    run = await start(client, "payment")
    response = await client.post(
        f"/api/runs/{run['id']}/signal/nope", json={"data": 1}, headers=as_("alice")
    )
    assert_error(response, 422, "UnknownSignal")
    response = await client.post(
        f"/api/runs/{run['id']}/signal/paid", json={"data": {"amount": 5}}, headers=as_("bob")
    )
    assert response.status_code == 200 and response.json()["id"] == run["id"]
    final = await web_engine.wait(run["id"], timeout=5)
    assert final.status is treadle.Status.COMPLETED
    assert final.data["paid"] == {"amount": 5}
    again = await client.post(f"/api/runs/{run['id']}/signal/paid", headers=as_("bob"))
    assert_error(again, 409, "InvalidTransition")


async def test_approver_is_the_tokens_identity(
    client: httpx.AsyncClient, web_engine: treadle.Engine
) -> None:
    run = await start(client, "expense")
    await waiting_for(web_engine, run["id"], "approval:manager")
    url = f"/api/runs/{run['id']}/approve/manager"
    # carol may write, but is no approver: naming alice in the body does not help her
    forged = await client.post(url, json={"by": "alice"}, headers=as_("carol"))
    assert_error(forged, 400, "BadRequest")
    assert_error(await client.post(url, json={}, headers=as_("carol")), 403, "NotAnApprover")
    assert (await web_engine.status(run["id"])).status is treadle.Status.WAITING

    response = await client.post(url, json={"comment": "fine"}, headers=as_("bob"))
    assert response.status_code == 200, response.text
    final = await web_engine.wait(run["id"], timeout=5)
    assert final.status is treadle.Status.COMPLETED
    assert final.data["manager"] == {"approved": True, "by": ["bob"], "comment": "fine"}
    history = await web_engine.history(run["id"])
    received = [e for e in history if e.kind == "approval_received"]
    assert [e.detail["by"] for e in received] == ["bob"]


async def test_reject_fails_the_run_as_the_tokens_identity(
    client: httpx.AsyncClient, web_engine: treadle.Engine
) -> None:
    run = await start(client, "expense")
    await waiting_for(web_engine, run["id"], "approval:manager")
    response = await client.post(
        f"/api/runs/{run['id']}/reject/manager",
        json={"reason": "too much"},
        headers=as_("alice"),
    )
    assert response.status_code == 200
    final = await web_engine.wait(run["id"], timeout=5)
    assert final.status is treadle.Status.FAILED
    assert final.data["manager"] == {"approved": False, "by": ["alice"], "reason": "too much"}
    response = await client.post(f"/api/runs/{run['id']}/reject/nope", headers=as_("alice"))
    assert_error(response, 409, "InvalidTransition")


async def test_unknown_approval_is_422(
    client: httpx.AsyncClient, web_engine: treadle.Engine
) -> None:
    run = await start(client, "expense")
    response = await client.post(f"/api/runs/{run['id']}/approve/cfo", headers=as_("alice"))
    assert_error(response, 422, "UnknownApproval")


async def test_pause_resume_cancel(client: httpx.AsyncClient, web_engine: treadle.Engine) -> None:
    run = await start(client, "payment")
    base = f"/api/runs/{run['id']}"
    await waiting_for(web_engine, run["id"], "signal:paid")
    assert (await client.post(f"{base}/pause", headers=as_("alice"))).status_code == 200
    await until_status(web_engine, run["id"], treadle.Status.PAUSED)
    assert (await client.post(f"{base}/resume", headers=as_("alice"))).status_code == 200
    await until_status(web_engine, run["id"], treadle.Status.WAITING)
    assert_error(
        await client.post(f"{base}/resume", headers=as_("alice")), 409, "InvalidTransition"
    )
    assert (await client.post(f"{base}/cancel", headers=as_("alice"))).status_code == 200
    final = await web_engine.wait(run["id"], timeout=5)
    assert final.status is treadle.Status.CANCELLED
    for action in ("cancel", "pause", "resume"):
        response = await client.post(f"{base}/{action}", headers=as_("alice"))
        assert_error(response, 409, "InvalidTransition")


async def test_failed_run_shows_its_error(
    client: httpx.AsyncClient, web_engine: treadle.Engine
) -> None:
    run = await start(client, "broken")
    await web_engine.wait(run["id"], timeout=5)
    got = (await client.get(f"/api/runs/{run['id']}", headers=as_("viewer"))).json()
    assert got["status"] == "failed" and "card declined" in got["error"]


# Tokens ------------------------------------------------------------------------------------

MUTATIONS = [
    ("POST", "/api/runs", {"workflow": "payment"}),
    ("POST", "/api/runs/r/signal/paid", {}),
    ("POST", "/api/runs/r/approve/manager", {}),
    ("POST", "/api/runs/r/reject/manager", {}),
    ("POST", "/api/runs/r/pause", None),
    ("POST", "/api/runs/r/resume", None),
    ("POST", "/api/runs/r/cancel", None),
    ("POST", "/api/schedules", {"id": "s", "workflow": "payment", "expression": "@daily"}),
    ("DELETE", "/api/schedules/s", None),
    ("POST", "/api/schedules/s/enable", None),
    ("POST", "/api/schedules/s/disable", None),
]
READS = [
    "/api/whoami",
    "/api/runs",
    "/api/runs/r",
    "/api/runs/r/history",
    "/api/runs/r/definition",
    "/api/workflows",
    "/api/schedules",
    "/api/schedules/s",
    "/metrics",
    "/ui/runs",
    "/ui/runs/r",
    "/ui/schedules",
]


async def test_read_only_token_may_read_but_not_change(client: httpx.AsyncClient) -> None:
    for method, path, body in MUTATIONS:
        response = await client.request(method, path, json=body, headers=as_("viewer"))
        assert_error(response, 403, "Forbidden")
    for path in READS:
        response = await client.get(path, headers=as_("viewer"))
        assert response.status_code in (200, 404), (path, response.text)
    assert (await client.get("/api/runs")).status_code == 401
    assert await client.get("/api/schedules", headers=as_("viewer")) is not None


async def test_without_a_valid_token_everything_is_401(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic tok-alice"}):
        for method, path, body in MUTATIONS:
            response = await client.request(method, path, json=body, headers=headers)
            assert_error(response, 401, "Unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")
        for path in READS:
            assert_error(await client.get(path, headers=headers), 401, "Unauthorized")
    me = await client.get("/api/whoami", headers=as_("viewer"))
    assert me.json() == {"name": "viewer", "can_write": False, "auth_required": True}


async def test_open_mode_allows_everything_but_named_approvals(
    open_client: httpx.AsyncClient, web_engine: treadle.Engine
) -> None:
    me = (await open_client.get("/api/whoami")).json()
    assert me == {"name": None, "can_write": True, "auth_required": False}
    response = await open_client.post("/api/runs", json={"workflow": "expense"})
    run = response.json()
    await waiting_for(web_engine, run["id"], "approval:manager")
    # nobody is named without a token: an approval with approvers cannot be decided
    response = await open_client.post(f"/api/runs/{run['id']}/approve/manager")
    assert_error(response, 403, "NotAnApprover")
    other = (await open_client.post("/api/runs", json={"workflow": "open"})).json()
    await waiting_for(web_engine, other["id"], "approval:anyone")
    assert (await open_client.post(f"/api/runs/{other['id']}/approve/anyone")).status_code == 200
    assert (await web_engine.wait(other["id"], timeout=5)).status is treadle.Status.COMPLETED


async def test_open_mode_refuses_rebinding_and_cross_site_requests(
    open_client: httpx.AsyncClient,
) -> None:
    # a page on another site that resolves its own name to 127.0.0.1 (DNS rebinding)
    response = await open_client.get("/api/runs", headers={"Host": "evil.example:8080"})
    assert_error(response, 403, "Forbidden")
    # a page on another site posting to localhost (cross-site request forgery)
    evil = {"Origin": "http://evil.example"}
    response = await open_client.post("/api/runs", json={"workflow": "payment"}, headers=evil)
    assert_error(response, 403, "Forbidden")
    same = {"Origin": "http://127.0.0.1:8080"}
    response = await open_client.post("/api/runs", json={"workflow": "payment"}, headers=same)
    assert response.status_code == 201
    for host in ("localhost:8080", "[::1]:8080", "127.0.0.2"):
        assert (await open_client.get("/api/runs", headers={"Host": host})).status_code == 200


def test_tokens_from_env_json_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_tokens_env("a1=alice:rw, v1=viewer:ro") == {
        "a1": Identity("alice", True),
        "v1": Identity("viewer", False),
    }
    as_json = tmp_path / "tokens.json"
    as_json.write_text(json.dumps({"tokens": {"a1": "alice:rw", "v1": {"name": "v"}}}))
    assert load_tokens(str(as_json)) == {"a1": Identity("alice", True), "v1": Identity("v", False)}
    as_toml = tmp_path / "tokens.toml"
    as_toml.write_text('[tokens]\na1 = "alice:rw"\n[tokens.b2]\nname = "bob"\ncan_write = true\n')
    assert load_tokens(str(as_toml)) == {"a1": Identity("alice", True), "b2": Identity("bob", True)}
    monkeypatch.setenv("TREADLE_TOKENS", "x=xavier:ro")
    assert load_tokens(None) == {"x": Identity("xavier", False)}
    monkeypatch.delenv("TREADLE_TOKENS")
    assert load_tokens(None) is None
    for bad in ({"a": "alice:admin"}, {"a": 5}, {"": "a:rw"}, {"a": {"name": "", "write": 1}}):
        with pytest.raises(ValueError):
            parse_tokens(bad)
    with pytest.raises(ValueError):
        parse_tokens_env("no-equals-sign")


def test_without_tokens_the_server_binds_localhost_only(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="treadle.web"):
        assert safe_host("0.0.0.0", None) == LOCALHOST
    assert "no API tokens configured" in caplog.text and "0.0.0.0" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="treadle.web"):
        assert safe_host("127.0.0.1", {}) == "127.0.0.1"
    assert "every request is allowed" in caplog.text
    assert safe_host("0.0.0.0", TOKENS) == "0.0.0.0"


def test_workflows_load_from_a_module_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "webflows_mod.py").write_text(
        "import treadle\n"
        "a = treadle.new('a').sleep('s', 1).build()\n"
        "b = treadle.new('b').sleep('s', 1).build()\n"
        "engine = treadle.Engine()\nengine.register(a)\n"
        "both = [a, b]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert [w.name for w in load_workflows("webflows_mod")] == ["a", "b"]
        assert [w.name for w in load_workflows("webflows_mod:a")] == ["a"]
        assert [w.name for w in load_workflows("webflows_mod:engine")] == ["a"]
        assert [w.name for w in load_workflows("webflows_mod:both")] == ["a", "b"]
        with pytest.raises(ValueError):
            load_workflows("webflows_mod:treadle")
    finally:
        sys.modules.pop("webflows_mod", None)


# Schedules ---------------------------------------------------------------------------------


async def test_schedules_add_list_disable_enable_delete(client: httpx.AsyncClient) -> None:
    new = {
        "id": "nightly",
        "workflow": "payment",
        "expression": "0 2 * * *",
        "input": {"format": "pdf"},
        "timezone": "Europe/Berlin",
    }
    response = await client.post("/api/schedules", json=new, headers=as_("alice"))
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["enabled"] and created["input"] == {"format": "pdf"}
    assert len(created["next_fires"]) == 5 and created["next_fires"][0] == created["next_run"]
    assert response.headers["location"] == "/api/schedules/nightly"
    assert_error(
        await client.post("/api/schedules", json=new, headers=as_("alice")), 409, "ScheduleExists"
    )

    listed = (await client.get("/api/schedules", headers=as_("viewer"))).json()["schedules"]
    assert [s["id"] for s in listed] == ["nightly"] and len(listed[0]["next_fires"]) == 3

    off = await client.post("/api/schedules/nightly/disable", headers=as_("alice"))
    assert off.json()["enabled"] is False and off.json()["next_fires"] == []
    on = await client.post("/api/schedules/nightly/enable", headers=as_("alice"))
    assert on.json()["enabled"] is True and on.json()["next_run"]

    assert (await client.delete("/api/schedules/nightly", headers=as_("alice"))).status_code == 204
    for method, path in (
        ("GET", "/api/schedules/nightly"),
        ("DELETE", "/api/schedules/nightly"),
        ("POST", "/api/schedules/nightly/enable"),
    ):
        response = await client.request(method, path, headers=as_("alice"))
        assert response.status_code == 404 and response.json()["error"]["type"] in (
            "ScheduleNotFound"
        )


@pytest.mark.parametrize(
    ("fields", "status", "type_"),
    [
        ({"expression": "61 * * * *"}, 400, "CronError"),
        ({"timezone": "Mars/Olympus"}, 400, "CronError"),
        ({"workflow": "nope"}, 404, "WorkflowNotFound"),
        ({"id": "has space"}, 400, "BadRequest"),
        ({"catch_up": "sometimes"}, 400, "BadRequest"),
        ({"input": [1]}, 400, "BadRequest"),
        ({"input": {"scheduled_at": 1}}, 400, "BadRequest"),
        ({"jitter": True}, 400, "BadRequest"),
        ({"cron": "@daily"}, 400, "BadRequest"),
    ],
)
async def test_bad_schedules_are_rejected(
    client: httpx.AsyncClient, fields: dict[str, Any], status: int, type_: str
) -> None:
    new = {"id": "s1", "workflow": "payment", "expression": "@hourly", **fields}
    assert_error(await client.post("/api/schedules", json=new, headers=as_("alice")), status, type_)


# Malformed input ---------------------------------------------------------------------------

GARBAGE = [
    b"{",
    b"[]",
    b"null",
    b'"text"',
    b"\xff\xfe",
    b"[" * 50_000 + b"]" * 50_000,
    b'{"workflow": "payment", "data": {"x": 1e999}}',
    b'{"workflow": "payment", "data": {"x": NaN}}',
    b'{"workflow": "\\ud800"}',
    b'{"workflow": 5}',
    b'{"workflow": "payment", "data": [1]}',
    b'{"workflow": "payment", "run_id": "a/b"}',
    b'{"workflow": "payment", "run_id": ""}',
    b'{"workflow": "payment", "x": 1}',
    b'{"workflow": "payment", "data": {"n": 1' + b"0" * 5000 + b"}}",
    b'{"workflow": "payment", "data": {"x": ' + b"[" * 500 + b"]" * 500 + b"}}",
]


@pytest.mark.parametrize("body", GARBAGE, ids=range(len(GARBAGE)))
async def test_garbage_bodies_are_400_never_500(
    client: httpx.AsyncClient, web_engine: treadle.Engine, body: bytes
) -> None:
    run = await web_engine.start("payment", run_id="target")
    paths = [
        "/api/runs",
        f"/api/runs/{run}/signal/paid",
        f"/api/runs/{run}/approve/paid",
        f"/api/runs/{run}/reject/paid",
        "/api/schedules",
    ]
    for path in paths:
        response = await client.post(
            path, content=body, headers={**as_("alice"), "Content-Type": "application/json"}
        )
        assert response.status_code == 400 or (
            # a well-formed body that only the workflow's definition refuses
            path.endswith("/paid") and response.status_code == 422
        ), (path, response.status_code, response.text)
        assert set(response.json()["error"]) == {"type", "message"}


async def test_unknown_routes_and_methods_keep_the_error_shape(
    client: httpx.AsyncClient,
) -> None:
    assert_error(await client.get("/api/nope", headers=as_("viewer")), 404, "NotFound")
    assert_error(await client.put("/api/runs", headers=as_("alice")), 405, "MethodNotAllowed")
    huge = b'{"workflow": "payment", "data": {"x": "' + b"a" * 1_100_000 + b'"}}'
    response = await client.post("/api/runs", content=huge, headers=as_("alice"))
    assert_error(response, 413, "PayloadTooLarge")


# Metrics -----------------------------------------------------------------------------------


async def test_metrics_expose_runs_steps_retries_and_queue(
    client: httpx.AsyncClient, web_engine: treadle.Engine
) -> None:
    done = await start(client, "payment")
    await client.post(f"/api/runs/{done['id']}/signal/paid", headers=as_("alice"))
    await web_engine.wait(done["id"], timeout=5)
    failed = await start(client, "broken")
    await web_engine.wait(failed["id"], timeout=5)
    waiting = await start(client, "expense")
    await waiting_for(web_engine, waiting["id"], "approval:manager")

    response = await client.get("/metrics", headers=as_("viewer"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'treadle_runs_started_total{workflow="payment"} 1.0' in text
    assert 'treadle_runs_finished_total{status="completed",workflow="payment"} 1.0' in text
    assert 'treadle_runs_finished_total{status="failed",workflow="broken"} 1.0' in text
    assert 'treadle_step_duration_seconds_count{step="ship",workflow="payment"} 1.0' in text
    assert 'treadle_step_duration_seconds_sum{step="ship",workflow="payment"}' in text
    assert "# TYPE treadle_step_retries_total counter" in text
    assert 'treadle_runs{status="waiting"} 1.0' in text
    assert "treadle_queue_depth 0.0" in text


async def test_retries_are_counted(web_engine: treadle.Engine) -> None:
    attempts: list[int] = []

    def flaky(ctx: treadle.Context, state: treadle.State) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 2:
            raise RuntimeError("try again")

    web_engine.register(
        treadle.new("flaky")
        .step("call", flaky, retry=treadle.RetryPolicy().attempts(3).backoff("10ms", "10ms"))
        .build()
    )
    run_id = await web_engine.start("flaky")
    await web_engine.wait(run_id, timeout=5)
    async with _client(web_engine, None) as c:
        text = (await c.get("/metrics")).text
    assert 'treadle_step_retries_total{step="call",workflow="flaky"} 1.0' in text


# Dashboard (server side; the browser test drives it end to end) ----------------------------


async def test_pages_are_shells_that_hold_no_data(
    client: httpx.AsyncClient, open_client: httpx.AsyncClient, web_engine: treadle.Engine
) -> None:
    await web_engine.start("payment", {"secret": "s3cr3t"}, run_id="visible-run")
    assert (await client.get("/")).headers["location"] == "/runs"
    for path in ("/runs", "/runs/visible-run", "/schedules"):
        page = await client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'id="login"' in page.text and "s3cr3t" not in page.text
    assert "Open mode" in (await open_client.get("/runs")).text
    assert (await client.get("/static/app.js")).status_code == 200
    assert (await client.get("/static/style.css")).status_code == 200


async def test_run_fragment_escapes_data_and_marks_progress(
    client: httpx.AsyncClient, web_engine: treadle.Engine
) -> None:
    run_id = await web_engine.start("expense", {"note": "<script>alert(1)</script>"}, run_id="x-y")
    await waiting_for(web_engine, run_id, "approval:manager")
    html = (await client.get("/ui/runs/x-y", headers=as_("alice"))).text
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'data-step="prepare" data-state="done"' in html
    assert 'data-step="manager" data-state="current"' in html
    assert 'data-step="pay" data-state="pending"' in html
    assert "Waiting for approval <b>manager</b> by alice, bob" in html
    assert 'data-url="/api/runs/x-y/approve/manager"' in html
    viewer = (await client.get("/ui/runs/x-y", headers=as_("viewer"))).text
    assert "read-only" in viewer and viewer.count(" disabled") >= 4


async def test_runs_fragment_filters_and_searches(
    client: httpx.AsyncClient, web_engine: treadle.Engine
) -> None:
    await web_engine.start("payment", run_id="order-1")
    await web_engine.start("payment", run_id="order-2")
    broken = await web_engine.start("broken", run_id="other")
    await web_engine.wait(broken, timeout=5)
    html = (await client.get("/ui/runs", params={"q": "order"}, headers=as_("viewer"))).text
    assert html.count('class="run-row"') == 2
    html = (await client.get("/ui/runs", params={"status": "failed"}, headers=as_("viewer"))).text
    assert html.count('class="run-row"') == 1 and "status-failed" in html
    html = (await client.get("/ui/runs", params={"q": "zzz"}, headers=as_("viewer"))).text
    assert "No runs match" in html


# Models, limits and bad input (issue 10 item 6, issue 11 items 7 and 9) --------------------


def test_openapi_enums_are_the_codes_own() -> None:
    from treadle._nodes import ActionStep, Workflow
    from treadle.cron._cron import CATCH_UP, OVERLAP
    from treadle.web import openapi_document

    schemas = openapi_document()["components"]["schemas"]
    assert schemas["Status"]["enum"] == [s.value for s in treadle.Status]
    kinds = schemas["Node"]["properties"]["kind"]["enum"]
    assert ActionStep.kind in kinds and Workflow.kind in kinds
    assert schemas["Schedule"]["properties"]["catch_up"]["enum"] == list(CATCH_UP)
    assert schemas["Schedule"]["properties"]["overlap"]["enum"] == list(OVERLAP)
    assert schemas["StartRun"]["additionalProperties"] is False


async def test_a_larger_body_is_refused_without_being_read_whole(
    client: httpx.AsyncClient,
) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        chunk = b"[" * 65_536
        for _ in range(1600):  # 100 MB, if it were all read
            sent += len(chunk)
            yield chunk

    response = await client.post(
        "/api/runs",
        content=endless(),
        headers={**as_("alice"), "Content-Type": "application/json"},
    )
    assert_error(response, 413, "PayloadTooLarge")
    assert sent <= 1_000_000 + 2 * 65_536


async def test_a_body_that_is_not_json_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/runs",
        content=b"workflow=payment",
        headers={**as_("alice"), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(response, 415, "UnsupportedMediaType")


@pytest.mark.parametrize(
    ("error", "type_"),
    [(treadle.DataError("signal payload holds a NUL character"), "DataError"),
     (ValueError("text holds a NUL character"), "BadRequest")],
)  # fmt: skip
async def test_bad_data_the_engine_refuses_is_400_with_its_message(
    client: httpx.AsyncClient,
    web_engine: treadle.Engine,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    type_: str,
) -> None:
    run_id = await web_engine.start("payment")

    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(web_engine, "signal", refuse)
    response = await client.post(
        f"/api/runs/{run_id}/signal/paid", json={"data": "a\u0000b"}, headers=as_("alice")
    )
    body = assert_error(response, 400, type_)
    assert body["error"]["message"] == str(error)


async def test_without_tokens_the_page_says_why_a_named_approval_has_no_buttons(
    open_client: httpx.AsyncClient, web_engine: treadle.Engine
) -> None:
    run_id = await web_engine.start("expense", run_id="needs-alice")
    await waiting_for(web_engine, run_id, "approval:manager")
    html = (await open_client.get("/ui/runs/needs-alice")).text
    assert ">Approve<" not in html and ">Reject<" not in html
    assert "Only alice, bob may decide" in html and "without API tokens" in html
    anyone = await web_engine.start("open", run_id="anyone-may")
    await waiting_for(web_engine, anyone, "approval:anyone")
    assert ">Approve<" in (await open_client.get("/ui/runs/anyone-may")).text


async def test_run_page_shows_signals_not_yet_consumed(
    client: httpx.AsyncClient, web_engine: treadle.Engine
) -> None:
    web_engine.register(treadle.new("gated").await_approval("gate", []).await_signal("go").build())
    run_id = await web_engine.start("gated", run_id="early")
    await waiting_for(web_engine, run_id, "approval:gate")
    html = (await client.get("/ui/runs/early", headers=as_("viewer"))).text
    assert "Signals not yet consumed" not in html
    await web_engine.signal(run_id, "go", {"n": "<2>"})  # sent before the run awaits it
    html = (await client.get("/ui/runs/early", headers=as_("viewer"))).text
    assert "Signals not yet consumed" in html
    assert '<li data-signal="go">' in html and "&lt;2&gt;" in html


async def test_timeline_durations_carry_units(web_engine: treadle.Engine) -> None:
    def flaky(ctx: treadle.Context, state: treadle.State) -> None:
        if ctx.attempt < 2:
            raise RuntimeError("try again")

    policy = treadle.RetryPolicy().attempts(3).backoff("50ms", "50ms")
    web_engine.register(treadle.new("flaky").step("call", flaky, retry=policy).build())
    run_id = await web_engine.start("flaky", run_id="flaky-1")
    await web_engine.wait(run_id, timeout=5)
    async with _client(web_engine, None) as c:
        html = (await c.get("/ui/runs/flaky-1")).text
    assert re.search(r"retry_in: \d+ms", html), html
    assert "retry_in: 0." not in html


def test_run_view_is_plain_data_without_http() -> None:
    from datetime import UTC, datetime

    from treadle.web import ANONYMOUS
    from treadle.web._views import run_view

    at = datetime(2026, 5, 1, tzinfo=UTC)
    state = treadle.State(
        "r1", "expense", treadle.Status.WAITING, {}, at, at, waiting_for=["approval:manager"]
    )
    events = [
        treadle.Event("r1", at, "created"),
        treadle.Event("r1", at, "step_completed", "prepare", {"attempt": 1, "ms": 1500}),
        treadle.Event("r1", at, "waiting"),
    ]
    view = run_view(state, events, EXPENSE.describe(), identity=ANONYMOUS, open_mode=True)
    assert view.why is not None and view.why.reasons[0].who == "alice, bob"
    assert view.actions is not None
    assert "without API tokens" in view.actions.approvals[0].why_not
    assert [box.state for box in view.boxes] == ["done", "current", "pending"]
    assert view.timeline[1].took == "1.5s" and view.timeline[1].info == "attempt: 1"
