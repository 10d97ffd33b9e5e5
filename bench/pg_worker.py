"""A treadle worker process for the "one vs two worker processes" figure of bench/postgres.py.

    python bench/pg_worker.py --dsn postgresql://... --total K [--timeout S]

Builds an engine on ``treadle.PostgresPersistence(dsn)`` with the benchmark's three-step
workflow registered (engine defaults: ``max_concurrent_runs=1000``, ``step_threads=32``),
prints ``ready``, waits for a line on stdin, then opens the engine (which claims the PENDING
runs with leases and ``FOR UPDATE SKIP LOCKED``, as any number of engines sharing the
database do) and runs until ``K`` runs of the workflow are completed in the database, counting
those of every worker. Prints one JSON object: elapsed seconds (from the go line), how many
runs this process executed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psycopg
from benchlib import emit
from treadle_side import three_sync

import treadle


def count_completed(dsn: str, workflow: str = "three") -> int:
    """Runs of ``workflow`` completed in the database (all engines)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM runs WHERE workflow = %s AND status = 'completed'", (workflow,)
        ).fetchone()
    return int(row[0]) if row else 0


async def work(dsn: str, total: int, timeout: float) -> dict[str, Any]:
    """Open an engine after the go line, run until ``total`` runs are completed."""
    workflow = three_sync()
    engine = treadle.Engine(treadle.PostgresPersistence(dsn))
    engine.register(workflow)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    t0 = time.perf_counter()
    done = 0
    async with engine:
        opened_s = time.perf_counter() - t0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = await asyncio.to_thread(count_completed, dsn, workflow.name)
            if done >= total:
                break
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - t0
        executed = engine.metrics.runs_finished[(workflow.name, "completed")]
    return {
        "owner": engine.owner,
        "elapsed_s": elapsed,
        "open_s": opened_s,
        "finished_total": done,
        "executed_here": executed,
        "engine_options": {
            "max_concurrent_runs": engine.max_concurrent_runs,
            "step_threads": engine.step_threads,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--total", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args()
    try:
        result = asyncio.run(work(args.dsn, args.total, args.timeout))
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        result = {"error": f"{type(e).__name__}: {e}"}
    emit(result)
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
