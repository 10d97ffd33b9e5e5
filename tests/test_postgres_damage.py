"""Damage test: three worker processes share one PostgreSQL database; one is SIGKILLed mid-way.

Every run completes; no step whose checkpoint committed runs again; each step that was in
flight at the kill runs at most once more; the takeover time (kill -> the dead worker's runs
going on elsewhere, which waits for their 2 s leases to expire) is measured and printed.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgserver import fresh_pg_dsn  # noqa: F401  (fixture)
from psycopg.rows import dict_row

import treadle
from treadle.persistence._postgres import PostgresPersistence

RUNS = 200
LEASE = 2.0
WORKER = Path(__file__).parent / "workers" / "pg_worker.py"
sys.path.insert(0, str(WORKER.parent))
import pg_worker  # noqa: E402


def _spawn(dsn: str, effects: Path, host: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = (effects.parent / f"{host}.log").open("w")
    process = subprocess.Popen(
        [sys.executable, str(WORKER), dsn, str(effects), host, "--lease", str(LEASE)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    log.close()
    assert line.startswith("ready"), f"worker {host} did not start: {line!r}"
    return process


def _query(dsn: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


async def _start_runs(dsn: str, effects: Path) -> list[str]:
    client = treadle.Engine(PostgresPersistence(dsn, pool_size=2), max_concurrent_runs=0)
    client.register(pg_worker.build_workflow(str(effects)))
    async with client:
        return [await client.start(pg_worker.WORKFLOW, {"n": n}) for n in range(RUNS)]


@pytest.mark.timeout(180)
def test_killed_worker_runs_are_taken_over_without_double_steps(
    fresh_pg_dsn: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dsn = fresh_pg_dsn
    effects = tmp_path / "effects.tsv"
    effects.touch()
    workers = {f"w{n}": _spawn(dsn, effects, f"w{n}") for n in range(3)}
    try:
        ids = asyncio.run(_start_runs(dsn, effects))

        victim = "w1"
        deadline = time.monotonic() + 60
        while True:  # kill once the victim is busy and a good part of the work is left
            rows = _query(
                dsn,
                "SELECT count(*) FILTER (WHERE owner LIKE %s) AS mine,"
                " count(*) FILTER (WHERE status = 'completed') AS done FROM runs",
                f"{victim}:%",
            )
            if rows[0]["mine"] >= 5 and rows[0]["done"] >= 10:
                break
            assert time.monotonic() < deadline, f"the victim never got work: {rows}"
            time.sleep(0.02)
        killed_at = time.time()
        os.kill(workers[victim].pid, signal.SIGKILL)
        workers[victim].wait()
        victim_pid = workers[victim].pid
        orphans = {
            r["id"] for r in _query(dsn, "SELECT id FROM runs WHERE owner LIKE %s", f"{victim}:%")
        }
        done_at_kill = _query(dsn, "SELECT count(*) AS n FROM runs WHERE status = 'completed'")

        deadline = time.monotonic() + 90
        while True:
            rows = _query(dsn, "SELECT status, count(*) AS n FROM runs GROUP BY status")
            counts = {r["status"]: r["n"] for r in rows}
            if counts.get("completed", 0) == RUNS:
                break
            assert time.monotonic() < deadline, f"runs did not all complete: {counts}"
            time.sleep(0.1)
        finished_at = time.time()
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in workers.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    # Every execution of a step, in order of its start.
    executions: dict[tuple[str, str], list[tuple[int, float]]] = collections.defaultdict(list)
    for line in effects.read_text().splitlines():
        run_id, step, pid, at = line.split("\t")
        executions[(run_id, step)].append((int(pid), float(at)))
    finals = {r["id"]: r for r in _query(dsn, "SELECT id, data, status FROM runs")}
    assert set(finals) == set(ids)

    rerun: list[tuple[str, str]] = []
    takeover: dict[str, float] = {}
    for run_id in ids:
        data = json.loads(finals[run_id]["data"])
        assert finals[run_id]["status"] == "completed"
        for step in pg_worker.STEPS:
            done = executions[(run_id, step)]
            committed_pid = data[step]
            assert done, f"{run_id}/{step} never ran"
            # The execution whose checkpoint committed is the last one: a completed step never
            # runs again.
            assert done[-1][0] == committed_pid, f"{run_id}/{step} ran after completing: {done}"
            # At most one lost execution, by the killed worker, and then exactly one more.
            assert len(done) <= 2, f"{run_id}/{step} ran {len(done)} times: {done}"
            if len(done) == 2:
                assert done[0][0] == victim_pid and done[0][1] <= killed_at, done
                rerun.append((run_id, step))
            if run_id in orphans and committed_pid != victim_pid:
                first = min(at for pid, at in done if pid != victim_pid)
                takeover[run_id] = min(takeover.get(run_id, first), first)
    assert rerun, "no step was in flight at the kill: the test killed too late or too early"
    assert all(run_id in orphans for run_id, _ in rerun)
    assert set(takeover) == orphans
    delays = sorted(at - killed_at for at in takeover.values())
    assert delays[-1] < LEASE + 5.0
    with capsys.disabled():
        print(
            f"\n[damage] {RUNS} runs x {len(pg_worker.STEPS)} steps on 3 workers; killed "
            f"{victim} with {len(orphans)} runs leased ({done_at_kill[0]['n']} runs done by then); "
            f"{len(rerun)} in-flight steps ran once more; takeover after the kill (lease "
            f"{LEASE:.0f}s): first {delays[0]:.2f}s, median {statistics.median(delays):.2f}s, "
            f"last {delays[-1]:.2f}s; all done {finished_at - killed_at:.1f}s after the kill"
        )
