"""DBOS Transact side of the feature and process figures (run in bench/.venv-dbos).

    python bench/dbos_features.py PART --db PATH [--n N] [--worker-id I]

PART is one of:

* ``limited``: n three-step workflows enqueued on ``DBOS.register_queue("limited",
  global_concurrency=10, polling_interval_sec=0.05)`` (DBOS's equivalent of treadle's
  ``.concurrency(10)``), then every handle awaited;
* ``rate_limited``: n three-step workflows enqueued on a queue with ``limiter={"limit": 50,
  "period": 1}`` (DBOS limits the starts of a queue's workflows, treadle the calls of a step);
  the rate of the middle steps and the busiest second;
* ``enqueue``: a process that listens to no queue stores n workflows on the queue ``bench``
  (``worker_concurrency``, ``polling_interval_sec``);
* ``worker``: a queue worker with its own ``executor_id``: prints ``ready`` once configured,
  waits for a line on stdin, launches and dequeues until n workflows of the queue succeeded.

SQLite with WAL and ``synchronous=FULL`` as in dbos_side.py. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from dbos import DBOS

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import JOURNAL_MODE, SYNCHRONOUS, busiest_second, emit, fresh_path, log
from dbos_side import _install_pragmas, _read_pragmas
from dbos_workflows import noop_step, three_steps

APP_NAME = "treadle-bench-features"
POLL_S = 0.05  # DBOS's default queue poll is 1 s
LIMIT = 10
RATE = 50
QUEUE = "bench"

_lock = threading.Lock()
_active = 0
_most = 0
CALLS: list[float] = []


@DBOS.step()
def enter_step() -> None:
    """First step: one more workflow executing."""
    global _active, _most
    with _lock:
        _active += 1
        _most = max(_most, _active)


@DBOS.step()
def leave_step() -> None:
    """Last step: one workflow fewer executing."""
    global _active
    with _lock:
        _active -= 1


@DBOS.workflow()
def counted_three(x: int) -> int:
    """Three steps that count the workflows between the first and the last."""
    enter_step()
    noop_step(x)
    leave_step()
    return x


@DBOS.step()
def call_step() -> None:
    """The middle step of a rate-limited workflow: note when it ran."""
    CALLS.append(time.perf_counter())


@DBOS.workflow()
def rated(x: int) -> int:
    """Three steps; the middle one notes its time."""
    noop_step(x)
    call_step()
    noop_step(x)
    return x


def _configure(db: str, *, executor_id: str | None = None, listen: list[str] | None = None) -> Any:
    _install_pragmas(JOURNAL_MODE, SYNCHRONOUS)
    config: Any = {"name": APP_NAME, "system_database_url": f"sqlite:///{db}",
                   "log_level": "WARNING"}  # fmt: skip
    if executor_id is not None:
        config["executor_id"] = executor_id
    DBOS(config=config)
    if listen is not None:
        DBOS.listen_queues(listen)


def _enqueue_all(queue: Any, fn: Callable[[int], int], n: int) -> tuple[float, float]:
    """Enqueue n workflows, await every handle: (wall seconds, CPU seconds)."""
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    handles = [queue.enqueue(fn, i) for i in range(n)]
    for h in handles:
        h.get_result()
    return time.perf_counter() - t0, time.process_time() - cpu0


def part_limited(args: argparse.Namespace) -> dict[str, Any]:
    _configure(fresh_path(os.path.join(args.dir, "dbos_limited.sqlite")))
    DBOS.launch()
    queue = DBOS.register_queue("limited", global_concurrency=LIMIT, polling_interval_sec=POLL_S)
    pragmas = _read_pragmas()
    _enqueue_all(queue, counted_three, 20)  # warm-up
    global _most
    _most = 0
    wall, cpu = _enqueue_all(queue, counted_three, args.n)
    DBOS.destroy()
    return {
        "n": args.n,
        "wall_s": wall,
        "workflows_per_s": args.n / wall,
        "cpu_ms_per_run": cpu / args.n * 1e3,
        "most_at_once": _most,
        "pragmas": pragmas,
        "how": f"DBOS.register_queue('limited', global_concurrency={LIMIT}, "
        f"polling_interval_sec={POLL_S}); queue.enqueue(three steps) n times, then "
        "get_result() on every handle",
    }


def part_rate_limited(args: argparse.Namespace) -> dict[str, Any]:
    _configure(fresh_path(os.path.join(args.dir, "dbos_rated.sqlite")))
    limiter: Any = {"limit": RATE, "period": 1.0}
    DBOS.launch()
    queue = DBOS.register_queue("rated", limiter=limiter, polling_interval_sec=POLL_S)
    pragmas = _read_pragmas()
    wall, cpu = _enqueue_all(queue, rated, args.n)
    DBOS.destroy()
    span = max(CALLS) - min(CALLS)
    return {
        "n": args.n,
        "rate": RATE,
        "wall_s": wall,
        "calls_per_s": (len(CALLS) - 1) / span if span > 0 else None,
        "most_in_1s": busiest_second(CALLS),
        "cpu_ms_per_run": cpu / args.n * 1e3,
        "pragmas": pragmas,
        "how": f"DBOS.register_queue('rated', limiter={{'limit': {RATE}, 'period': 1}}, "
        f"polling_interval_sec={POLL_S}); n three-step workflows enqueued, every handle "
        "awaited; calls/s = (calls - 1) / (last middle step - first)",
    }


def _register_bench_queue(args: argparse.Namespace) -> Any:
    return DBOS.register_queue(
        QUEUE, worker_concurrency=args.worker_concurrency, polling_interval_sec=args.poll
    )


def part_enqueue(args: argparse.Namespace) -> dict[str, Any]:
    _configure(args.db, listen=[])
    DBOS.launch()
    queue = _register_bench_queue(args)
    t0 = time.perf_counter()
    for i in range(args.n):
        queue.enqueue(three_steps, i)
    stored_s = time.perf_counter() - t0
    DBOS.destroy()
    return {"n": args.n, "store_s": stored_s}


def _succeeded(db: str, executor_id: str | None = None) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        sql = "SELECT count(*) FROM workflow_status WHERE queue_name = ? AND status = 'SUCCESS'"
        params: tuple[str, ...] = (QUEUE,)
        if executor_id is not None:
            sql += " AND executor_id = ?"
            params += (executor_id,)
        return int(conn.execute(sql, params).fetchone()[0])
    finally:
        conn.close()


def part_worker(args: argparse.Namespace) -> dict[str, Any]:
    executor_id = f"worker-{args.worker_id}"
    _configure(args.db, executor_id=executor_id, listen=[QUEUE])  # registered by enqueue
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    DBOS.launch()
    deadline = time.monotonic() + args.timeout
    done = 0
    while time.monotonic() < deadline:
        done = _succeeded(args.db)
        if done >= args.n:
            break
        time.sleep(0.1)
    elapsed = time.perf_counter() - t0
    here = _succeeded(args.db, executor_id)
    DBOS.destroy()
    return {"executor_id": executor_id, "elapsed_s": elapsed, "executed_here": here}


PARTS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "limited": part_limited,
    "rate_limited": part_rate_limited,
    "enqueue": part_enqueue,
    "worker": part_worker,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=sorted(PARTS))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--dir", default=".")
    ap.add_argument("--db", default="")
    ap.add_argument("--worker-id", type=int, default=0)
    ap.add_argument("--worker-concurrency", type=int, default=100)
    ap.add_argument("--poll", type=float, default=1.0, help="the bench queue's polling interval")
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    os.makedirs(args.dir, exist_ok=True)
    try:
        log(f"dbos {args.part}: n={args.n}")
        result = PARTS[args.part](args)
        result["dbos_version"] = version("dbos")
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        result = {"error": f"{type(e).__name__}: {e}"}
    emit(result)
    sys.stderr.flush()
    os._exit(0)  # DBOS background threads must not keep the process alive


if __name__ == "__main__":
    main()
