"""The harness of the SIGKILL recovery tests: worker processes (tests/workers/core_worker.py) run
workflows on a SQLite file and record every side effect in a file; a :class:`treadle.Client` in
the test process reads and signals the runs."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import treadle
from treadle import Status

WORKER = Path(__file__).parent / "workers" / "core_worker.py"
DEADLINE = 15.0


@dataclass(frozen=True)
class Effect:
    """One line of the side-effect file."""

    run_id: str
    step: str
    phase: str
    attempt: int
    key: str


class Harness:
    """Starts and kills worker processes; reads their side effects and the runs' states."""

    def __init__(self, tmp_path: Path, client: treadle.Client) -> None:
        self.db = tmp_path / "runs.db"
        self.effects_path = tmp_path / "effects.log"
        self.log_path = tmp_path / "worker.log"
        self.client = client
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        self,
        *,
        start: tuple[str, ...] = (),
        block: tuple[str, ...] = (),
        sync: bool = False,
        codec: bool = False,
    ) -> None:
        """Start a worker process (the previous one must be dead); ``sync``: on a SyncEngine;
        ``codec``: storing through tests/sample_codec.py."""
        args = [sys.executable, str(WORKER), str(self.db), str(self.effects_path)]
        if sync:
            args.append("--sync")
        if codec:
            args.append("--codec")
        for spec in start:
            args += ["--start", spec]
        for name in block:
            args += ["--block", name]
        with self.log_path.open("ab") as log:
            self.procs.append(subprocess.Popen(args, stdout=log, stderr=log))

    async def ready(self) -> None:
        """Wait until the current worker has opened (its definitions are stored then)."""
        await self.until(lambda: b"ready" in self.log_path.read_bytes(), "the worker is ready")

    def kill(self) -> None:
        """SIGKILL the current worker and reap it."""
        proc = self.procs[-1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)

    def effects(self, run_id: str | None = None) -> list[Effect]:
        """The side effects so far (of one run)."""
        if not self.effects_path.exists():
            return []
        out = []
        for line in self.effects_path.read_text().splitlines():
            rid, step, phase, attempt, key = line.split("\t")
            if run_id is None or rid == run_id:
                out.append(Effect(rid, step, phase, int(attempt), key))
        return out

    def count(self, run_id: str, step: str, phase: str = "do") -> int:
        """How often ``step`` had its side effect in ``run_id``."""
        return sum(1 for e in self.effects(run_id) if e.step == step and e.phase == phase)

    def counts(self, run_id: str) -> dict[tuple[str, str], int]:
        """Every (step, phase) of the run with its count."""
        out: dict[tuple[str, str], int] = {}
        for e in self.effects(run_id):
            out[(e.step, e.phase)] = out.get((e.step, e.phase), 0) + 1
        return out

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        """Poll ``predicate`` (reading files) until it holds, or fail with the worker's log."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while not predicate():
            if loop.time() > deadline:
                self.fail(f"timed out waiting for {what}")
            if self.procs and self.procs[-1].poll() is not None:
                self.fail(f"the worker exited ({self.procs[-1].returncode}) before {what}")
            await asyncio.sleep(0.02)

    async def until_state(
        self, run_id: str, predicate: Callable[[treadle.State], bool], what: str
    ) -> treadle.State:
        """Poll the run's stored state until ``predicate`` holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while True:
            try:
                state = await self.client.status(run_id)
            except treadle.RunNotFound:
                state = None
            if state is not None and predicate(state):
                return state
            if loop.time() > deadline:
                self.fail(f"timed out waiting for {what}; last state {state}")
            if self.procs and self.procs[-1].poll() is not None:
                self.fail(f"the worker exited ({self.procs[-1].returncode}) before {what}")
            await asyncio.sleep(0.02)

    async def finished(self, run_id: str) -> treadle.State:
        """Wait for the run's end."""
        return await self.until_state(run_id, lambda s: s.status.finished, f"end of {run_id}")

    async def waiting(self, run_id: str, wait: str) -> treadle.State:
        """Wait until the run waits for ``wait``."""
        return await self.until_state(
            run_id,
            lambda s: s.status is Status.WAITING and wait in s.waiting_for,
            f"{run_id} waiting for {wait}",
        )

    def fail(self, message: str) -> None:
        log = self.log_path.read_text() if self.log_path.exists() else ""
        pytest.fail(f"{message}\n--- effects ---\n{self.effects()}\n--- worker log ---\n{log}")


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """A harness with a client (no step code here: it only starts, reads and signals)."""
    client = treadle.Client(treadle.SQLitePersistence(str(tmp_path / "runs.db")))
    await client.open()
    h = Harness(tmp_path, client)
    try:
        yield h
    finally:
        for proc in h.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        await client.close(drain=0.5)
