"""Retention from the outside: ``treadle runs prune``, ``treadle delete``, ``treadle db vacuum``,
``DELETE /api/runs/{id}``; SQLite gives the space back; and a prune killed with SIGKILL in the
middle (SQLite and PostgreSQL) leaves every run there whole or gone whole."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from retentionkit import orphans, query, rows_by_run, seed_finished

import treadle
from treadle.cli import cli
from treadle.web import Identity, create_app

DATA = Path(__file__).parent / "data"
LONG_AGO = datetime.now(UTC) - timedelta(days=40)


def treadle_cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def made(persistence: treadle.Persistence) -> None:
    """Create the schema in the database of ``persistence``."""

    async def open_once() -> None:
        async with treadle.Engine(persistence, max_concurrent_runs=0):
            pass

    asyncio.run(open_once())


@pytest.fixture
def sqlite_db(tmp_path: Path) -> tuple[treadle.SQLitePersistence, str]:
    persistence = treadle.SQLitePersistence(str(tmp_path / "runs.db"))
    made(persistence)
    return persistence, f"sqlite:///{persistence.path}"


def page_counts(path: str) -> tuple[int, int]:
    with sqlite3.connect(path) as conn:
        return (
            conn.execute("PRAGMA page_count").fetchone()[0],
            conn.execute("PRAGMA freelist_count").fetchone()[0],
        )


# The commands ------------------------------------------------------------------------------


def test_runs_prune_lists_with_dry_run_then_deletes(
    sqlite_db: tuple[treadle.SQLitePersistence, str],
) -> None:
    persistence, db = sqlite_db
    old = seed_finished(persistence, 30, LONG_AGO)
    young = seed_finished(persistence, 5, datetime.now(UTC), prefix="young")
    before = rows_by_run(persistence)

    out = treadle_cli("runs", "prune", "--older-than", "30d", "--dry-run", "--db", db)
    assert out.splitlines()[0].startswith("would delete 30 finished runs that ended before ")
    assert set(out.splitlines()[1:]) == set(old)
    assert rows_by_run(persistence) == before
    shown = json.loads(treadle_cli("runs", "prune", "--older-than", "4w", "--dry-run", "--json",
                                   "--db", db))  # fmt: skip
    assert shown["dry_run"] is True and shown["count"] == 30 and len(shown["run_ids"]) == 30
    assert "would delete 0 finished runs" in treadle_cli(
        "runs", "prune", "--older-than", "1y", "--dry-run", "--db", db
    )
    assert treadle_cli("runs", "prune", "--older-than", "30d", "--status", "failed", "--db", db)
    assert "deleted 0 " in treadle_cli(
        "runs", "prune", "--older-than", "30d", "--workflow", "other", "--db", db
    )
    out = treadle_cli("runs", "prune", "--older-than", "30d", "--batch-size", "7", "--db", db)
    assert out.startswith("deleted 30 finished runs that ended before ")
    assert sorted(r[0] for r in query(persistence, "SELECT id FROM runs")) == young
    assert orphans(persistence) == {"events": 0, "inbox": 0, "run_labels": 0, "parent_id": 0}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--older-than", "30 days"], 2, "invalid duration '30 days'"),
        (["--older-than", "0"], 2, "--older-than must be more than 0"),
        (["--older-than", "1d", "--status", "waiting"], 2, "'waiting' is not one of"),
        (["--older-than", "1d", "--batch-size", "0"], 2, "--batch-size"),
        ([], 2, "Missing option '--older-than'"),
    ],
)
def test_runs_prune_refuses_bad_input_in_one_line(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    db = f"sqlite:///{tmp_path / 'none.db'}"
    result = CliRunner().invoke(cli, ["runs", "prune", *args, "--db", db])
    assert result.exit_code == code
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_treadle_delete_deletes_a_finished_run_and_refuses_an_unfinished_one(
    sqlite_db: tuple[treadle.SQLitePersistence, str],
) -> None:
    persistence, db = sqlite_db
    family = seed_finished(persistence, 10, LONG_AGO)  # a parent and its 9 children
    query(persistence, "UPDATE runs SET status = 'waiting' WHERE id = ?", (family[9],))
    result = CliRunner().invoke(cli, ["delete", family[0], "--db", db])
    assert result.exit_code == 1
    assert f"cancel run '{family[9]}' first" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "deleted run old-000001" in treadle_cli("delete", family[1], "--db", db)
    query(persistence, "UPDATE runs SET status = 'cancelled' WHERE id = ?", (family[9],))
    deleted = json.loads(treadle_cli("delete", family[0], "--json", "--db", db))["deleted"]
    assert deleted[0] == family[0] and sorted(deleted[1:]) == family[2:]
    assert query(persistence, "SELECT COUNT(*) FROM runs") == [(0,)]
    assert "does not exist" in CliRunner().invoke(cli, ["delete", "nope", "--db", db]).output


async def test_sqlite_gives_the_space_of_pruned_runs_back(
    sqlite_db: tuple[treadle.SQLitePersistence, str],
) -> None:
    persistence, db = sqlite_db
    seed_finished(persistence, 3000, LONG_AGO, data_bytes=2000)
    seed_finished(persistence, 100, datetime.now(UTC), prefix="young", data_bytes=2000)
    pages, free = page_counts(persistence.path)
    assert free == 0 and pages > 2000
    async with treadle.Client(db) as client:
        assert (await client.prune("30d")).count == 3000
    after, free_after = page_counts(persistence.path)
    assert free_after == 0
    assert after < pages / 10, (pages, after)


def test_db_vacuum_switches_an_old_sqlite_file_to_incremental_vacuum(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(DATA / "runs-v0.db", path)
    db = f"sqlite:///{path}"
    treadle_cli("db", "upgrade", "--db", db)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    out = treadle_cli("db", "vacuum", "--db", db)
    assert out.startswith(f"database {db}: vacuumed ") and "gives space back" in out
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert "vacuumed" in treadle_cli("db", "vacuum", "--db", db)
    missing = CliRunner().invoke(cli, ["db", "vacuum", "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert missing.exit_code == 1 and "no database at" in missing.output


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_db_vacuum_on_postgresql(backend: str, persistence: treadle.Persistence) -> None:
    assert isinstance(persistence, treadle.PostgresPersistence)
    made(persistence)
    assert "vacuumed the tables runs, events, inbox, run_labels" in treadle_cli(
        "db", "vacuum", "--db", _url(persistence.dsn)
    )


async def test_http_delete_deletes_a_finished_run_and_says_409_for_an_unfinished_one() -> None:
    done = treadle.new("done").step("s", lambda ctx, state: None).build()
    waits = treadle.new("waits").await_signal("go").build()
    engine = treadle.Engine(treadle.MemoryPersistence(), poll_interval=0.2)
    engine.register(done, waits)
    tokens = {"tok-rw": Identity("alice", True), "tok-ro": Identity("viewer", False)}
    async with engine:
        finished = await engine.start("done")
        waiting = await engine.start("waits")
        await engine.wait(finished, timeout=5)
        app = create_app(engine, tokens=tokens)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            rw, ro = {"Authorization": "Bearer tok-rw"}, {"Authorization": "Bearer tok-ro"}
            refused = await http.delete(f"/api/runs/{finished}", headers=ro)
            assert refused.status_code == 403
            conflict = await http.delete(f"/api/runs/{waiting}", headers=rw)
            assert conflict.status_code == 409
            assert conflict.json()["error"]["type"] == "InvalidTransition"
            assert "cancel it first" in conflict.json()["error"]["message"]
            response = await http.delete(f"/api/runs/{finished}", headers=rw)
            assert response.status_code == 200 and response.json() == {"deleted": [finished]}
            again = await http.delete(f"/api/runs/{finished}", headers=rw)
            assert again.status_code == 404 and again.json()["error"]["type"] == "RunNotFound"
            bad = await http.delete("/api/runs/bad%20id", headers=rw)
            assert bad.status_code == 400


# SIGKILL in the middle of a prune --------------------------------------------------------------


def _url(dsn: str) -> str:
    """A postgresql:// URL for a libpq key=value DSN."""
    parts = psycopg.conninfo.conninfo_to_dict(dsn)
    return (
        f"postgresql://{parts.get('user', 'postgres')}@{parts['host']}:{parts['port']}/"
        f"{parts['dbname']}"
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_a_prune_killed_mid_way_leaves_every_run_whole_or_gone(
    backend: str, persistence: treadle.Persistence, tmp_path: Path
) -> None:
    made(persistence)
    total = 4000
    seed_finished(persistence, total, LONG_AGO)
    if isinstance(persistence, treadle.SQLitePersistence):
        db = f"sqlite:///{persistence.path}"
    else:
        assert isinstance(persistence, treadle.PostgresPersistence)
        db = _url(persistence.dsn)
    args = [sys.executable, "-m", "treadle", "runs", "prune", "--older-than", "30d"]
    proc = subprocess.Popen(
        [*args, "--batch-size", "5", "--db", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        left = total
        while left > total - 200:  # some batches have committed
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"the prune deleted only {total - left} runs"
            time.sleep(0.01)
            left = query(persistence, "SELECT COUNT(*) FROM runs")[0][0]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    left = query(persistence, "SELECT COUNT(*) FROM runs")[0][0]
    assert 0 < left < total  # killed in the middle
    rows = rows_by_run(persistence)
    for run_id in rows["runs"]:  # every run that is left is whole
        assert (rows["events"][run_id], rows["inbox"][run_id], rows["run_labels"][run_id]) == (
            4,
            2,
            1,
        ), run_id
    assert orphans(persistence) == {"events": 0, "inbox": 0, "run_labels": 0, "parent_id": 0}
    if isinstance(persistence, treadle.SQLitePersistence):
        assert query(persistence, "PRAGMA integrity_check") == [("ok",)]

    out = treadle_cli("runs", "prune", "--older-than", "30d", "--db", db)
    assert out.startswith(f"deleted {left} finished runs")
    assert query(persistence, "SELECT COUNT(*) FROM runs") == [(0,)]
    assert orphans(persistence) == {"events": 0, "inbox": 0, "run_labels": 0, "parent_id": 0}


APP = """
import treadle

seeded = treadle.new("seeded").step("s", lambda ctx, state: None).build()
engine = treadle.Engine(treadle.SQLitePersistence("treadle.db"), retention="30d")
engine.register(seeded)
"""


@pytest.mark.parametrize(
    ("app", "extra", "kept"),
    [("shop_app:engine", [], "30d"), ("shop_app:seeded", ["--retention", "4w"], "28d")],
)
def test_a_worker_prunes_with_the_engines_retention_or_its_own(
    tmp_path: Path, app: str, extra: list[str], kept: str
) -> None:
    (tmp_path / "shop_app.py").write_text(APP)
    persistence = treadle.SQLitePersistence(str(tmp_path / "treadle.db"))
    made(persistence)
    seed_finished(persistence, 300, LONG_AGO)
    young = seed_finished(persistence, 3, datetime.now(UTC), prefix="young")
    args = [sys.executable, "-m", "treadle", "worker", app, "--drain", "0", *extra]
    log = tmp_path / "worker.log"
    said = "retention: deleted 300 finished runs of seeded older than "
    with log.open("w") as out:  # the database: ./treadle.db, the Engine's and the default
        proc = subprocess.Popen(args, cwd=tmp_path, stderr=out, text=True)
    try:
        deadline = time.monotonic() + 30
        while said not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text()
    assert f"{said}{kept}" in log.read_text()
    assert sorted(r[0] for r in query(persistence, "SELECT id FROM runs")) == young
    assert orphans(persistence) == {"events": 0, "inbox": 0, "run_labels": 0, "parent_id": 0}
