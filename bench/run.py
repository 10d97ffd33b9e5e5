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
    fmt,
    git_commit,
    load_average,
    log,
    number,
    part_errors,
    ratio,
    ratio_table,
    run_json,
    table_row,
    treadle_changes,
)

DEFAULT_OUT = BENCH_DIR / "results" / "latest.json"

Result = dict[str, Any]


# --------------------------------------------------------------------------- DBOS venv


# --------------------------------------------------------------------------- subprocesses


def _run_json(cmd: list[str], timeout: float, label: str) -> Result:
    return run_json(cmd, timeout, label, str(BENCH_DIR))


PART_KEYS = (
    "sequential", "concurrent", "step_cost", "waiting", "growth_small", "growth_large", "search",
    "pruning", "fanout", "foreach_scale", "backlog",
)  # fmt: skip
Part = Callable[[], Result]


def dbos_parts(py: Path, counts: dict[str, int], workdir: str, timeout: float) -> dict[str, Part]:
    """The DBOS figures, each a thunk that runs it in its own process."""
    script = str(BENCH_DIR / "dbos_side.py")

    def part(name: str, *extra: str) -> Part:
        d = os.path.join(workdir, "dbos")
        cmd = [str(py), script, name, "--dir", d, *extra]
        return lambda: _run_json(cmd, timeout, f"dbos {name}")

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
            side = "search_side" if args.treadle_part == "search" else "treadle_side"
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
        elif args.treadle_part in ("growth", "search", "pruning"):
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


# --------------------------------------------------------------------------- table


def build_table(raw: Result, dbos: Result, treadle: Result) -> list[Result]:
    """Rows of figure | unit | treadle | DBOS | treadle/DBOS (pair by pair)."""
    full_us = number(raw, "one_row_full", "mean_us")
    rows: list[Result] = []

    def row(figure: str, unit: str, better: str, t: float | None, d: float | None) -> None:
        rows.append(table_row(figure, unit, better, t, d))

    row(
        "sequential: workflows/s",
        "wf/s",
        "higher",
        number(treadle, "sequential", "workflows_per_s"),
        number(dbos, "sequential", "workflows_per_s"),
    )
    row(
        "sequential: p50 latency",
        "ms",
        "lower",
        number(treadle, "sequential", "p50_ms"),
        number(dbos, "sequential", "p50_ms"),
    )
    row(
        "sequential: p99 latency",
        "ms",
        "lower",
        number(treadle, "sequential", "p99_ms"),
        number(dbos, "sequential", "p99_ms"),
    )
    row(
        "concurrent: wall time",
        "s",
        "lower",
        number(treadle, "concurrent", "wall_s"),
        number(dbos, "concurrent", "wall_s"),
    )
    row(
        "concurrent: workflows/s",
        "wf/s",
        "higher",
        number(treadle, "concurrent", "workflows_per_s"),
        number(dbos, "concurrent", "workflows_per_s"),
    )
    t_step = number(treadle, "step_cost", "per_step_us")
    d_step = number(dbos, "step_cost", "per_step_us")
    row("cost per step (marginal)", "µs", "lower", t_step, d_step)
    row(
        "cost per step / raw FULL commit",
        "x",
        "lower",
        ratio(t_step, full_us),
        ratio(d_step, full_us),
    )
    row(
        "waiting: RSS with N parked",
        "MB",
        "lower",
        number(treadle, "waiting", "rss_mb"),
        number(dbos, "waiting", "rss_mb"),
    )
    row(
        "waiting: RSS per parked run",
        "bytes",
        "lower",
        number(treadle, "waiting", "rss_per_parked_run_bytes"),
        number(dbos, "waiting", "rss_per_parked_run_bytes"),
    )
    row(
        "waiting: signal -> next step p50",
        "ms",
        "lower",
        number(treadle, "waiting", "signal_to_step_p50_ms"),
        number(dbos, "waiting", "signal_to_step_p50_ms"),
    )
    row(
        "waiting: signal -> next step p99",
        "ms",
        "lower",
        number(treadle, "waiting", "signal_to_step_p99_ms"),
        number(dbos, "waiting", "signal_to_step_p99_ms"),
    )
    t_small = number(treadle, "growth_small", "per_step_us")
    d_small = number(dbos, "growth_small", "per_step_us")
    t_large = number(treadle, "growth_large", "per_step_us")
    d_large = number(dbos, "growth_large", "per_step_us")
    row("growth: per step, small store", "µs", "lower", t_small, d_small)
    row("growth: per step, large store", "µs", "lower", t_large, d_large)
    row("growth: large / small", "x", "lower", ratio(t_large, t_small), ratio(d_large, d_small))
    # DBOS: n/a (its list_workflows has no label filter to compare with).
    for key, what in (
        ("by_label", "by label"),
        ("by_workflow_status", "by workflow+status"),
        ("by_workflow_status_page_21", "by workflow+status, page 21"),
    ):
        row(f"search: page of 100 {what} (p50)", "ms", "lower",
            number(treadle, "search", key, "p50_ms"), None)  # fmt: skip
    # Retention: the commit path while the pruner deletes a backlog (DBOS: not measured).
    for label, key in (("no pruner", "no_pruner"), ("pruner deleting", "pruner")):
        t_fig = treadle.get("pruning", {}).get(key, {})
        row(f"backlog, {label}: sequential wf/s", "wf/s", "higher",
            t_fig.get("workflows_per_s"), None)  # fmt: skip
        row(f"backlog, {label}: sequential p99", "ms", "lower", t_fig.get("p99_ms"), None)
    pruned = treadle.get("pruning", {}).get("pruner", {})
    row("backlog: runs deleted/s meanwhile", "runs/s", "higher", pruned.get("deleted_per_s"), None)
    row(
        "fan-out: map of N no-ops, max 50",
        "s",
        "lower",
        number(treadle, "fanout", "wall_s"),
        number(dbos, "fanout", "wall_s"),
    )
    row(
        "fan-out: iterations/s",
        "it/s",
        "higher",
        number(treadle, "fanout", "iterations_per_s"),
        number(dbos, "fanout", "iterations_per_s"),
    )
    for kind in ("sequential", "parallel"):
        for size in (10, 10_000, 100_000):
            row(
                f"for_each {kind}: per iteration, {size:,} elements",
                "µs",
                "lower",
                number(treadle, "foreach_scale", f"{kind}_{size}", "per_iteration_us"),
                None,
            )
    one = number(treadle, "backlog", "workers_1", "wall_s")
    three = number(treadle, "backlog", "workers_3", "wall_s")
    row("backlog drain (PostgreSQL), 1 worker", "s", "lower", one, None)
    row("backlog drain (PostgreSQL), 3 workers", "s", "lower", three, None)
    row("backlog drain: 1 worker / 3 workers", "x", "higher", ratio(one, three), None)
    return rows


def format_table(rows: list[Result], raw: Result, counts: dict[str, int]) -> str:
    out = [ratio_table(rows)]
    out.append("")
    out.append("raw SQLite commit, same run (WAL):")
    out.append(
        f"  one small row, synchronous=FULL  : {fmt(number(raw, 'one_row_full', 'mean_us'))}"
        f" µs mean, {fmt(number(raw, 'one_row_full', 'p50_us'))} µs p50"
    )
    out.append(
        f"  one small row, synchronous=NORMAL: "
        f"{fmt(number(raw, 'one_row_normal', 'mean_us'))} µs mean, "
        f"{fmt(number(raw, 'one_row_normal', 'p50_us'))} µs p50"
    )
    out.append(
        f"  100-row batches, synchronous=FULL: "
        f"{fmt(number(raw, 'batch100_full', 'rows_per_s'))} rows/s"
    )
    out.append("")
    out.append(
        "fan-out, DBOS side: a workflow enqueuing N no-op steps on a queue with "
        "worker_concurrency=50 (DBOS's closest equivalent of a parallel map; no DBOS figure "
        "for the for_each rows)"
    )
    out.append(
        "backlog: `backlog` queued runs of three plain steps of time.sleep(0.5), drained by "
        "worker processes of step_threads=32 each (ideal: runs x 1.5 s / 32 per worker)"
    )
    out.append("counts: " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    return "\n".join(out)


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
