"""Several executing processes on one SQLite file: a backlog drained by 1 and by 2 processes.

    python bench/run.py --parts processes          # both sides, via run.py
    python bench/sqlite_worker.py --worker --db PATH --total K   # one worker (internal)

The figure (``processes(k, db_path)``, run by ``run.py --treadle-part processes``): on a fresh
file each time, ``k`` runs of the benchmark's three-step workflow are stored by an engine that
executes none (``max_concurrent_runs=0``); then 1 (and on a fresh file 2) worker processes are
started, each an engine with the engine's defaults on that file (as ``treadle worker
--processes N`` runs N of them), told to go together, and timed until all ``k`` are completed
in the file (a ``count(*)`` every 50 ms). The engines share the file's one writer lock and
claim PENDING runs with leases.

DBOS (``dbos_side_processes``, run by run.py with DBOS's interpreter as the children): ``k``
workflows enqueued by a process that listens to no queue, then 1 or 2 ``dbos_features.py
worker`` processes, each with its own ``executor_id``, on the queue ``bench``
(``worker_concurrency``, ``polling_interval_sec``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import time
import traceback
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.append(str(BENCH_DIR.parent))  # the treadle package, if not installed

from benchlib import emit, fresh_path, log, run_json  # noqa: E402
from workers import drain  # noqa: E402

Result = dict[str, Any]
WORKFLOW = "three"
TIMEOUT = 900.0
DBOS_DONE = "SELECT count(*) FROM workflow_status WHERE queue_name = 'bench' AND status = 'SUCCESS'"


def count(db: str, sql: str, *params: str) -> int:
    """One count from the file, read-only."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute(sql, params).fetchone()[0])
    finally:
        conn.close()


def completed(db: str) -> int:
    """Runs of the benchmark's workflow completed in the file (every engine's)."""
    return count(db, "SELECT count(*) FROM runs WHERE workflow = ? AND status = 'completed'",
                 WORKFLOW)  # fmt: skip


async def store(db: str, k: int) -> float:
    """Store k PENDING runs with an engine that executes none; seconds it took."""
    from treadle_side import three_sync

    import treadle

    engine = treadle.Engine(treadle.SQLitePersistence(db), max_concurrent_runs=0)
    engine.register(three_sync())
    t0 = time.perf_counter()
    async with engine:
        for base in range(0, k, 1000):
            await asyncio.gather(
                *(engine.start(WORKFLOW, {"x": i}) for i in range(base, min(k, base + 1000)))
            )
    return time.perf_counter() - t0


async def work(db: str, total: int) -> Result:
    """Worker mode: ready, wait for the go line, execute until ``total`` runs are completed."""
    from treadle_side import three_sync

    import treadle

    engine = treadle.Engine(treadle.SQLitePersistence(db))
    engine.register(three_sync())
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    async with engine:
        while await asyncio.to_thread(completed, db) < total:  # noqa: ASYNC110 (polling the file)
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
    executed = engine.metrics.runs_finished[(WORKFLOW, "completed")]
    cpu = time.process_time() - cpu0
    stats = engine.persistence.commit_stats  # type: ignore[attr-defined]
    batches = sum(stats.sizes.counts)
    return {
        "elapsed_s": elapsed,
        "executed_here": executed,
        "cpu_s": cpu,
        "cpu_ms_per_run": cpu / executed * 1e3 if executed else None,
        # The group commit: batches, transactions per batch, and the seconds from BEGIN
        # (waiting for the write lock included) to COMMIT returning, summed.
        "commit_batches": batches,
        "transactions_per_batch": stats.sizes.sum / batches if batches else None,
        "commit_s": stats.seconds.sum,
    }


def _speedup(out: Result) -> Result:
    one, two = out.get("p1", {}).get("runs_per_s"), out.get("p2", {}).get("runs_per_s")
    out["speedup_2"] = two / one if one and two else None
    return out


async def processes(k: int, db_path: str) -> Result:
    """treadle: k stored runs drained by 1, then (fresh file) by 2 engine processes."""
    out: Result = {"k": k, "engine_options": "defaults (one engine per process)"}
    me = str(BENCH_DIR / "sqlite_worker.py")
    for n in (1, 2):
        db = fresh_path(f"{db_path}-{n}")
        stored_s = await store(db, k)
        log(f"treadle processes: {k} runs stored in {stored_s:.1f}s, {n} process(es)")

        def cmd(i: int, db: str = db) -> list[str]:
            return [sys.executable, me, "--worker", "--db", db, "--total", str(k)]

        figure = await asyncio.to_thread(
            drain, f"treadle {n} process(es)", k, n, cmd, lambda db=db: completed(db), TIMEOUT
        )
        figure["store_s"] = stored_s
        out[f"p{n}"] = figure
    return _speedup(out)


def dbos_processes(py: str, k: int, workdir: str, concurrency: int, poll: float) -> Result:
    """DBOS: k enqueued workflows drained by 1, then (fresh file) by 2 queue workers."""
    script = str(BENCH_DIR / "dbos_features.py")
    queue = ["--worker-concurrency", str(concurrency), "--poll", str(poll)]
    out: Result = {"k": k, "worker_concurrency": concurrency, "polling_interval_sec": poll}
    os.makedirs(workdir, exist_ok=True)
    for n in (1, 2):
        db = fresh_path(os.path.join(workdir, f"dbos_processes_{n}.sqlite"))
        stored = run_json([py, script, "enqueue", "--db", db, "--n", str(k), *queue], TIMEOUT,
                          f"dbos store {k}", str(BENCH_DIR))  # fmt: skip
        if stored.get("error"):
            out[f"p{n}"] = {"error": f"storing: {stored['error']}"}
            continue

        def cmd(i: int, db: str = db) -> list[str]:
            return [py, script, "worker", "--db", db, "--n", str(k), "--worker-id", str(i),
                    *queue]  # fmt: skip

        figure = drain(f"dbos {n} process(es)", k, n, cmd, lambda db=db: count(db, DBOS_DONE),
                       TIMEOUT)  # fmt: skip
        figure["store"] = stored
        out[f"p{n}"] = figure
    return _speedup(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--worker", action="store_true", help="run one treadle worker")
    ap.add_argument("--db", default="")
    ap.add_argument("--total", type=int, default=0)
    ap.add_argument("--dbos", default="", help="DBOS side: that venv's python")
    ap.add_argument("--dir", default="", help="DBOS side: where the files go")
    ap.add_argument("--worker-concurrency", type=int, default=100)
    ap.add_argument("--poll", type=float, default=1.0)
    args = ap.parse_args()
    try:
        if args.worker:
            result = asyncio.run(work(args.db, args.total))
        else:
            result = dbos_processes(args.dbos, args.total, args.dir, args.worker_concurrency,
                                    args.poll)  # fmt: skip
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        result = {"error": f"{type(e).__name__}: {e}"}
    emit(result)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
