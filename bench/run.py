"""treadle vs DBOS Transact, one run, same machine, same durability (SQLite WAL + FULL).

    python bench/run.py [--quick] [--out bench/results/latest.json]

Creates bench/.venv-dbos (python -m venv + pip install dbos==3.4.*) if it is missing,
then measures, each figure in a fresh process:

* the raw SQLite commit cost (bench/raw_commit.py), in this interpreter;
* DBOS (bench/dbos_side.py, run by the DBOS venv's interpreter);
* treadle (bench/treadle_side.py, run by this interpreter through ``--treadle-part``).

It prints one table (figure | treadle | DBOS | treadle/DBOS) and writes JSON.
Progress goes to stderr.

The treadle side is a module ``bench/treadle_side.py`` with these coroutines, each
returning a dict with (at least) the keys listed; a missing module or function is
reported as "missing" and its figures left empty:

    async def sequential(n: int, db_path: str) -> dict
        # n three-step workflows started and awaited one after another
        # keys: n, wall_s, workflows_per_s, p50_ms, p99_ms
    async def concurrent(n: int, db_path: str) -> dict
        # n three-step workflows started at once, then all awaited
        # keys: n, wall_s, workflows_per_s
    async def step_cost(n: int, db_path: str) -> dict
        # n one-step and n eleven-step workflows run sequentially
        # keys: per_step_us = (mean 11-step latency - mean 1-step latency) / 10 in µs,
        #       one_step_mean_us, eleven_step_mean_us
    async def waiting(n: int, sample: int, db_path: str) -> dict
        # n runs parked on a signal; signal `sample` of them (spread over the n) in one
        # burst; latency = signal() call to the body of the run's next step starting
        # keys: n_parked, rss_mb (VmRSS with n parked, benchlib.rss_kib()/1024),
        #       rss_per_parked_run_bytes, signal_to_step_p50_ms, signal_to_step_p99_ms
    async def growth(stored: int, n: int, db_path: str) -> dict
        # store `stored` completed three-step runs (bulk SQL is fine), then measure
        # the per-step cost exactly as step_cost(n, ...) does
        # keys: stored_workflows, per_step_us
    async def pruning(stored: int, n: int, db_path: str) -> dict
        # `stored` completed runs that ended 60 days ago; n sequential three-step runs
        # without a pruner and with Engine(retention="30d") deleting that backlog meanwhile
        # keys: no_pruner / pruner, each as sequential's, + deleted_per_s (treadle only)
    async def pruning_concurrent(stored: int, n: int, db_path: str) -> dict  # the same, concurrent
    async def limited(n: int, db_path: str) -> dict       # a .concurrency(10) workflow, n at once
    async def rate_limited(n: int, db_path: str) -> dict  # a step with RateLimit(50 per 1s)
    async def processes(k: int, db_path: str) -> dict     # k runs drained by 1 and 2 processes
        # (in features_side.py and sqlite_worker.py; PART_MODULES says which module)

db_path is a fresh SQLite file path (nothing exists there yet); the side must open
it with journal_mode=WAL and synchronous=FULL and may add a "pragmas" key saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.append(str(BENCH_DIR.parent))  # the treadle package, if not installed

from benchlib import (  # noqa: E402
    FULL_COUNTS,
    QUICK_COUNTS,
    emit,
    ensure_dbos_venv,
    git_commit,
    load_average,
    log,
    part_errors,
    run_json,
    treadle_changes,
)
from table import build_table, format_table  # noqa: E402

DEFAULT_OUT = BENCH_DIR / "results" / "latest.json"
# DBOS's queue for the processes figure: a per-process limit, so that a second process gets a
# share (without one the first to poll claims every queued run), and a poll of 50 ms.
DBOS_WORKER_CONCURRENCY = 100
DBOS_POLL = 0.05

Result = dict[str, Any]


# --------------------------------------------------------------------------- DBOS venv


# --------------------------------------------------------------------------- subprocesses


def _run_json(cmd: list[str], timeout: float, label: str) -> Result:
    return run_json(cmd, timeout, label, str(BENCH_DIR))


PART_KEYS = (
    "sequential", "concurrent", "step_cost", "waiting", "growth_small", "growth_large", "search",
    "pruning", "pruning_concurrent", "limited", "rate_limited", "fanout", "foreach_scale",
    "processes", "backlog",
)  # fmt: skip
# The module of bench/ holding a treadle part (default treadle_side), and the parts whose
# coroutine takes (stored, n, db_path).
PART_MODULES = {
    "search": "search_side", "fanout": "loops_side", "foreach_scale": "loops_side",
    "pruning": "features_side", "pruning_concurrent": "features_side",
    "limited": "features_side", "rate_limited": "features_side", "processes": "sqlite_worker",
}  # fmt: skip
STORED_FIRST = ("growth", "search", "pruning", "pruning_concurrent")
Part = Callable[[], Result]


def dbos_parts(py: Path, counts: dict[str, int], workdir: str, timeout: float) -> dict[str, Part]:
    """The DBOS figures, each a thunk that runs it in its own process."""
    script = str(BENCH_DIR / "dbos_side.py")

    def part(name: str, *extra: str) -> Part:
        d = os.path.join(workdir, "dbos")
        cmd = [str(py), script, name, "--dir", d, *extra]
        return lambda: _run_json(cmd, timeout, f"dbos {name}")

    def features(name: str, n: int) -> Part:
        d = os.path.join(workdir, "dbos")
        cmd = [str(py), str(BENCH_DIR / "dbos_features.py"), name, "--dir", d, "--n", str(n)]
        return lambda: _run_json(cmd, timeout, f"dbos {name}")

    processes = [sys.executable, str(BENCH_DIR / "sqlite_worker.py"), "--dbos", str(py),
                 "--dir", os.path.join(workdir, "dbos"), "--total", str(counts["processes_dbos"]),
                 "--worker-concurrency", str(DBOS_WORKER_CONCURRENCY),
                 "--poll", str(DBOS_POLL)]  # fmt: skip
    n_growth = str(counts["growth_measure"])
    return {
        "pragmas": part("pragmas"),
        "sequential": part("sequential", "--n", str(counts["sequential"])),
        "concurrent": part("concurrent", "--n", str(counts["concurrent"])),
        "step_cost": part("step_cost", "--n", str(counts["step_cost"])),
        "waiting": part(
            "waiting", "--n", str(counts["waiting"]), "--sample", str(counts["waiting_sample"])
        ),
        "growth_small": part("growth", "--n", n_growth, "--stored", str(counts["growth_small"])),
        "growth_large": part("growth", "--n", n_growth, "--stored", str(counts["growth_large"])),
        "fanout": part("fanout", "--n", str(counts["fanout"])),
        "limited": features("limited", counts["limited"]),
        "rate_limited": features("rate_limited", counts["rate_limited"]),
        "processes": lambda: _run_json(processes, timeout, "dbos processes"),
    }


def treadle_parts(counts: dict[str, int], workdir: str, timeout: float) -> dict[str, Part]:
    """The treadle figures, each a thunk that runs it in its own process."""
    if not (BENCH_DIR / "treadle_side.py").exists():
        log("treadle side: bench/treadle_side.py not written yet, figures marked missing")
        missing: Result = {"missing": "bench/treadle_side.py does not exist yet"}
        return {k: (lambda: missing) for k in PART_KEYS}
    d = os.path.join(workdir, "treadle")

    def part(name: str, key: str, **kw: int) -> Part:
        cmd = [
            sys.executable,
            str(BENCH_DIR / "run.py"),
            "--treadle-part",
            name,
            "--part-dir",
            d,
            "--part-db",
            f"treadle_{key}.sqlite",
        ]
        for k, v in kw.items():
            cmd += [f"--part-{k}", str(v)]
        return lambda: _run_json(cmd, timeout, f"treadle {key}")

    return {
        "sequential": part("sequential", "sequential", n=counts["sequential"]),
        "concurrent": part("concurrent", "concurrent", n=counts["concurrent"]),
        "step_cost": part("step_cost", "step_cost", n=counts["step_cost"]),
        "waiting": part("waiting", "waiting", n=counts["waiting"], sample=counts["waiting_sample"]),
        "growth_small": part(
            "growth", "growth_small", stored=counts["growth_small"], n=counts["growth_measure"]
        ),
        "growth_large": part(
            "growth", "growth_large", stored=counts["growth_large"], n=counts["growth_measure"]
        ),
        "search": part(
            "search", "search", stored=counts["search_stored"], n=counts["search_queries"]
        ),
        "pruning": part(
            "pruning", "pruning", stored=counts["prune_backlog"], n=counts["sequential"]
        ),
        "pruning_concurrent": part(
            "pruning_concurrent",
            "pruning_concurrent",
            stored=counts["prune_backlog"],
            n=counts["concurrent"],
        ),
        "limited": part("limited", "limited", n=counts["limited"]),
        "rate_limited": part("rate_limited", "rate_limited", n=counts["rate_limited"]),
        "processes": part("processes", "processes", n=counts["processes"]),
        "fanout": part("fanout", "fanout", n=counts["fanout"]),
        "foreach_scale": part("foreach_scale", "foreach_scale", n=counts["foreach_sample"]),
        "backlog": backlog_part(counts, timeout),
    }


def backlog_part(counts: dict[str, int], timeout: float) -> Part:
    """The backlog drain on PostgreSQL by 1 and by 3 worker processes (bench/backlog.py)."""
    cmd = [sys.executable, str(BENCH_DIR / "backlog.py"), "--runs", str(counts["backlog"])]
    return lambda: _run_json(cmd, timeout, "treadle backlog")


def run_interleaved(
    dbos: dict[str, Part], treadle: dict[str, Part], only: tuple[str, ...] = PART_KEYS
) -> tuple[Result, Result]:
    """Run the figures side by side (DBOS then treadle, figure by figure), so that both
    numbers of a figure are measured close in time on a machine whose load changes."""
    out_d: Result = {}
    out_t: Result = {}
    if "pragmas" in dbos:
        out_d["pragmas"] = dbos["pragmas"]()
    for key in (k for k in PART_KEYS if k in only):
        if key in dbos:
            out_d[key] = dbos[key]()
        if key in treadle:
            out_t[key] = treadle[key]()
    return out_d, out_t


def treadle_child(args: argparse.Namespace) -> None:
    """Child-process mode: run one treadle part and print its JSON."""
    try:
        try:
            side = PART_MODULES.get(args.treadle_part, "treadle_side")
            mod = importlib.import_module(side)
        except ImportError as e:
            emit({"missing": f"cannot import bench/treadle_side.py: {e}"})
            return
        fn = getattr(mod, args.treadle_part, None)
        if fn is None:
            emit({"missing": f"treadle_side.{args.treadle_part} is not defined"})
            return
        os.makedirs(args.part_dir, exist_ok=True)
        db = os.path.join(args.part_dir, args.part_db)
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        n, sample, stored = args.part_n, args.part_sample, args.part_stored
        if args.treadle_part == "waiting":
            result = asyncio.run(fn(n, sample, db))
        elif args.treadle_part in STORED_FIRST:
            result = asyncio.run(fn(stored, n, db))
        else:
            result = asyncio.run(fn(n, db))
        out = dict(result)
        out["treadle_git"] = {"commit": git_commit(), "uncommitted": treadle_changes()}
        emit(out)
    except Exception as e:
        import traceback

        traceback.print_exc(file=sys.stderr)
        emit({"error": f"{type(e).__name__}: {e}"})
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # parked runs / background threads must not keep the child alive


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="scaled-down counts for a fast check")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="where to write the JSON results")
    ap.add_argument("--workdir", default=None, help="where the SQLite files go (default: tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the SQLite files afterwards")
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
        help="seconds allowed per figure (default 900 quick, 7200 full)",
    )
    ap.add_argument(
        "--parts",
        default=",".join(PART_KEYS),
        help=f"comma-separated figures to measure (default all: {','.join(PART_KEYS)})",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=N",
        help="override one count, e.g. --set waiting=20000 (keys as in the counts line)",
    )
    # internal: child-process mode for one treadle figure
    ap.add_argument("--treadle-part", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--part-dir", default="", help=argparse.SUPPRESS)
    ap.add_argument("--part-db", default="", help=argparse.SUPPRESS)
    ap.add_argument("--part-n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--part-sample", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--part-stored", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.treadle_part:
        treadle_child(args)
        return

    counts = dict(QUICK_COUNTS if args.quick else FULL_COUNTS)
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in counts or not value.replace("_", "").isdigit():
            ap.error(f"--set {item!r}: expected KEY=N with KEY one of {', '.join(counts)}")
        counts[key] = int(value)
    only = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    unknown = [p for p in only if p not in PART_KEYS]
    if unknown:
        ap.error(f"--parts: unknown {', '.join(unknown)}; known: {', '.join(PART_KEYS)}")
    timeout = args.part_timeout or (900.0 if args.quick else 7200.0)
    workdir = args.workdir or tempfile.mkdtemp(prefix="treadle-bench-")
    os.makedirs(workdir, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    load_before = load_average()
    commit = git_commit()
    changed = treadle_changes()
    log(f"mode={'quick' if args.quick else 'full'} workdir={workdir}")

    import raw_commit

    log("raw commit baseline")
    try:
        raw: Result = raw_commit.measure(2000, os.path.join(workdir, "raw"))
    except Exception as e:
        raw = {"error": f"{type(e).__name__}: {e}"}

    dbos_thunks: dict[str, Part] = {}
    dbos_error: Result | None = None
    if not args.skip_dbos:
        try:
            py = ensure_dbos_venv()
            dbos_thunks = dbos_parts(py, counts, workdir, timeout)
        except Exception as e:
            log(f"DBOS side failed: {e}")
            dbos_error = {"error": f"{type(e).__name__}: {e}"}
    treadle_thunks: dict[str, Part] = {}
    if not args.skip_treadle:
        treadle_thunks = treadle_parts(counts, workdir, timeout)
    dbos, treadle = run_interleaved(dbos_thunks, treadle_thunks, only)
    if dbos_error is not None:
        dbos = dbos_error

    rows = build_table(raw, dbos, treadle)
    table = format_table(rows, raw, counts)
    problems = part_errors("dbos", dbos) + part_errors("treadle", treadle)

    result: Result = {
        "meta": {
            "started_utc": started.isoformat(),
            "finished_utc": dt.datetime.now(dt.UTC).isoformat(),
            "mode": "quick" if args.quick else "full",
            "parts": list(only),
            "counts": counts,
            "durability": {"journal_mode": "wal", "synchronous": "FULL"},
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
            },
            "git_commit": commit,
            "treadle_uncommitted_changes": changed,
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "ratio": "treadle / DBOS, figure by figure, both measured in this run",
        },
        "raw_commit": raw,
        "dbos": dbos,
        "treadle": treadle,
        "table": rows,
        "problems": problems,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    meta = result["meta"]
    print(table)
    print(
        f"machine: {os.cpu_count()} cpus, {platform.platform()}, Python {sys.version.split()[0]}; "
        f"load average (1/5/15 min) before {meta['load_average_before']}, "
        f"after {meta['load_average_after']}"
    )
    print(
        f"treadle: commit {meta['git_commit']}"
        + (f" + uncommitted changes in {', '.join(changed)}" if changed else " (clean)")
    )
    if problems:
        print("\nnot measured / failed:")
        for p in problems:
            print(f"  {p}")
    print(f"\nJSON written to {out}")
    if args.compare is not None:
        import compare

        compare.report(rows, args.compare)
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
