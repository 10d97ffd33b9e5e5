"""Search and bulk actions through the CLI (``treadle runs`` filters and pages, ``treadle
bulk``) and the HTTP API (``GET /api/runs`` filters and ``next_cursor``, ``POST
/api/runs/bulk/{action}`` under the token rules)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import treadle
from treadle.cli import cli
from treadle.web import Identity, create_app

parked = treadle.new("parked").await_signal("go").build()
TOKENS = {"tok-alice": Identity("alice", True), "tok-viewer": Identity("viewer", False)}


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


async def _seed(url: str) -> list[str]:
    engine = treadle.Engine(treadle.persistence_from_url(url), max_concurrent_runs=0)
    engine.register(parked)
    async with engine:
        return [
            await engine.start("parked", run_id=f"r-{n}", labels={"team": "ab"[n % 2]})
            for n in range(5)
        ]


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    asyncio.run(_seed(url))
    return url


def test_runs_filters_by_label_and_prints_the_next_cursor(db: str) -> None:
    code, out, err = _cli("runs", "--label", "team=a", "--limit", "2", "--json", "--db", db)
    assert code == 0
    assert [r["id"] for r in json.loads(out)] == ["r-4", "r-2"]
    assert err.startswith("next page: --cursor ")
    cursor = err.split()[-1]
    code, out, err = _cli("runs", "-l", "team=a", "-n", "2", "--cursor", cursor, "--json",
                          "--db", db)  # fmt: skip
    assert [r["id"] for r in json.loads(out)] == ["r-0"] and err == ""
    code, out, _ = _cli("runs", "--workflow", "parked", "--created-after", "1h", "--db", db)
    assert code == 0 and out.count("parked") == 5


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("runs", "--label", "team"), "key=value"),
        (("runs", "--created-after", "yesterday"), "is not an ISO 8601 time"),
        (("runs", "--cursor", "nope!"), "not a cursor of this search"),
        (("bulk", "cancel"), "give a filter"),
        (("bulk", "explode", "--all"), "'explode' is not one of"),
    ],
)
def test_bad_search_input_is_one_clear_line(db: str, args: tuple[str, ...], says: str) -> None:
    code, out, err = _cli(*args, "--db", db)
    assert code in (1, 2) and out == "" and says in err
    assert code == (1 if "cursor" in says else 2)


def test_bulk_cancel_dry_run_then_for_real(db: str) -> None:
    code, out, _ = _cli("bulk", "cancel", "--label", "team=b", "--dry-run", "--db", db)
    assert code == 0
    assert out.splitlines() == [
        "would cancel r-3",
        "would cancel r-1",
        "cancel: 2 to act on, 0 skipped",
    ]
    code, out, _ = _cli("bulk", "cancel", "-l", "team=b", "--by", "ops", "--json", "--db", db)
    assert json.loads(out) == {"action": "cancel", "dry_run": False,
                               "applied": ["r-3", "r-1"], "skipped": {}}  # fmt: skip
    code, out, _ = _cli("bulk", "cancel", "-l", "team=b", "--db", db)
    assert out.splitlines()[-1] == "cancel: 0 done, 2 skipped"
    assert "skipped r-3: a cancel is already requested" in out


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, treadle.Engine]]:
    engine = treadle.Engine(treadle.MemoryPersistence(), poll_interval=0.2)
    engine.register(parked)
    async with engine:
        for n in range(5):
            await engine.start("parked", run_id=f"r-{n}", labels={"team": "ab"[n % 2]})
        await engine.settle()
        app = create_app(engine, tokens=TOKENS)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            yield c, engine


def _as(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer tok-{name}"}


async def test_api_lists_a_filtered_page_with_its_next_cursor(
    client: tuple[httpx.AsyncClient, treadle.Engine],
) -> None:
    http, _ = client
    query = {"label": "team:a", "limit": "2", "status": "waiting"}
    first = (await http.get("/api/runs", params=query, headers=_as("viewer"))).json()
    assert [r["id"] for r in first["runs"]] == ["r-4", "r-2"]
    assert first["runs"][0]["labels"] == {"team": "a"}
    query["cursor"] = first["next_cursor"]
    last = (await http.get("/api/runs", params=query, headers=_as("viewer"))).json()
    assert [r["id"] for r in last["runs"]] == ["r-0"] and last["next_cursor"] is None
    bad = await http.get("/api/runs", params={"label": "team"}, headers=_as("viewer"))
    assert bad.status_code == 400 and "key=value" in bad.json()["error"]["message"]
    bad = await http.get("/api/runs", params={"created_after": "soon"}, headers=_as("viewer"))
    assert bad.status_code == 400 and "created_after" in bad.json()["error"]["message"]


async def test_api_bulk_acts_as_the_token_and_needs_a_read_write_one(
    client: tuple[httpx.AsyncClient, treadle.Engine],
) -> None:
    http, engine = client
    body = {"filter": {"labels": {"team": "b"}}}
    denied = await http.post("/api/runs/bulk/cancel", json=body, headers=_as("viewer"))
    assert denied.status_code == 403
    dry = await http.post("/api/runs/bulk/cancel", json={**body, "dry_run": True},
                          headers=_as("alice"))  # fmt: skip
    assert dry.json()["applied"] == ["r-3", "r-1"]
    assert (await engine.status("r-3")).status is treadle.Status.WAITING
    done = await http.post("/api/runs/bulk/cancel", json={"run_ids": ["r-3", "r-0"]},
                           headers=_as("alice"))  # fmt: skip
    assert done.status_code == 200 and done.json()["applied"] == ["r-3", "r-0"]
    assert (await engine.wait("r-3", timeout=10)).status is treadle.Status.CANCELLED
    asked = [e for e in await engine.history("r-0") if e.kind == "cancel_requested"]
    assert [e.detail for e in asked] == [{"by": "alice", "bulk": True}]
    unknown = await http.post("/api/runs/bulk/explode", json=body, headers=_as("alice"))
    assert unknown.status_code == 400 and "unknown bulk action" in unknown.text
    no_reason = await http.post("/api/runs/bulk/abort", json=body, headers=_as("alice"))
    assert no_reason.status_code == 400 and "needs a reason" in no_reason.text
