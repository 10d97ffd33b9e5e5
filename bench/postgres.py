"""treadle vs DBOS Transact on PostgreSQL, one run, same server, durability on.

    python bench/postgres.py [--quick] [--out bench/results/postgres.json]

Starts a throwaway PostgreSQL server of its own (``initdb`` + ``pg_ctl`` from
``/usr/lib/postgresql/*/bin``, as the ``postgres`` user when run as root, on a free port of
127.0.0.1, trust authentication) with ``fsync=on``, ``synchronous_commit=on`` and
``full_page_writes=on`` (unlike the tests' server), and removes it at the end. Every figure
gets a fresh database of that server and runs in fresh processes; DBOS's figure, then
treadle's, figure by figure, so that the two numbers of a ratio are measured close in time:

* sequential: N three-step workflows (steps that do nothing) started and awaited one after
  another: workflows/s, p50/p99 latency;
* concurrent: M started at once, then all awaited: wall time, workflows/s;
* workers: K runs stored by a process that executes none (treadle: a control-only engine,
  ``max_concurrent_runs=0``; DBOS: ``queue.enqueue`` from a process listening to no queue),
  then 1, and on a fresh database 2, worker processes (bench/pg_worker.py; DBOS:
  ``postgres_dbos.py worker``) started together; wall time from their go signal until all K
  are completed in the database (polled every 50 ms): runs/s and the speed-up of two.

The DBOS side runs in bench/.venv-dbos (created like bench/run.py does if it is missing).
Prints a table (figure | unit | treadle | DBOS | treadle/DBOS) and writes JSON. Progress
goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.append(str(BENCH_DIR.parent))  # the treadle package, if not installed

from benchlib import (  # noqa: E402
    emit,
    ensure_dbos_venv,
    fmt,
    git_commit,
    load_average,
    log,
    number,
    part_errors,
    percentile,
    ratio,
    ratio_table,
    run_json,
    table_row,
    treadle_changes,
)

sys.path.append(str(BENCH_DIR.parent / "tests"))
from pgserver import PgServer, _bindir  # noqa: E402
from workers import drain  # noqa: E402

DEFAULT_OUT = BENCH_DIR / "results" / "postgres.json"
FULL = {"sequential": 1_000, "concurrent": 10_000, "workers": 5_000}
QUICK = {"sequential": 200, "concurrent": 2_000, "workers": 1_000}
# DBOS's queue: without a per-process limit the first worker to poll claims every queued run
# and a second process gets none; with one, each poll claims up to this many per process.
DBOS_WORKER_CONCURRENCY = 100
SERVER_SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "shared_buffers",
    "max_connections",
)

Result = dict[str, Any]


# --------------------------------------------------------------------------- the server


class BenchServer(PgServer):
    """The tests' throwaway PostgreSQL cluster, with durability on (fsync, synchronous_commit)."""

    settings = "-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=300"

    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL binaries found (/usr/lib/postgresql/*/bin, pg_ctl)")
        super().__init__(bindir)

    def create_database(self, name: str) -> str:
        """A new empty database; returns its DSN."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def read_settings(self) -> Result:
        """The server's durability-relevant settings, read back."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            return {
                name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                for name in SERVER_SETTINGS
            }


def raw_commit(dsn: str, n: int = 500) -> Result:
    """One small row per INSERT ... COMMIT (autocommit) on one connection: the fsync cost."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS raw_commit (id serial PRIMARY KEY, v text)")
        lat: list[float] = []
        for i in range(n):
            t0 = time.perf_counter()
            conn.execute("INSERT INTO raw_commit (v) VALUES (%s)", (str(i),))
            lat.append(time.perf_counter() - t0)
    return {
        "n": n,
        "mean_us": sum(lat) / n * 1e6,
        "p50_us": percentile(lat, 50) * 1e6,
        "p99_us": percentile(lat, 99) * 1e6,
    }


# --------------------------------------------------------------------------- DBOS venv


# --------------------------------------------------------------------------- subprocesses


def _count(dsn: str, sql: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def workers_figure(
    label: str,
    dsn: str,
    k: int,
    n_workers: int,
    enqueue_cmd: list[str],
    worker_cmd: Callable[[int], list[str]],
    done_sql: str,
    timeout: float,
) -> Result:
    """Store k runs with a process that executes none, start n_workers worker processes
    together, and time from their go line until all k are completed in the database."""
    enqueued = _run_part(enqueue_cmd, timeout, f"{label} store {k}")
    if enqueued.get("error"):
        return {"error": f"storing the runs: {enqueued['error']}", "store": enqueued}
    out = drain(label, k, n_workers, worker_cmd, partial(_count, dsn, done_sql), timeout)
    out["store"] = enqueued
    return out


# --------------------------------------------------------------------------- treadle parts
# Run in a child process: ``postgres.py --treadle-part NAME --dsn DSN --n N``.


async def treadle_sequential(n: int, dsn: str) -> Result:
    """n three-step runs started and awaited one after another (plain step functions)."""
    import treadle_side

    import treadle

    engine = treadle.Engine(treadle.PostgresPersistence(dsn))
    engine.register(treadle_side.three_sync())
    async with engine:
        out: Result = await treadle_side._seq_figure(engine, "three", n)
    out["how"] = "await engine.start('three') then await engine.wait(id), one after another"
    out["engine_options"] = "defaults (PostgresPersistence pool_size=4)"
    return out


async def treadle_concurrent(n: int, dsn: str) -> Result:
    """n three-step runs started at once (asyncio.gather of engine.start), then all awaited."""
    import treadle_side

    import treadle

    engine = treadle.Engine(treadle.PostgresPersistence(dsn))
    engine.register(treadle_side.three_sync())
    async with engine:
        out: Result = await treadle_side._concurrent_once(engine, "three", n)
    out["how"] = (
        "asyncio.gather(*(engine.start('three') for _ in range(n))), then asyncio.gather of "
        "engine.wait(); runs beyond max_concurrent_runs (1000) wait PENDING for room"
    )
    out["engine_options"] = "defaults (max_concurrent_runs=1000, step_threads=32, pool_size=4)"
    return out


async def treadle_store(n: int, dsn: str) -> Result:
    """Start n runs from a control-only engine (it executes none): they stay PENDING."""
    import psycopg
    import treadle_side

    import treadle

    engine = treadle.Engine(treadle.PostgresPersistence(dsn), max_concurrent_runs=0)
    engine.register(treadle_side.three_sync())
    async with engine:
        t0 = time.perf_counter()
        for base in range(0, n, 500):
            await asyncio.gather(
                *(engine.start("three", {"x": i}) for i in range(base, min(n, base + 500)))
            )
        store_s = time.perf_counter() - t0
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM runs WHERE status = 'pending'").fetchone()
    return {
        "n": n,
        "store_s": store_s,
        "pending_in_db": int(row[0]) if row else None,
        "how": "Engine(PostgresPersistence(dsn), max_concurrent_runs=0).start() n times, "
        "500 at a time with asyncio.gather",
    }


TREADLE_PARTS = {
    "sequential": treadle_sequential,
    "concurrent": treadle_concurrent,
    "store": treadle_store,
}


def treadle_child(part: str, n: int, dsn: str) -> None:
    """Child-process mode: run one treadle part and print its JSON."""
    try:
        log(f"treadle {part}: n={n}")
        result = asyncio.run(TREADLE_PARTS[part](n, dsn))
        # The working tree is what gets measured: note its state when this figure ran.
        result["treadle_git"] = {"commit": git_commit(), "uncommitted": treadle_changes()}
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        result = {"error": f"{type(e).__name__}: {e}"}
    emit(result)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# --------------------------------------------------------------------------- the run


def _guard(label: str, fn: Callable[[], Result]) -> Result:
    try:
        return fn()
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        log(f"{label}: {type(e).__name__}: {e}")
        return {"error": f"{type(e).__name__}: {e}"}


def measure(
    server: BenchServer,
    counts: dict[str, int],
    dbos_py: Path | None,
    treadle_on: bool,
    timeout: float,
    parts: tuple[str, ...] = ("sequential", "concurrent", "workers"),
    dbos_worker_concurrency: int = 100,
) -> tuple[Result, Result]:
    """Every figure, DBOS's then treadle's, each in fresh processes on a fresh database."""
    dbos: Result = {}
    tread: Result = {}
    dbos_script = str(BENCH_DIR / "postgres_dbos.py")
    me = str(Path(__file__).resolve())

    def dbos_cmd(part: str, dsn: str, *extra: str) -> list[str]:
        assert dbos_py is not None
        return [str(dbos_py), dbos_script, part, "--dsn", dsn, *extra]

    def treadle_cmd(part: str, dsn: str, n: int) -> list[str]:
        return [sys.executable, me, "--treadle-part", part, "--dsn", dsn, "--n", str(n)]

    def simple(side: str, figure: str, n: int) -> Result:
        dsn = server.create_database(f"{side}_{figure}")
        if side == "dbos":
            cmd = dbos_cmd(figure, dsn, "--n", str(n))
        else:
            cmd = treadle_cmd(figure, dsn, n)
        return _run_part(cmd, timeout, f"{side} {figure}")

    for figure in (f for f in ("sequential", "concurrent") if f in parts):
        n = counts[figure]
        if dbos_py is not None:
            dbos[figure] = _guard(f"dbos {figure}", partial(simple, "dbos", figure, n))
        if treadle_on:
            tread[figure] = _guard(f"treadle {figure}", partial(simple, "treadle", figure, n))

    k = counts["workers"]
    for w in (1, 2) if "workers" in parts else ():
        key = f"workers_{w}"
        if dbos_py is not None:

            def dbos_workers(w: int = w) -> Result:
                dsn = server.create_database(f"dbos_workers_{w}")
                return workers_figure(
                    f"dbos {w} worker(s)",
                    dsn,
                    k,
                    w,
                    dbos_cmd(
                        "enqueue",
                        dsn,
                        "--n",
                        str(k),
                        "--worker-concurrency",
                        str(dbos_worker_concurrency),
                    ),
                    lambda i: dbos_cmd(
                        "worker",
                        dsn,
                        "--n",
                        str(k),
                        "--worker-id",
                        str(i),
                        "--timeout",
                        str(timeout),
                    ),
                    "SELECT count(*) FROM dbos.workflow_status WHERE queue_name = 'bench' "
                    "AND status = 'SUCCESS'",
                    timeout,
                )

            dbos[key] = _guard(f"dbos {key}", dbos_workers)
        if treadle_on:

            def treadle_workers(w: int = w) -> Result:
                dsn = server.create_database(f"treadle_workers_{w}")
                return workers_figure(
                    f"treadle {w} worker(s)",
                    dsn,
                    k,
                    w,
                    treadle_cmd("store", dsn, k),
                    lambda i: [
                        sys.executable,
                        str(BENCH_DIR / "pg_worker.py"),
                        "--dsn",
                        dsn,
                        "--total",
                        str(k),
                        "--timeout",
                        str(timeout),
                    ],
                    "SELECT count(*) FROM runs WHERE workflow = 'three' AND status = 'completed'",
                    timeout,
                )

            tread[key] = _guard(f"treadle {key}", treadle_workers)
    return dbos, tread


# --------------------------------------------------------------------------- table


def build_table(dbos: Result, tread: Result) -> list[Result]:
    """Rows of figure | unit | treadle | DBOS | treadle/DBOS (pair by pair, same run)."""
    rows: list[Result] = []

    def row(figure: str, unit: str, better: str, t: float | None, d: float | None) -> None:
        rows.append(table_row(figure, unit, better, t, d))

    def both(*path: str) -> tuple[float | None, float | None]:
        return number(tread, *path), number(dbos, *path)

    row("sequential: workflows/s", "wf/s", "higher", *both("sequential", "workflows_per_s"))
    row("sequential: p50 latency", "ms", "lower", *both("sequential", "p50_ms"))
    row("sequential: p99 latency", "ms", "lower", *both("sequential", "p99_ms"))
    row("concurrent: wall time", "s", "lower", *both("concurrent", "wall_s"))
    row("concurrent: workflows/s", "wf/s", "higher", *both("concurrent", "workflows_per_s"))
    t1, d1 = both("workers_1", "runs_per_s")
    t2, d2 = both("workers_2", "runs_per_s")
    row("1 worker process: runs/s", "runs/s", "higher", t1, d1)
    row("2 worker processes: runs/s", "runs/s", "higher", t2, d2)
    row("speed-up, 2 vs 1 process", "x", "higher", ratio(t2, t1), ratio(d2, d1))
    return rows


def _redact(dsn: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=parts.hostname or ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="scaled-down counts for a fast check")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="where to write the JSON results")
    ap.add_argument("--skip-dbos", action="store_true")
    ap.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="BASELINE",
        help="print each figure against a stored result (bench/baseline.json) and flag moves",
    )
    ap.add_argument("--skip-treadle", action="store_true")
    ap.add_argument(
        "--part-timeout",
        type=float,
        default=None,
        help="seconds allowed per figure (default 600 quick, 1800 full)",
    )
    ap.add_argument(
        "--parts",
        default="sequential,concurrent,workers",
        help="comma-separated figures to measure (default all: sequential,concurrent,workers)",
    )
    ap.add_argument(
        "--dbos-worker-concurrency",
        type=int,
        default=DBOS_WORKER_CONCURRENCY,
        help=f"worker_concurrency of DBOS's queue (default {DBOS_WORKER_CONCURRENCY})",
    )
    # internal: child-process mode for one treadle figure
    ap.add_argument("--treadle-part", choices=sorted(TREADLE_PARTS), help=argparse.SUPPRESS)
    ap.add_argument("--dsn", default="", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.treadle_part:
        treadle_child(args.treadle_part, args.n, args.dsn)
        return

    counts = dict(QUICK if args.quick else FULL)
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    unknown = [p for p in parts if p not in ("sequential", "concurrent", "workers")]
    if unknown:
        ap.error(f"--parts: unknown {', '.join(unknown)}")
    timeout = args.part_timeout or (600.0 if args.quick else 1800.0)
    started = dt.datetime.now(dt.UTC)
    load_before = load_average()
    commit_at_start = git_commit()
    log(f"mode={'quick' if args.quick else 'full'} counts={counts}")

    dbos_py: Path | None = None
    dbos_error: str | None = None
    if not args.skip_dbos:
        try:
            dbos_py = ensure_dbos_venv()
        except Exception as e:
            dbos_error = f"DBOS venv: {type(e).__name__}: {e}"
            log(dbos_error)

    server = BenchServer()
    try:
        server.start()
        settings = server.read_settings()
        log(f"PostgreSQL on port {server.port}: {settings}")
        raw = _guard("raw commit", lambda: raw_commit(server.create_database("raw")))
        dbos, tread = measure(
            server,
            counts,
            dbos_py,
            not args.skip_treadle,
            timeout,
            parts,
            args.dbos_worker_concurrency,
        )
    finally:
        server.destroy()
    if dbos_error:
        dbos = {"error": dbos_error}

    rows = build_table(dbos, tread)
    table = ratio_table(rows)
    problems = part_errors("dbos", dbos) + part_errors("treadle", tread)
    meta: Result = {
        "started_utc": started.isoformat(),
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(),
        "mode": "quick" if args.quick else "full",
        "command": " ".join(["python", "bench/postgres.py", *sys.argv[1:]]),
        "counts": counts,
        "parts": list(parts),
        "dbos_queue_worker_concurrency": args.dbos_worker_concurrency,
        "server": settings,
        "server_dsn": _redact(server.dsn()),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "git_commit_at_start": commit_at_start,
        "git_commit_at_end": git_commit(),
        "treadle_uncommitted_changes": treadle_changes(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "ratio": "treadle / DBOS, figure by figure, both measured in this run",
    }
    result: Result = {
        "meta": meta,
        "raw_commit": raw,
        "dbos": dbos,
        "treadle": tread,
        "table": rows,
        "problems": problems,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print(table)
    print()
    print(
        f"raw PostgreSQL commit (one row per INSERT, autocommit), same server: "
        f"{fmt(number(raw, 'mean_us'))} µs mean, {fmt(number(raw, 'p50_us'))} µs p50"
    )
    print(
        "server: PostgreSQL "
        + ", ".join(f"{k}={v}" for k, v in settings.items() if k != "max_connections")
    )
    print("counts: " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    print(
        f"machine: {os.cpu_count()} cpus, {platform.platform()}, Python {sys.version.split()[0]}; "
        f"load average (1/5/15 min) before {load_before}, after {meta['load_average_after']}"
    )
    changes = meta["treadle_uncommitted_changes"]
    if commit_at_start != meta["git_commit_at_end"]:
        print(f"(the tree moved during the run: commit {commit_at_start} at the start)")
    print(
        f"treadle: commit {meta['git_commit_at_end']}"
        + (f" + uncommitted changes in {', '.join(changes)}" if changes else " (clean)")
    )
    if problems:
        print("\nnot measured / failed:")
        for p in problems:
            print(f"  {p}")
    print(f"\nJSON written to {out}")
    if args.compare is not None:
        import compare

        compare.report(rows, args.compare)


def _run_part(cmd: list[str], timeout: float, label: str) -> Result:
    return run_json(cmd, timeout, label, str(BENCH_DIR))


if __name__ == "__main__":
    main()
