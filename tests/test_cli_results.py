"""The CLI and the HTTP API on results, deadlines and computed parameters (see API.md
"Parameters from the run's data, deadlines and results")."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import treadle
from treadle.cli import cli
from treadle.web import create_app

QUOTE = (
    treadle.new("quote")
    .step("price", lambda c, s: 10 * s.data["n"])
    .output(lambda s: {"total": s.data["price"]})
    .build()
)
VOTE = treadle.new("vote").await_approval("ok", lambda s: [s.data["boss"]]).build()


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A database with a completed quote and a vote waiting for its computed approver."""
    path = tmp_path / "runs.db"
    with treadle.SyncEngine(treadle.SQLitePersistence(str(path))) as engine:
        engine.register(QUOTE)
        engine.register(VOTE)
        done = engine.start("quote", {"n": 4}, run_id="q-1")
        engine.wait(done, 10)
        engine.start("vote", {"boss": "dora"}, run_id="v-1", deadline="7d")
        give_up = time.monotonic() + 10
        while engine.status("v-1").status is not treadle.Status.WAITING:
            assert time.monotonic() < give_up, "the vote never waited for its approval"
            time.sleep(0.01)
    yield f"sqlite:///{path}", done, "v-1"


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def test_result_and_status_show_what_the_run_returned(runs: tuple[str, str, str]) -> None:
    url, done, _ = runs
    code, out, _ = _cli("result", done, "--db", url)
    assert code == 0 and json.loads(out) == {"total": 40}
    code, out, _ = _cli("status", done, "--db", url)
    assert code == 0 and "result:" in out and '{"total": 40}' in out
    code, out, _ = _cli("status", done, "--db", url, "--json")
    assert json.loads(out)["result"] == {"total": 40}


def test_status_shows_the_deadline_and_the_computed_approvers(runs: tuple[str, str, str]) -> None:
    url, _, waiting = runs
    code, out, _ = _cli("status", waiting, "--db", url)
    assert code == 0
    assert "deadline:" in out and "params ok:" in out and '"approvers": ["dora"]' in out


def test_result_of_an_unfinished_run_is_one_error_line(runs: tuple[str, str, str]) -> None:
    url, _, waiting = runs
    code, out, err = _cli("result", waiting, "--db", url)
    assert code == 1 and out == ""
    assert err.strip() == "Error: cannot read the result of run 'v-1': it is waiting"


def test_start_with_a_bad_deadline_is_one_error_line(runs: tuple[str, str, str]) -> None:
    url, _, _ = runs
    code, out, err = _cli("start", "quote", "--db", url, "--deadline", "0s")
    assert code == 1 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("Error: ") and "positive" in line


async def test_http_run_shows_result_deadline_params_and_the_page_draws_them(
    runs: tuple[str, str, str],
) -> None:
    url, done, waiting = runs
    async with treadle.Client(url) as client:
        app = create_app(client, tokens=None)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            body = (await http.get(f"/api/runs/{done}")).json()
            assert body["result"] == {"total": 40}
            body = (await http.get(f"/api/runs/{waiting}")).json()
            assert body["params"] == {"ok": {"approvers": ["dora"]}} and body["deadline"]
            bad = await http.post("/api/runs", json={"workflow": "quote", "deadline": "soon"})
            assert bad.status_code == 400 and set(bad.json()["error"]) == {"type", "message"}
            page = (await http.get(f"/ui/runs/{waiting}")).text
            assert "approval by dora" in page and "Deadline:" in page
            assert "approval <b>ok</b> by dora" in page
            page = (await http.get(f"/ui/runs/{done}")).text
            assert "<h2>Result</h2>" in page and "&#34;total&#34;: 40" in page
