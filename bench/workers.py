"""Worker processes that speak the benchmark's ready/go protocol, and a backlog drained by them.

A worker prints ``ready`` once it is set up (imports done, engine or DBOS configured), waits for
a line on stdin, works, and prints one JSON object. Starting every worker first and then telling
them all to go at once keeps the start-up of the processes out of the time measured.

Standard library only.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from benchlib import forward_stderr, last_json, log

BENCH_DIR = Path(__file__).resolve().parent
Result = dict[str, Any]


class Worker:
    """A worker process speaking the ready/go protocol: prints ``ready``, waits for a line on
    stdin, works, prints one JSON object."""

    def __init__(self, cmd: list[str], label: str) -> None:
        self.label = label
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=BENCH_DIR,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._out: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True),
            threading.Thread(target=forward_stderr, args=(self.proc.stderr, label), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._out.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"{self.label} not ready after {timeout:.0f}s") from None
            if line is None:
                raise RuntimeError(f"{self.label} exited before it was ready")
            if line.strip() == "ready":
                return

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> Result:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return {"error": f"{self.label} did not exit within {timeout:.0f}s"}
        for t in self._threads:
            t.join(timeout=10)
        return last_json("".join(self._out))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def drain(
    label: str,
    k: int,
    n_workers: int,
    worker_cmd: Callable[[int], list[str]],
    completed: Callable[[], int],
    timeout: float,
) -> Result:
    """Start ``n_workers`` workers, tell them to go together, and time from the go line until
    ``completed()`` (polled every 50 ms) reaches ``k``; runs/s and each worker's JSON."""
    log(f"{label}: starting {n_workers} worker process(es)")
    workers = [Worker(worker_cmd(i), f"{label} worker {i}") for i in range(n_workers)]
    try:
        for w in workers:
            w.wait_ready(120.0)
        t0 = time.perf_counter()
        for w in workers:
            w.go()
        deadline = time.monotonic() + timeout
        done = 0
        while time.monotonic() < deadline:
            done = completed()
            if done >= k or all(w.proc.poll() is not None for w in workers):
                break
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        per_worker = [w.result(120.0) for w in workers]
    finally:
        for w in workers:
            w.kill()
    out: Result = {
        "workers": n_workers,
        "k": k,
        "completed": done,
        "wall_s": wall,
        "runs_per_s": done / wall if wall > 0 else None,
        "per_worker": per_worker,
    }
    if done < k:
        errors = [p["error"] for p in per_worker if p.get("error")]
        out["error"] = f"only {done}/{k} completed" + (f": {errors[0]}" if errors else "")
    log(f"{label}: {done}/{k} in {wall:.1f}s")
    return out
