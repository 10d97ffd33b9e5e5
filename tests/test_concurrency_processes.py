"""Concurrency limits across processes: several workers on PostgreSQL, two on one SQLite file,
one of them SIGKILLed mid-way. The limit is never exceeded (every step records its start and
end; the maximum overlap per key is checked), no slot leaks (no holder is left at the end) and
every run completes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from pgserver import fresh_pg_dsn  # noqa: F401  (fixture)

import treadle

WORKER = Path(__file__).parent / "workers" / "limits_worker.py"
sys.path.insert(0, str(WORKER.parent))
import limits_worker  # noqa: E402

RUNS = 36
TENANTS = ("t-1", "t-2", "t-3")


def _spawn(url: str, effects: Path, host: str) -> subprocess.Popen[str]:
    log = (effects.parent / f"{host}.log").open("w")
    process = subprocess.Popen(
        [sys.executable, str(WORKER), url, str(effects), host, "--lease", "2"],
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


def _lines(effects: Path) -> list[list[str]]:
    return [line.split("\t") for line in effects.read_text().splitlines() if line.count("\t") == 5]


def _open_in(effects: Path, pid: int) -> bool:
    """Whether worker ``pid`` is inside a run right now (a step started, the run not done)."""
    started, done = set(), set()
    for run_id, _, step, phase, who, _ in _lines(effects):
        if int(who) == pid:
            started.add(run_id)
            if step == "done" and phase == "end":
                done.add(run_id)
    return bool(started - done)


def _max_overlap(effects: Path, killed: int, killed_at: float) -> dict[str, int]:
    """Per key, the most runs executing at one moment: each (run, process) spans from its first
    line to its last, and the killed process's unfinished ones to the moment of the kill."""
    spans: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    finished: set[tuple[str, int]] = set()
    for run_id, key, step, phase, who, at in _lines(effects):
        spans[(key, run_id, int(who))].append(float(at))
        if step == "done" and phase == "end":
            finished.add((run_id, int(who)))
    edges: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for (key, run_id, pid), times in spans.items():
        end = max(times)
        if pid == killed and (run_id, pid) not in finished:
            end = killed_at
        edges[key] += [(min(times), 1), (end, -1)]
    most: dict[str, int] = {}
    for key, points in edges.items():
        level = peak = 0
        for _, step in sorted(points, key=lambda p: (p[0], p[1])):  # an end before a start
            level += step
            peak = max(peak, level)
        most[key] = peak
    return most


async def _run_with_a_kill(url: str, effects: Path, hosts: int) -> None:
    workers = [_spawn(url, effects, f"w{n}") for n in range(hosts)]
    control = treadle.Engine(treadle.persistence_from_url(url), max_concurrent_runs=0)
    control.register(limits_worker.build_workflow(str(effects)))
    try:
        async with control:
            ids = [
                await control.start(limits_worker.WORKFLOW, {"tenant": TENANTS[n % 3]})
                for n in range(RUNS)
            ]
            deadline = time.monotonic() + 30
            while not (busy := [w for w in workers if _open_in(effects, w.pid)]):
                assert time.monotonic() < deadline, "no worker executed a run"
                await asyncio.sleep(0.01)
            victim = busy[-1]
            victim.send_signal(signal.SIGKILL)
            killed_at = time.time()
            victim.wait(5)
            states = [await control.wait(run_id, timeout=90) for run_id in ids]
            assert {s.status for s in states} == {treadle.Status.COMPLETED}
            assert await control.limits() == []
        executed = {int(line[4]) for line in _lines(effects)}
        assert len(executed) >= 2  # the limit was shared by several processes
        overlap = _max_overlap(effects, victim.pid, killed_at)
        assert set(overlap) == set(TENANTS)
        assert max(overlap.values()) <= limits_worker.LIMIT, overlap
        assert max(overlap.values()) == limits_worker.LIMIT, overlap  # the limit was used
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(10)


@pytest.mark.timeout(150)
async def test_three_postgres_workers_never_exceed_the_limit_and_leak_no_slot(
    fresh_pg_dsn: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    await _run_with_a_kill(fresh_pg_dsn, tmp_path / "effects.tsv", hosts=3)


@pytest.mark.timeout(150)
async def test_two_processes_on_one_sqlite_file_never_exceed_the_limit_and_leak_no_slot(
    tmp_path: Path,
) -> None:
    await _run_with_a_kill(f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "effects.tsv", hosts=2)
