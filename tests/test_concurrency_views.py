"""Concurrency limits made visible: ``treadle limits``, ``GET /api/limits``, the dashboard's
Limits page and the Prometheus gauges all show each key's limit, holders and queued runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner
from test_web_api import TOKENS, _client, as_, assert_error

import treadle
from treadle._prometheus import Exporter
from treadle.cli import cli

SYNC = (
    treadle.new("sync")
    .concurrency(1, key=lambda s: s.data["tenant"])
    .step("fetch", lambda ctx, s: None)
    .await_signal("go")
    .build()
)


async def _two_holders_one_queued(engine: treadle.Engine) -> None:
    """t-7 held by a and queued by b; t-8 held by c."""
    await engine.start("sync", {"tenant": "t-7"}, run_id="a")
    await engine.settle()
    await engine.start("sync", {"tenant": "t-7"}, run_id="b")
    await engine.start("sync", {"tenant": "t-8"}, run_id="c")
    await engine.settle()


async def test_the_api_and_the_dashboard_list_each_key_with_holders_and_queue() -> None:
    engine = treadle.Engine(treadle.MemoryPersistence(), poll_interval=0.2)
    engine.register(SYNC)
    async with engine:
        await _two_holders_one_queued(engine)
        async with _client(engine, TOKENS) as client:
            assert_error(await client.get("/api/limits"), 401, "Unauthorized")
            listed = await client.get("/api/limits", headers=as_("viewer"))
            assert listed.status_code == 200, listed.text
            assert listed.json() == {
                "limits": [
                    {"key": "sync[t-7]", "limit": 1, "in_use": 1, "queued": 1,
                     "holders": ["a"], "waiting": ["b"]},
                    {"key": "sync[t-8]", "limit": 1, "in_use": 1, "queued": 0,
                     "holders": ["c"], "waiting": []},
                ]
            }  # fmt: skip
            spec = (await client.get("/api/openapi.json", headers=as_("viewer"))).json()
            assert "LimitList" in spec["components"]["schemas"]
            assert "/api/limits" in spec["paths"]
            fragment = await client.get("/ui/limits", headers=as_("viewer"))
            assert fragment.status_code == 200
            assert "sync[t-7]" in fragment.text and 'href="/runs/b"' in fragment.text
            shell = await client.get("/limits")
            assert shell.status_code == 200 and 'href="/limits"' in shell.text
            # The queued run's page says in words what it waits for.
            page = (await client.get("/ui/runs/b", headers=as_("viewer"))).text
            assert "a slot of the concurrency limit <b>sync[t-7]</b>" in page


async def test_prometheus_gauges_show_limit_use_and_queue_per_key() -> None:
    engine = treadle.Engine(treadle.MemoryPersistence(), poll_interval=0.2)
    engine.register(SYNC)
    async with engine:
        await _two_holders_one_queued(engine)
        text, _ = await Exporter(engine).exposition()
    lines = text.decode().splitlines()
    assert 'treadle_concurrency_limit{key="sync[t-7]"} 1.0' in lines
    assert 'treadle_concurrency_in_use{key="sync[t-7]"} 1.0' in lines
    assert 'treadle_concurrency_queued{key="sync[t-7]"} 1.0' in lines
    assert 'treadle_concurrency_queued{key="sync[t-8]"} 0.0' in lines


def test_treadle_limits_prints_every_key_in_use(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"

    async def prepare() -> None:
        engine = treadle.Engine(treadle.persistence_from_url(db), poll_interval=0.2)
        engine.register(SYNC)
        async with engine:
            await _two_holders_one_queued(engine)

    asyncio.run(prepare())
    runner = CliRunner()
    text = runner.invoke(cli, ["limits", "--db", db], catch_exceptions=False)
    as_json = runner.invoke(cli, ["limits", "--db", db, "--json"], catch_exceptions=False)
    assert text.exit_code == 0, text.output
    assert text.output.splitlines() == [
        "sync[t-7]  limit 1  in use 1  queued 1",
        "  held by: a",
        "  queued:  b",
        "sync[t-8]  limit 1  in use 1  queued 0",
        "  held by: c",
    ]
    assert [u["key"] for u in json.loads(as_json.output)["limits"]] == ["sync[t-7]", "sync[t-8]"]


def test_treadle_limits_says_when_none_is_in_use(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"

    async def create() -> None:
        async with treadle.Engine(treadle.persistence_from_url(db)):
            pass

    asyncio.run(create())
    done = CliRunner().invoke(cli, ["limits", "--db", db], catch_exceptions=False)
    assert (done.exit_code, done.output) == (0, "no concurrency limit in use\n")
