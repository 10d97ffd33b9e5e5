"""DBOS Transact side of the PostgreSQL benchmark (bench/postgres.py).

Runs inside bench/.venv-dbos, one figure per process:

    python bench/postgres_dbos.py PART --dsn postgresql://... [--n N] [--worker-id I]

and prints one JSON object on stdout (progress and DBOS's own logs go to stderr).
PART is one of:

* ``sequential``: n three-step workflows, ``DBOS.start_workflow(wf).get_result()`` one after
  another (20 warm-up runs first);
* ``concurrent``: ``DBOS.start_workflow()`` called n times in a loop (each runs on DBOS's
  executor), then ``get_result()`` on every handle;
* ``enqueue``: a process that listens to no queue (``DBOS.listen_queues([])``) registers the
  queue ``bench`` (``worker_concurrency``, DBOS's default polling interval of 1 s) and
  enqueues n workflows on it, from 16 threads;
* ``worker``: a queue worker (its own ``executor_id``). It prints ``ready`` once DBOS is
  configured, waits for a line on stdin, then ``DBOS.launch()``es and dequeues from ``bench``
  until ``--n`` workflows of the queue have succeeded (counted in ``dbos.workflow_status``).

The system database is PostgreSQL (``system_database_url``), in the database the DSN names;
the durability settings are the server's (bench/postgres.py starts it with ``fsync=on`` and
``synchronous_commit=on``); DBOS's own engine options are its defaults (a SQLAlchemy pool of
20 connections, LISTEN/NOTIFY on).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from typing import Any

import psycopg
from dbos import DBOS

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import emit, log, percentile
from dbos_workflows import three_steps

APP_NAME = "treadle-bench-pg"
QUEUE = "bench"
WARMUP = 20


def _launch(dsn: str, *, executor_id: str | None = None, listen: list[str] | None = None) -> None:
    _configure(dsn, executor_id=executor_id, listen=listen)
    DBOS.launch()


def _configure(
    dsn: str, *, executor_id: str | None = None, listen: list[str] | None = None
) -> None:
    config: Any = {"name": APP_NAME, "system_database_url": dsn, "log_level": "WARNING"}
    if executor_id is not None:
        config["executor_id"] = executor_id
    DBOS(config=config)
    if listen is not None:
        DBOS.listen_queues(listen)


def _run_seq(n: int, base: int = 0) -> list[float]:
    lat: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        DBOS.start_workflow(three_steps, base + i).get_result()
        lat.append(time.perf_counter() - t0)
    return lat


def _count_success(dsn: str, queue: str | None = None) -> int:
    sql = "SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS'"
    params: tuple[Any, ...] = ()
    if queue is not None:
        sql += " AND queue_name = %s"
        params = (queue,)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def part_sequential(args: argparse.Namespace) -> dict[str, Any]:
    _launch(args.dsn)
    _run_seq(min(WARMUP, args.n), base=-WARMUP)
    t0 = time.perf_counter()
    lat = _run_seq(args.n)
    wall = time.perf_counter() - t0
    DBOS.destroy()
    return {
        "n": len(lat),
        "wall_s": wall,
        "workflows_per_s": len(lat) / wall,
        "p50_ms": percentile(lat, 50) * 1e3,
        "p99_ms": percentile(lat, 99) * 1e3,
        "mean_ms": sum(lat) / len(lat) * 1e3,
        "how": "DBOS.start_workflow(three_steps).get_result(), one after another (sync)",
    }


def part_concurrent(args: argparse.Namespace) -> dict[str, Any]:
    _launch(args.dsn)
    _run_seq(WARMUP, base=-WARMUP)
    n = args.n
    t0 = time.perf_counter()
    handles = [DBOS.start_workflow(three_steps, i) for i in range(n)]
    t_started = time.perf_counter() - t0
    for h in handles:
        h.get_result()
    wall = time.perf_counter() - t0
    DBOS.destroy()
    return {
        "n": n,
        "wall_s": wall,
        "start_all_s": t_started,
        "workflows_per_s": n / wall,
        "how": "DBOS.start_workflow() called n times in a loop (each runs on DBOS's "
        "executor), then get_result() on every handle",
    }


def part_enqueue(args: argparse.Namespace) -> dict[str, Any]:
    _launch(args.dsn, executor_id="control", listen=[])
    queue = DBOS.register_queue(QUEUE, worker_concurrency=args.worker_concurrency)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda i: queue.enqueue(three_steps, i).workflow_id, range(args.n)))
    enqueue_s = time.perf_counter() - t0
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM dbos.workflow_status WHERE queue_name = %s AND status = "
            "'ENQUEUED'",
            (QUEUE,),
        ).fetchone()
    DBOS.destroy()
    return {
        "n": len(ids),
        "enqueue_s": enqueue_s,
        "enqueued_in_db": int(row[0]) if row else None,
        "queue": QUEUE,
        "worker_concurrency": args.worker_concurrency,
        "polling_interval_s": 1.0,
        "how": "DBOS.register_queue('bench', worker_concurrency=...) in a process listening "
        "to no queue, then queue.enqueue(three_steps, i) n times from 16 threads",
    }


def part_worker(args: argparse.Namespace) -> dict[str, Any]:
    executor_id = f"worker-{args.worker_id}"
    _configure(args.dsn, executor_id=executor_id, listen=[QUEUE])
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    DBOS.launch()
    launched_s = time.perf_counter() - t0
    deadline = time.monotonic() + args.timeout
    done = 0
    while time.monotonic() < deadline:
        done = _count_success(args.dsn, QUEUE)
        if done >= args.n:
            break
        time.sleep(0.1)
    elapsed = time.perf_counter() - t0
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM dbos.workflow_status WHERE queue_name = %s AND "
            "executor_id = %s AND status = 'SUCCESS'",
            (QUEUE, executor_id),
        ).fetchone()
    DBOS.destroy()
    return {
        "executor_id": executor_id,
        "elapsed_s": elapsed,
        "launch_s": launched_s,
        "finished_total": done,
        "executed_here": int(row[0]) if row else None,
    }


PARTS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "sequential": part_sequential,
    "concurrent": part_concurrent,
    "enqueue": part_enqueue,
    "worker": part_worker,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=sorted(PARTS))
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--worker-id", type=int, default=0)
    ap.add_argument("--worker-concurrency", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    try:
        log(f"dbos {args.part}: n={args.n}")
        result = PARTS[args.part](args)
        result["dbos_version"] = version("dbos")
        result["sqlalchemy_version"] = version("sqlalchemy")
        result["psycopg_version"] = version("psycopg")
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        result = {"error": f"{type(e).__name__}: {e}"}
    emit(result)
    sys.stderr.flush()
    os._exit(0)  # DBOS background threads must not keep the process alive


if __name__ == "__main__":
    main()
