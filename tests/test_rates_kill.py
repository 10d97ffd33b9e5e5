"""Damage test of rate limits: worker processes share one limiter through one database (three on
PostgreSQL, two on one SQLite file); one is SIGKILLed while calls go on. Every run completes,
no window of the limiter's period holds more calls than it allows, and no call is left reserved
(the limiter is free again once the runs are done)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pgserver import fresh_pg_dsn  # noqa: F401  (fixture)
from ratekit import check_calls

import treadle
from treadle import Status

WORKER = Path(__file__).parent / "workers" / "rate_worker.py"
LIMIT = treadle.RateLimit("partner", 10, per="1s")
RUNS = 24
DEADLINE = 60.0


def _spawn(db: str, calls: Path, host: str) -> subprocess.Popen[str]:
    log = (calls.parent / f"{host}.log").open("w")
    process = subprocess.Popen(
        [sys.executable, str(WORKER), db, str(calls), host, "--lease", "2", "--limit", "10"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    log.close()
    assert line.startswith("ready"), f"worker {host} did not start: {line!r}"
    return process


def _calls(path: Path) -> list[tuple[str, int, float, int]]:
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    return [(run_id, int(attempt), float(at), int(pid)) for run_id, attempt, at, pid in rows]


async def _until(what: str, predicate: object) -> None:
    deadline = time.monotonic() + DEADLINE
    while not await predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _kill_one_while_calling(db: str, tmp_path: Path, workers: int) -> None:
    calls = tmp_path / "calls.tsv"
    calls.touch()
    procs = [_spawn(db, calls, f"w{n}") for n in range(workers)]
    client = treadle.Client(treadle.persistence_from_url(db))
    try:
        async with client:
            ids = [await client.start("rated", {"fail": n % 4 == 0}) for n in range(RUNS)]

            async def victim_calls() -> bool:  # the one to kill is calling
                return sum(pid == procs[1].pid for *_, pid in _calls(calls)) >= 2

            await _until("the first calls of the worker to kill", victim_calls)
            procs[1].send_signal(signal.SIGKILL)
            procs[1].wait(5)

            async def all_done() -> bool:
                states = [await client.status(run_id) for run_id in ids]
                return all(s.status.finished for s in states)

            await _until("every run's end", all_done)
            for run_id in ids:
                state = await client.status(run_id)
                assert state.status is Status.COMPLETED, (run_id, state.error)
            made = _calls(calls)
            check_calls([at for _, _, at, _ in made], LIMIT)
            assert any(pid == procs[1].pid for *_, pid in made)  # it was calling when killed
            for n, run_id in enumerate(ids):
                attempts = {a for r, a, _, _ in made if r == run_id}
                assert attempts == ({1, 2} if n % 4 == 0 else {1}), (run_id, attempts)
            (state,) = await client.persistence.rate_limits()
            assert state.waiting == 0
            # Nothing stays reserved: the next call may go within one interval of now.
            assert (state.next_free - state.now).total_seconds() <= LIMIT.interval
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.mark.timeout(120)
async def test_three_workers_on_postgres_keep_the_limit_when_one_is_killed(
    fresh_pg_dsn: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    await _kill_one_while_calling(fresh_pg_dsn, tmp_path, 3)


@pytest.mark.timeout(120)
async def test_two_workers_on_one_sqlite_file_keep_the_limit_when_one_is_killed(
    tmp_path: Path,
) -> None:
    await _kill_one_while_calling(str(tmp_path / "rates.db"), tmp_path, 2)
