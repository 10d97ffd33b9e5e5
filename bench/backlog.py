"""Backlog drain on PostgreSQL: a queued backlog, drained by 1 and then by 3 worker processes.

    python bench/backlog.py [--runs 96] [--seconds 0.5] [--threads 32]

Starts a throwaway PostgreSQL server (as bench/postgres.py does, durability on). For 1 and
then 3 workers, on a fresh database each time: stores ``runs`` runs of three plain steps that
``time.sleep(seconds)`` with an engine that executes none, starts the worker processes (this
script with ``--worker``: an ``Engine(step_threads=threads)`` on the database, as ``treadle worker
--step-threads`` makes), sends them the go line together, and times from it until every run is
completed in the database (polled every 50 ms). Prints one JSON object: per worker count the
drain time and how many runs each worker executed, and the speed-up of three.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.append(str(BENCH_DIR.parent))  # the treadle package, if not installed

from benchlib import emit, log  # noqa: E402

import treadle  # noqa: E402

Result = dict[str, Any]
WORKFLOW = "backlog"


def backlog_workflow(seconds: float) -> treadle.Workflow:
    """Three plain steps that sleep ``seconds`` each."""

    def nap(ctx: treadle.Context, state: treadle.State) -> None:
        time.sleep(seconds)

    return treadle.new(WORKFLOW).step("a", nap).step("b", nap).step("c", nap).build()


async def store(dsn: str, runs: int, seconds: float) -> None:
    """Queue ``runs`` PENDING runs with an engine that executes none."""
    engine = treadle.Engine(treadle.PostgresPersistence(dsn), max_concurrent_runs=0)
    engine.register(backlog_workflow(seconds))
    async with engine:
        await asyncio.gather(*(engine.start(WORKFLOW, {"n": i}) for i in range(runs)))


async def work(dsn: str, total: int, seconds: float, threads: int) -> Result:
    """Worker mode: ready, wait for the go line, execute until ``total`` runs are completed."""
    from pg_worker import count_completed

    engine = treadle.Engine(treadle.PostgresPersistence(dsn), step_threads=threads)
    engine.register(backlog_workflow(seconds))
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    t0 = time.perf_counter()
    async with engine:
        while True:  # (polling the database: the runs of every worker count)
            if await asyncio.to_thread(count_completed, dsn, WORKFLOW) >= total:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
    return {
        "elapsed_s": elapsed,
        "executed_here": engine.metrics.runs_finished[(WORKFLOW, "completed")],
    }


def drain(dsn: str, runs: int, seconds: float, threads: int, workers: int) -> Result:
    """Queue the backlog, start ``workers`` processes together, time until all completed."""
    from pg_worker import count_completed
    from workers import Worker

    asyncio.run(store(dsn, runs, seconds))
    me = str(Path(__file__).resolve())
    cmd = [sys.executable, me, "--worker", "--dsn", dsn, "--runs", str(runs)]
    cmd += ["--seconds", str(seconds), "--threads", str(threads)]
    procs = [Worker(cmd, f"backlog worker {i}") for i in range(workers)]
    try:
        for proc in procs:
            proc.wait_ready(120.0)
        t0 = time.perf_counter()
        for proc in procs:
            proc.go()
        deadline = time.monotonic() + 600
        while count_completed(dsn, WORKFLOW) < runs and time.monotonic() < deadline:
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        per_worker = [proc.result(120.0) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    return {
        "workers": workers,
        "wall_s": wall,
        "executed_per_worker": [p.get("executed_here") for p in per_worker],
    }


def measure(runs: int, seconds: float, threads: int) -> Result:
    """The drain time with 1 and with 3 workers, each on a fresh database of one server."""
    from postgres import BenchServer

    server = BenchServer()
    server.start()
    try:
        out: Result = {"runs": runs, "step_seconds": seconds, "step_threads": threads}
        for workers in (1, 3):
            log(f"backlog: {runs} runs x 3 steps of {seconds}s, {workers} worker(s)")
            dsn = server.create_database(f"backlog_{workers}")
            out[f"workers_{workers}"] = drain(dsn, runs, seconds, threads, workers)
        one, three = out["workers_1"]["wall_s"], out["workers_3"]["wall_s"]
        out["speedup_3"] = one / three if three else None
        out["ideal_s"] = {w: runs * 3 * seconds / (threads * w) for w in (1, 3)}
        return out
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=96)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dsn", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    try:
        if args.worker:
            result = asyncio.run(work(args.dsn, args.runs, args.seconds, args.threads))
        else:
            result = measure(args.runs, args.seconds, args.threads)
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        result = {"error": f"{type(e).__name__}: {e}"}
    emit(result)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
