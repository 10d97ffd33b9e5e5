"""DBOS Transact side of the benchmark.

Runs inside bench/.venv-dbos (created by run.py), one figure per process:

    python bench/dbos_side.py PART --n N --dir DIR [--stored M] [--sample K]

and prints one JSON object on stdout (progress and DBOS's own logs go to stderr).
PART is one of: pragmas, sequential, concurrent, step_cost, waiting, growth.

Durability: DBOS 3.4 opens its SQLite system database with only
``busy_timeout=30000`` and ``foreign_keys=ON`` (and IMMEDIATE transactions); it
sets neither ``journal_mode`` nor ``synchronous``, so out of the box it runs in
rollback-journal mode (``journal_mode=delete``) with SQLite's compiled default
``synchronous=FULL``. To measure it with the same durability as treadle we add a
SQLAlchemy ``connect`` listener on every engine that sets ``journal_mode=WAL``
and ``synchronous=FULL``, and report the PRAGMAs read back through DBOS's own
engine. The ``pragmas`` part reports DBOS's defaults and the settings used.
"""

from __future__ import annotations

import argparse
import asyncio
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

import sqlalchemy as sa
from dbos import DBOS

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (
    JOURNAL_MODE,
    SYNCHRONOUS,
    emit,
    fresh_path,
    log,
    percentile,
    rss_kib,
)
from dbos_workflows import noop_step, three_steps

APP_NAME = "treadle-bench"

# --------------------------------------------------------------------------- workflows


@DBOS.workflow()
def one_step(x: int) -> int:
    noop_step(x)
    return x


@DBOS.workflow()
def eleven_steps(x: int) -> int:
    for _ in range(11):
        noop_step(x)
    return x


# Waiting: async workflows, so that N parked runs are N coroutines, not N threads.
PARKED_ENTERED = 0
STEP_STARTED: dict[str, float] = {}
STEP_STARTED_LOCK = threading.Lock()


@DBOS.step()
async def after_signal_step() -> None:
    now = time.perf_counter()
    wid = DBOS.workflow_id
    if wid is not None:
        with STEP_STARTED_LOCK:
            STEP_STARTED[wid] = now


@DBOS.workflow()
async def parked(x: int) -> int:
    global PARKED_ENTERED
    PARKED_ENTERED += 1
    await DBOS.recv_async("go", timeout_seconds=24 * 3600)
    await after_signal_step()
    return x


# Fan-out: a workflow enqueuing n no-op steps on a queue with concurrency 50 (DBOS's closest
# equivalent of a parallel map with max=50), registered once DBOS is launched.
FANOUT_POLL_S = 0.05  # DBOS's default queue poll is 1 s: up to a second per batch of 50


@DBOS.workflow()
def fan_out(n: int) -> int:
    """Enqueue n no-op steps on the fan-out queue and wait for every result, in order."""
    queue = DBOS.retrieve_queue("fanout")
    handles = [queue.enqueue(noop_step, i) for i in range(n)]
    return sum(h.get_result() for h in handles)


# --------------------------------------------------------------------------- setup


_PRAGMAS_INSTALLED = False


def _install_pragmas(journal_mode: str, synchronous: str) -> None:
    """Set journal_mode and synchronous on every SQLite connection DBOS opens."""

    global _PRAGMAS_INSTALLED
    if _PRAGMAS_INSTALLED:
        return
    _PRAGMAS_INSTALLED = True

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        if isinstance(dbapi_conn, sqlite3.Connection):
            dbapi_conn.execute(f"PRAGMA journal_mode={journal_mode}")
            dbapi_conn.execute(f"PRAGMA synchronous={synchronous}")

    sa.event.listen(sa.engine.Engine, "connect", on_connect)


def _read_pragmas() -> dict[str, Any]:
    from dbos._dbos import _get_dbos_instance

    engine = _get_dbos_instance()._sys_db.engine
    with engine.connect() as conn:
        jm = conn.execute(sa.text("PRAGMA journal_mode")).scalar()
        sy = conn.execute(sa.text("PRAGMA synchronous")).scalar()
        bt = conn.execute(sa.text("PRAGMA busy_timeout")).scalar()
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return {
        "journal_mode": jm,
        "synchronous": names.get(int(sy or 0), sy),
        "busy_timeout_ms": bt,
        "pool": type(engine.pool).__name__,
    }


def _launch(db_path: str, *, set_pragmas: bool = True) -> dict[str, Any]:
    if set_pragmas:
        _install_pragmas(JOURNAL_MODE, SYNCHRONOUS)
    config: Any = {
        "name": APP_NAME,
        "system_database_url": f"sqlite:///{db_path}",
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    return _read_pragmas()


def _run_seq(fn: Callable[[int], int], n: int) -> list[float]:
    """Start and await n workflows one after another; latencies in seconds."""
    lat: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        DBOS.start_workflow(fn, i).get_result()
        lat.append(time.perf_counter() - t0)
    return lat


def _lat_summary(lat: list[float], wall: float) -> dict[str, Any]:
    return {
        "n": len(lat),
        "wall_s": wall,
        "workflows_per_s": len(lat) / wall if wall > 0 else None,
        "p50_ms": percentile(lat, 50) * 1e3,
        "p99_ms": percentile(lat, 99) * 1e3,
        "mean_ms": sum(lat) / len(lat) * 1e3,
    }


def _step_cost(n: int) -> dict[str, Any]:
    """Marginal cost of one step: (mean 11-step workflow - mean 1-step workflow) / 10."""
    _run_seq(one_step, min(20, n))  # warm-up
    one = _run_seq(one_step, n)
    eleven = _run_seq(eleven_steps, n)
    m1 = sum(one) / len(one)
    m11 = sum(eleven) / len(eleven)
    return {
        "n": n,
        "one_step_mean_us": m1 * 1e6,
        "eleven_step_mean_us": m11 * 1e6,
        "per_step_us": (m11 - m1) / 10 * 1e6,
        "per_step_p50_us": (percentile(eleven, 50) - percentile(one, 50)) / 10 * 1e6,
    }


# --------------------------------------------------------------------------- parts


def part_pragmas(args: argparse.Namespace) -> dict[str, Any]:
    default_db = fresh_path(os.path.join(args.dir, "dbos_default.sqlite"))
    default = _launch(default_db, set_pragmas=False)
    DBOS.destroy()
    return {"dbos_default": default}


def part_sequential(args: argparse.Namespace) -> dict[str, Any]:
    db = fresh_path(os.path.join(args.dir, "dbos_sequential.sqlite"))
    pragmas = _launch(db)
    _run_seq(three_steps, min(20, args.n))  # warm-up, not counted
    t0 = time.perf_counter()
    lat = _run_seq(three_steps, args.n)
    wall = time.perf_counter() - t0
    out = _lat_summary(lat, wall)
    out["pragmas"] = pragmas
    out["how"] = "DBOS.start_workflow(three_steps).get_result(), one after another (sync)"
    DBOS.destroy()
    return out


def part_concurrent(args: argparse.Namespace) -> dict[str, Any]:
    db = fresh_path(os.path.join(args.dir, "dbos_concurrent.sqlite"))
    pragmas = _launch(db)
    _run_seq(three_steps, 20)  # warm-up
    t0 = time.perf_counter()
    handles = [DBOS.start_workflow(three_steps, i) for i in range(args.n)]
    t_started = time.perf_counter() - t0
    for h in handles:
        h.get_result()
    wall = time.perf_counter() - t0
    DBOS.destroy()
    return {
        "n": args.n,
        "wall_s": wall,
        "start_all_s": t_started,
        "workflows_per_s": args.n / wall,
        "pragmas": pragmas,
        "how": "DBOS.start_workflow() called n times in a loop (each runs on DBOS's "
        "unbounded executor thread pool), then get_result() on every handle",
    }


def part_step_cost(args: argparse.Namespace) -> dict[str, Any]:
    db = fresh_path(os.path.join(args.dir, "dbos_step_cost.sqlite"))
    pragmas = _launch(db)
    out = _step_cost(args.n)
    out["pragmas"] = pragmas
    DBOS.destroy()
    return out


def _prepopulate(db: str, stored: int) -> dict[str, Any]:
    """Store `stored` completed three-step runs: run one real workflow, then copy its
    rows (workflow_status, workflow_input, workflow_output, operation_outputs) by
    bulk SQL with new workflow ids. Done with DBOS shut down."""
    t0 = time.perf_counter()
    template = "bench-template"
    from dbos import SetWorkflowID

    with SetWorkflowID(template):
        three_steps(0)
    DBOS.destroy()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA journal_mode={JOURNAL_MODE}")
    conn.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
    tables = [
        t
        for (t,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name IN "
            "('workflow_status','workflow_input','workflow_output','operation_outputs')"
        )
    ]
    batch = 50_000
    done = 0
    while done < stored:
        k = min(batch, stored - done)
        with conn:
            for table in tables:
                cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
                sel = ", ".join(
                    "printf('pre-%09d', s.n)" if c == "workflow_uuid" else f't."{c}"' for c in cols
                )
                collist = ", ".join(f'"{c}"' for c in cols)
                conn.execute(
                    f"WITH RECURSIVE s(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM s "
                    f"WHERE n + 1 < ?) "
                    f'INSERT INTO "{table}" ({collist}) SELECT {sel} '
                    f'FROM s, "{table}" t WHERE t.workflow_uuid = ?',
                    (done, done + k, template),
                )
        done += k
        log(f"dbos growth: stored {done}/{stored}")
    count = conn.execute("SELECT count(*) FROM workflow_status").fetchone()[0]
    steps = conn.execute("SELECT count(*) FROM operation_outputs").fetchone()[0]
    conn.close()
    return {
        "stored_workflows": count,
        "stored_step_rows": steps,
        "populate_s": time.perf_counter() - t0,
        "how": "bulk SQL copies of one real completed three-step run's rows",
    }


def part_growth(args: argparse.Namespace) -> dict[str, Any]:
    db = fresh_path(os.path.join(args.dir, f"dbos_growth_{args.stored}.sqlite"))
    _launch(db)
    populated = _prepopulate(db, args.stored)
    pragmas = _launch(db)
    out = _step_cost(args.n)
    t0 = time.perf_counter()
    lat = _run_seq(three_steps, args.n)
    seq = _lat_summary(lat, time.perf_counter() - t0)
    DBOS.destroy()
    out.update(populated)
    out["sequential_three_step"] = seq
    out["pragmas"] = pragmas
    out["db_size_mb"] = os.path.getsize(db) / 1e6
    return out


async def _waiting(args: argparse.Namespace) -> dict[str, Any]:
    from dbos._dbos import _get_dbos_instance

    db = fresh_path(os.path.join(args.dir, "dbos_waiting.sqlite"))
    pragmas = _launch(db)
    sys_db = _get_dbos_instance()._sys_db
    rss_before = rss_kib()
    n = args.n
    t0 = time.perf_counter()
    ids: list[str] = []
    chunk = 500
    for base in range(0, n, chunk):
        hs = await asyncio.gather(
            *(DBOS.start_workflow_async(parked, i) for i in range(base, min(n, base + chunk)))
        )
        ids.extend(h.workflow_id for h in hs)
        if (base // chunk) % 20 == 0:
            log(f"dbos waiting: started {len(ids)}/{n}")

    def registered() -> int:
        return len(sys_db.notifications_map.snapshot())

    deadline = time.monotonic() + max(600.0, n / 50)
    # DBOS exposes no event for "recv registered"; poll its in-memory waiter map.
    while registered() < n and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    park_s = time.perf_counter() - t0
    parked_now = registered()
    log(f"dbos waiting: {parked_now} parked in {park_s:.1f}s")
    await asyncio.sleep(1.0)
    rss_parked = rss_kib()

    # Signal a sample, spread evenly over the parked runs, in one burst.
    k = min(args.sample, n)
    step = max(1, n // k)
    sample = ids[::step][:k]
    sent: dict[str, float] = {}
    for wid in sample:
        sent[wid] = time.perf_counter()
        await DBOS.send_async(wid, "go", "go")
    deadline = time.monotonic() + 600.0
    while time.monotonic() < deadline:
        with STEP_STARTED_LOCK:
            got = sum(1 for w in sample if w in STEP_STARTED)
        if got >= len(sample):
            break
        await asyncio.sleep(0.01)
    with STEP_STARTED_LOCK:
        lat = [STEP_STARTED[w] - sent[w] for w in sample if w in STEP_STARTED]
    return {
        "n_parked": n,
        "parked_registered": parked_now,
        "park_all_s": park_s,
        "rss_before_kib": rss_before,
        "rss_parked_kib": rss_parked,
        "rss_mb": rss_parked / 1024,
        "rss_per_parked_run_bytes": (rss_parked - rss_before) * 1024 / max(1, n),
        "signal_sample": len(sample),
        "signal_delivered": len(lat),
        "signal_to_step_p50_ms": percentile(lat, 50) * 1e3 if lat else None,
        "signal_to_step_p99_ms": percentile(lat, 99) * 1e3 if lat else None,
        "signal_to_step_max_ms": max(lat) * 1e3 if lat else None,
        "pragmas": pragmas,
        "notification_listener_polling_interval_s": getattr(
            sys_db, "_notification_listener_polling_interval_sec", None
        ),
        "how": "async workflows parked on DBOS.recv_async(); DBOS.send_async() to a sample "
        "spread over them, sent in one burst; latency = send() start to the next "
        "step's body starting",
    }


def part_waiting(args: argparse.Namespace) -> dict[str, Any]:
    return asyncio.run(_waiting(args))


def part_fanout(args: argparse.Namespace) -> dict[str, Any]:
    db = fresh_path(os.path.join(args.dir, "dbos_fanout.sqlite"))
    pragmas = _launch(db)
    DBOS.register_queue("fanout", worker_concurrency=50, polling_interval_sec=FANOUT_POLL_S)
    DBOS.start_workflow(fan_out, 50).get_result()  # warm-up
    t0 = time.perf_counter()
    total = DBOS.start_workflow(fan_out, args.n).get_result()
    wall = time.perf_counter() - t0
    DBOS.destroy()
    assert total == sum(range(args.n))
    return {
        "n": args.n,
        "max": 50,
        "wall_s": wall,
        "iterations_per_s": args.n / wall,
        "per_iteration_us": wall / args.n * 1e6,
        "pragmas": pragmas,
        "how": "one workflow enqueuing n no-op steps on DBOS.register_queue('fanout', "
        f"worker_concurrency=50, polling_interval_sec={FANOUT_POLL_S}) (each runs as a "
        "workflow of its own), then get_result() on every handle in order",
    }


PARTS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "fanout": part_fanout,
    "pragmas": part_pragmas,
    "sequential": part_sequential,
    "concurrent": part_concurrent,
    "step_cost": part_step_cost,
    "waiting": part_waiting,
    "growth": part_growth,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=sorted(PARTS))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--stored", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=1000)
    args = ap.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    os.makedirs(args.dir, exist_ok=True)
    try:
        result = PARTS[args.part](args)
        result["dbos_version"] = version("dbos")
        result["sqlalchemy_version"] = version("sqlalchemy")
        result["sqlite_version"] = sqlite3.sqlite_version
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        result = {"error": f"{type(e).__name__}: {e}"}
    emit(result)
    sys.stderr.flush()
    # DBOS background threads (and parked runs) must not keep the process alive.
    os._exit(0)


if __name__ == "__main__":
    main()
