"""Rate limiters as operators see them: ``treadle rates``, ``GET /api/rate-limits``, the
dashboard's page and the Prometheus gauges, over one database with runs parked for a limiter."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from click.testing import CliRunner

import treadle
from treadle._prometheus import Exporter
from treadle.cli import cli
from treadle.web import create_app

SLOW = treadle.RateLimit("psp", 1, per="1m")


def _payments() -> treadle.Workflow:
    return treadle.new("pay").step("charge", lambda ctx, state: None, rate_limit=SLOW).build()


async def _park_three(engine: treadle.Engine) -> list[str]:
    """Start three runs of one call a minute: the first calls, the other two park."""
    ids = [await engine.start("pay", {}) for _ in range(3)]
    await engine.wait(ids[0], timeout=10)
    await engine.settle()
    for run_id in ids[1:]:
        assert (await engine.status(run_id)).waiting_for == ["rate:psp"]
    return ids


async def _parked_database(path: Path) -> None:
    engine = treadle.Engine(treadle.SQLitePersistence(str(path)), poll_interval=0.2)
    engine.register(_payments())
    async with engine:
        await _park_three(engine)


def test_treadle_rates_lists_each_limiter_with_its_use_and_its_waiting_runs(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade", "--db", db]).exit_code == 0
    empty = runner.invoke(cli, ["rates", "--db", db])
    assert empty.exit_code == 0 and "no rate limiters" in empty.output
    asyncio.run(_parked_database(tmp_path / "runs.db"))
    text = runner.invoke(cli, ["rates", "--db", db])
    assert text.exit_code == 0, text.output
    header, row = text.output.strip().splitlines()
    assert header.split() == ["LIMITER", "LIMIT", "BURST", "AVAILABLE", "NEXT", "FREE", "WAITING"]
    cells = row.split()
    assert cells[:6] == ["psp", "1", "per", "1m", "1", "0"] and cells[-1] == "2"
    assert cells[6] == "in" and cells[7].startswith("2m")  # after the two calls reserved
    shown = json.loads(runner.invoke(cli, ["rates", "--db", db, "--json"]).output)
    (limiter,) = shown["rate_limits"]
    assert {k: limiter[k] for k in ("name", "limit", "per", "burst", "available", "waiting")} == {
        "name": "psp",
        "limit": 1,
        "per": "1m",
        "burst": 1,
        "available": 0,
        "waiting": 2,
    }


async def test_the_api_the_dashboard_and_the_gauges_show_the_limiter() -> None:
    engine = treadle.Engine(treadle.MemoryPersistence(), poll_interval=0.2)
    engine.register(_payments())
    async with engine:
        transport = httpx.ASGITransport(app=create_app(engine, tokens=None))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as web:
            listed = (await web.get("/api/rate-limits")).json()
            assert listed == {"rate_limits": []}
            await _park_three(engine)
            (limiter,) = (await web.get("/api/rate-limits")).json()["rate_limits"]
            assert limiter["name"] == "psp" and limiter["waiting"] == 2
            assert limiter["per_seconds"] == 60.0 and limiter["available"] == 0
            document = (await web.get("/api/openapi.json")).json()
            assert "RateLimitList" in document["components"]["schemas"]
            assert "get" in document["paths"]["/api/rate-limits"]
            page = await web.get("/rate-limits")
            assert page.status_code == 200 and 'href="/rate-limits"' in page.text
            fragment = (await web.get("/ui/rate-limits")).text
            assert "<td>psp</td><td>1 per 1m</td>" in fragment and "<td>2</td>" in fragment
        exporter = Exporter(engine)
        text = (await exporter.exposition())[0].decode()
        assert 'treadle_rate_limit_waiting{name="psp"} 2.0' in text
        assert 'treadle_rate_limit_available{name="psp"} 0.0' in text
        line = next(t for t in text.splitlines() if t.startswith("treadle_rate_limit_next_free"))
        assert 120.0 < float(line.split()[-1]) <= 180.0  # after the two reserved calls
