"""``treadle worker --processes N``: N worker processes on one machine, kept running.

One Python process executes steps on one core (the GIL), so a machine with more cores runs
more processes against the same database; they share the work as workers on several machines
do (each run is executed by one of them at a time). The supervisor only starts, watches and
stops them: a worker that dies (killed, out of memory) is started again after a short delay,
its runs taken over by the others without waiting for its leases to expire (the reaper of a
sibling's heartbeat, every third of the lease, or of its successor's start releases the leases of
dead processes of this host). SIGTERM or SIGINT goes to every
worker, which drains as a single worker does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger("treadle.worker")

RESTART_DELAY = 1.0
"""Seconds before a worker that died is started again; doubled while it keeps dying young."""

MAX_RESTART_DELAY = 30.0
HEALTHY_AFTER = 60.0
"""A worker that ran this long before dying is started again after the first delay."""

USER_ERROR_CODES = frozenset({1, 2})
"""Exit statuses of a worker that cannot start (a bad app, database or option): not restarted,
since a new one would fail the same way; the supervisor stops the others and exits with it."""


SUPERVISOR_ENV = "TREADLE_SUPERVISOR_PID"
"""Set in a worker process's environment to its supervisor's pid (see :func:`orphaned`)."""


@dataclass
class _Child:
    index: int
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = RESTART_DELAY
    restart_at: float | None = None
    starts: int = 0

    def spawn(self) -> None:
        env = dict(os.environ, TREADLE_WORKER_INDEX=str(self.index))
        env[SUPERVISOR_ENV] = str(os.getpid())
        self.process = subprocess.Popen(self.args, env=env)
        self.started = time.monotonic()
        self.restart_at = None
        self.starts += 1
        log.info("worker process %d started (pid %d)", self.index, self.process.pid)


def child_command(arguments: Sequence[str]) -> list[str]:
    """The command line of one worker process: ``treadle worker`` with ``arguments``, and
    ``--processes 1`` (it inherits the environment: a ``TREADLE_WORKER_PROCESSES`` there must
    not make it a supervisor too)."""
    return [sys.executable, "-m", "treadle", "worker", *arguments, "--processes", "1"]


def supervise(commands: Sequence[list[str]], drain: float) -> int:
    """Run one worker process per command until SIGTERM/SIGINT; the exit status."""
    children = [_Child(i, list(cmd)) for i, cmd in enumerate(commands)]
    stopping: list[str] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stopping:
            stopping.append(signal.Signals(signum).name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        for child in children:
            child.spawn()
        log.info("supervising %d worker processes (pid %d)", len(children), os.getpid())
        while not stopping:
            failed = _watch(children)
            if failed is not None:
                status = failed
                break
            time.sleep(0.1)
        if stopping:
            log.info("%s: stopping %d worker processes", stopping[0], len(children))
    finally:
        _stop(children, drain)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return status


def _watch(children: list[_Child]) -> int | None:
    """Start again the workers that died; a user error's exit status stops everything."""
    now = time.monotonic()
    for child in children:
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.spawn()
            continue
        assert child.process is not None
        code = child.process.poll()
        if code is None:
            continue
        if code in USER_ERROR_CODES and child.starts == 1:
            log.error("worker process %d could not start (exit status %d)", child.index, code)
            return code
        lived = now - child.started
        child.delay = RESTART_DELAY if lived >= HEALTHY_AFTER else child.delay
        child.restart_at = now + child.delay
        log.warning(
            "worker process %d (pid %d) ended with status %d after %.1fs; starting it again "
            "in %.1fs",
            child.index,
            child.process.pid,
            code,
            lived,
            child.delay,
        )
        child.delay = min(child.delay * 2, MAX_RESTART_DELAY)
    return None


def _stop(children: list[_Child], drain: float) -> None:
    """SIGTERM every worker, wait for them to drain, SIGKILL what is left after that."""
    running = [c.process for c in children if c.process is not None and c.process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + drain + 10.0
    for process in running:
        try:
            process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            log.warning("worker process pid %d did not stop; killing it", process.pid)
            process.kill()
            process.wait()


@contextlib.asynccontextmanager
async def stop_when_orphaned(stop: asyncio.Event) -> AsyncIterator[None]:
    """In a worker process of a supervisor: set ``stop`` should the supervisor die (even by
    SIGKILL, which it cannot pass on), so that no worker outlives it. Elsewhere: nothing."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if not supervisor or not supervisor.isdigit():
        yield
        return

    async def watch() -> None:
        # Nothing portable tells a process that its parent died: look twice a second.
        while os.getppid() == int(supervisor):  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        log.warning("the supervisor (pid %s) is gone: stopping", supervisor)
        stop.set()

    task = asyncio.create_task(watch())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
