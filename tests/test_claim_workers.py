"""A backlog queued on PostgreSQL spreads over ``treadle worker`` processes started one after
another: each claims only what its step threads can execute, so a late one still gets a share;
a worker SIGKILLed mid-backlog leaves nothing half-done (its in-flight steps run once more
elsewhere, nothing else runs twice)."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from pgserver import fresh_pg_dsn  # noqa: F401  (fixture)

import treadle
from treadle.persistence._postgres import PostgresPersistence

WORKERS = Path(__file__).parent / "workers"
sys.path.insert(0, str(WORKERS))
import backlog_app  # noqa: E402

RUNS = 60
THREADS = 4
DEADLINE = 60.0


@dataclass(frozen=True)
class Execution:
    """One execution of a step, from its ``start`` line (``ended``: it wrote its ``end``)."""

    run_id: str
    step: str
    pid: int
    at: float
    ended: bool


class Backlog:
    """The queued runs, the worker processes and what their steps recorded."""

    def __init__(self, dsn: str, tmp_path: Path) -> None:
        self.dsn = dsn
        self.effects = tmp_path / "effects.tsv"
        self.logs = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    async def queue(self) -> list[str]:
        """Store the backlog with an engine that executes none."""
        control = treadle.Engine(PostgresPersistence(self.dsn, pool_size=2), max_concurrent_runs=0)
        control.register(backlog_app.workflow)
        async with control:
            return [await control.start("backlog", {"n": n}) for n in range(RUNS)]

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start a ``treadle worker`` process with THREADS step threads."""
        path = os.pathsep.join([str(WORKERS), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": path, "BACKLOG_EFFECTS": str(self.effects)}
        cmd = [sys.executable, "-m", "treadle", "worker", "backlog_app:workflow"]
        cmd += ["--db", self.dsn, "--step-threads", str(THREADS), "--lease", "3", "--no-cron"]
        with (self.logs / f"worker{len(self.procs)}.log").open("ab") as log:
            proc = subprocess.Popen(cmd, cwd=WORKERS, env=env, stdout=log, stderr=log)
        self.procs.append(proc)
        return proc

    def executions(self) -> list[Execution]:
        """Every execution of a step so far, in order of its start."""
        if not self.effects.exists():
            return []
        ends = set()
        starts = []
        for line in self.effects.read_text().splitlines():
            run_id, step, pid, phase, at = line.split("\t")
            if phase == "end":
                ends.add((run_id, step, int(pid)))
            else:
                starts.append((run_id, step, int(pid), float(at)))
        return [
            Execution(r, s, p, at, (r, s, p) in ends)
            for r, s, p, at in sorted(starts, key=lambda t: t[3])
        ]

    def by_pid(self) -> collections.Counter[int]:
        """How many step executions each process started."""
        return collections.Counter(e.pid for e in self.executions())

    def completed(self) -> int:
        """Runs of the backlog completed in the database."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone()
        return int(row[0]) if row else 0

    def until(self, holds: Callable[[], bool], what: str) -> None:
        """Poll ``holds`` until it does, or fail with the workers' logs."""
        deadline = time.monotonic() + DEADLINE
        while not holds():
            if time.monotonic() > deadline:
                logs = "\n".join(p.read_text() for p in sorted(self.logs.glob("worker*.log")))
                pytest.fail(f"timed out waiting for {what}\n--- worker logs ---\n{logs}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM the workers still alive and reap them."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def backlog(fresh_pg_dsn: str, tmp_path: Path) -> Iterator[Backlog]:  # noqa: F811
    """A fresh database with RUNS runs of three plain steps queued, and no worker yet."""
    made = Backlog(fresh_pg_dsn, tmp_path)
    asyncio.run(made.queue())
    try:
        yield made
    finally:
        made.stop()


def _start_one_after_another(backlog: Backlog) -> list[int]:
    """Three workers, each started once the one before has begun executing."""
    pids = []
    for _ in range(3):
        pids.append(backlog.spawn().pid)
        backlog.until(lambda: pids[-1] in backlog.by_pid(), f"worker {pids[-1]} executing a step")
    return pids


@pytest.mark.timeout(120)
def test_a_backlog_spreads_over_workers_started_one_after_another(backlog: Backlog) -> None:
    pids = _start_one_after_another(backlog)
    backlog.until(lambda: backlog.completed() == RUNS, "the whole backlog completed")

    executions = backlog.executions()
    steps = collections.Counter((e.run_id, e.step) for e in executions)
    assert len(steps) == RUNS * len(backlog_app.STEPS)
    assert set(steps.values()) == {1}, "a step ran twice"
    shares = collections.Counter(e.pid for e in executions)
    assert set(shares) == set(pids)
    # The last worker starts once the first two are busy: it still gets a share, since they
    # hold only the runs their threads can execute.
    fair = len(executions) / len(pids)
    assert all(shares[pid] >= fair / 4 for pid in pids), shares


@pytest.mark.timeout(120)
def test_a_worker_killed_mid_backlog_leaves_its_runs_to_the_others(backlog: Backlog) -> None:
    pids = _start_one_after_another(backlog)
    victim = backlog.procs[1]

    def victim_busy() -> bool:
        return any(e.pid == victim.pid and not e.ended for e in backlog.executions())

    backlog.until(victim_busy, "the victim in the middle of a step")
    killed_at = time.time()
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    backlog.until(lambda: backlog.completed() == RUNS, "the backlog completed by the others")

    done: dict[tuple[str, str], list[Execution]] = collections.defaultdict(list)
    for execution in backlog.executions():
        done[(execution.run_id, execution.step)].append(execution)
    assert len(done) == RUNS * len(backlog_app.STEPS)
    again = []
    for key, runs in done.items():
        # A step runs once, but one the victim was executing when it died: once more elsewhere.
        assert len(runs) <= 2, f"{key} ran {len(runs)} times: {runs}"
        if len(runs) == 2:
            assert runs[0].pid == victim.pid and runs[0].at <= killed_at, runs
            assert runs[1].pid != victim.pid
            again.append(key)
    assert again, "no step was in flight at the kill"
    assert len(again) <= THREADS  # at most what the victim's threads were executing
    with psycopg.connect(backlog.dsn, autocommit=True) as conn:
        leased = conn.execute("SELECT count(*) FROM runs WHERE owner IS NOT NULL").fetchone()
    assert leased == (0,)  # nothing stays leased to the dead worker
    survivors = {pids[0], pids[2]}
    assert survivors <= {e.pid for e in backlog.executions() if e.at > killed_at}
