"""A bulk cancel killed with SIGKILL in its middle, on SQLite and PostgreSQL: every run is either
untouched or has its cancel whole (control set and one ``cancel_requested`` event, as who
asked), and the same command run again finishes the rest without touching a run twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from conftest import _postgres_dsn

import treadle
from treadle import Status
from treadle._state import EventKind

ROOT = Path(treadle.__file__).parent.parent
RUNS = 600
parked = treadle.new("parked").await_signal("go").build()


def _bulk(url: str) -> list[str]:
    return [sys.executable, "-m", "treadle", "bulk", "cancel", "--workflow", "parked",
            "--by", "ops", "--batch", "20", "--db", url]  # fmt: skip


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREADLE_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _asked(url: str) -> int:
    """How many runs have a cancel requested (read straight from the database)."""
    sql = "SELECT count(*) FROM runs WHERE control = 'cancel'"
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return int(conn.execute(sql).fetchone()[0])
    with psycopg.connect(url) as pg:
        row = pg.execute(sql).fetchone()
        return int(row[0]) if row else 0


async def _cancels(client: treadle.Client, ids: list[str]) -> dict[str, int]:
    """Run id -> number of its cancel_requested events, after checking each run is whole."""
    found = {}
    for run_id in ids:
        record = await client.persistence.get_run(run_id)
        assert record is not None
        asked = [e for e in await client.history(run_id) if e.kind == EventKind.CANCEL_REQUESTED]
        assert len(asked) == (1 if record.control == "cancel" else 0), (run_id, asked)
        assert all(e.detail == {"by": "ops", "bulk": True} for e in asked)
        found[run_id] = len(asked)
    return found


async def _start(url: str) -> list[str]:
    starter = treadle.Engine(treadle.persistence_from_url(url), max_concurrent_runs=0)
    starter.register(parked)
    async with starter:
        return list(await asyncio.gather(*(starter.start("parked") for _ in range(RUNS))))


async def _check(url: str, ids: list[str]) -> dict[str, int]:
    async with treadle.Client(treadle.persistence_from_url(url)) as client:
        return await _cancels(client, ids)


async def _finish(url: str, ids: list[str]) -> list[Status]:
    worker = treadle.Engine(treadle.persistence_from_url(url), poll_interval=0.2)
    worker.register(parked)
    async with worker:
        return [(await worker.wait(run_id, timeout=60)).status for run_id in ids]


def _kill_midway(url: str) -> None:
    """Run the bulk cancel and SIGKILL it once it has asked for some cancels."""
    proc = subprocess.Popen(_bulk(url), env=_env(), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while _asked(url) < 30 and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_killed_bulk_cancel_leaves_each_run_whole_and_a_rerun_finishes(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}" if kind == "sqlite" else _postgres_dsn(request)
    ids = asyncio.run(_start(url))
    _kill_midway(url)
    touched = sum(asyncio.run(_check(url, ids)).values())
    assert 30 <= touched < RUNS  # killed in the middle: some runs cancelled, not all

    again = subprocess.run(_bulk(url), env=_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"cancel: {RUNS - touched} done, {touched} skipped" in again.stdout
    assert set(asyncio.run(_check(url, ids)).values()) == {1}
    assert set(asyncio.run(_finish(url, ids))) == {Status.CANCELLED}


quick = treadle.new("quick").step("s", lambda ctx, state: None).build()


async def _completed(url: str) -> list[str]:
    worker = treadle.Engine(treadle.persistence_from_url(url), poll_interval=0.2)
    worker.register(quick)
    async with worker:
        ids = list(await asyncio.gather(*(worker.start("quick") for _ in range(RUNS))))
        for run_id in ids:
            await worker.wait(run_id, timeout=60)
    return ids


def _count(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(sql).fetchone()[0])


def test_a_killed_bulk_delete_leaves_each_run_whole_or_gone(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    url = f"sqlite:///{path}"
    asyncio.run(_completed(url))
    command = [sys.executable, "-m", "treadle", "bulk", "delete", "--workflow", "quick",
               "--by", "ops", "--batch", "20", "--db", url]  # fmt: skip
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while _count(path, "SELECT count(*) FROM runs") > RUNS - 30:
            assert time.monotonic() < deadline, "the bulk delete never got going"
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = _count(path, "SELECT count(*) FROM runs")
    assert 0 < left < RUNS  # killed in the middle
    # Whole or gone: each run left has its whole history; no row of a deleted run is left.
    assert _count(path, "SELECT count(*) FROM events WHERE kind = 'run_completed'") == left
    assert _count(path, "SELECT count(*) FROM events WHERE kind = 'created'") == left
    orphans = "SELECT count(*) FROM events WHERE run_id NOT IN (SELECT id FROM runs)"
    assert _count(path, orphans) == 0
    again = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert _count(path, "SELECT count(*) FROM runs") == 0
    assert _count(path, "SELECT count(*) FROM events") == 0
