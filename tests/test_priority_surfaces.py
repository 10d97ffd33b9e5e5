"""Priority and debounce where operators meet them (API.md "Priority and debounce"): ``treadle
start --priority/--debounce-key/--debounce``, ``treadle status``, the HTTP start body and run
shape, the dashboard's run page, and a schedule's priority."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import treadle
from treadle.cli import cli
from treadle.testing import TestKit
from treadle.web import create_app

JOB = treadle.new("job").step("work", lambda ctx, s: None).build()


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite database where a worker has stored the definition of ``job``."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    async def store() -> None:
        engine = treadle.Engine(treadle.persistence_from_url(url), max_concurrent_runs=0)
        engine.register(JOB)
        async with engine:
            pass

    asyncio.run(store())
    return url


def cli_run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_the_cli_starts_with_a_priority_and_status_shows_it(db: str) -> None:
    code, out, _ = cli_run("start", "job", "--db", db, "--priority", "7", "--json")
    assert code == 0
    run = json.loads(out)
    assert run["priority"] == 7
    code, out, _ = cli_run("status", run["id"], "--db", db)
    assert code == 0 and "priority:     7" in out


def test_the_cli_refuses_a_priority_out_of_range_as_a_usage_error(db: str) -> None:
    code, _, err = cli_run("start", "job", "--db", db, "--priority", "5000")
    assert code == 2 and "5000 is not in the range -1000<=x<=1000" in err


def test_cli_starts_with_one_debounce_key_print_one_run(db: str) -> None:
    ids = set()
    for n in range(3):
        code, out, _ = cli_run(
            "start", "job", "--db", db, "--data", json.dumps({"n": n}),
            "--debounce-key", "cust-42", "--debounce", "1h",
        )  # fmt: skip
        assert code == 0
        ids.add(out.strip())
    [run_id] = ids
    code, out, _ = cli_run("status", run_id, "--db", db, "--json")
    state = json.loads(out)
    assert state["data"] == {"n": 2} and state["status"] == "waiting"
    assert state["waiting_for"][0].startswith("debounce:cust-42 until ")


def test_the_cli_says_what_a_debounce_lacks_in_one_line(db: str) -> None:
    code, _, err = cli_run("start", "job", "--db", db, "--debounce", "30s")
    assert code == 1
    assert err.strip().splitlines() == [
        "Error: debounce needs a debounce_key: the starts that collapse into one run are those "
        "with the same key"
    ]


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    engine = treadle.Engine(treadle.MemoryPersistence(), max_concurrent_runs=0)
    engine.register(JOB)
    async with engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            yield c


async def test_the_http_api_starts_with_a_priority_and_a_debounce(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/runs", json={"workflow": "job", "priority": -3})
    assert response.status_code == 201 and response.json()["priority"] == -3
    bodies = [
        {"workflow": "job", "data": {"n": n}, "debounce_key": "k", "debounce": "1h"}
        for n in range(2)
    ]
    first, second = [(await api.post("/api/runs", json=b)).json() for b in bodies]
    assert first["id"] == second["id"] and second["data"] == {"n": 1}
    page = await api.get(f"/ui/runs/{first['id']}")
    assert page.status_code == 200 and 'priority <b class="priority">0</b>' in page.text


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"priority": 1001}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"debounce": "30s"}, "debounce needs a debounce_key"),
        ({"debounce_key": "k"}, "needs debounce"),
        ({"debounce_key": "k", "debounce": "soon"}, "soon"),
    ],
)
async def test_the_http_api_refuses_a_bad_priority_or_debounce_with_a_400(
    api: httpx.AsyncClient, body: dict[str, Any], says: str
) -> None:
    response = await api.post("/api/runs", json={"workflow": "job", **body})
    assert response.status_code == 400, response.text
    assert says in response.json()["error"]["message"]


async def test_a_schedule_starts_its_runs_at_its_priority() -> None:
    async with TestKit(JOB) as kit:
        schedule = await kit.cron.add("hourly", "job", "@every 1h", priority=5)
        assert schedule.priority == 5
        await kit.advance("1h")
        [run] = await kit.engine.runs(workflow="job")
        assert run.priority == 5
        with pytest.raises(ValueError, match="priority 2000 is out of range"):
            await kit.cron.add("bad", "job", "@every 1h", priority=2000)
