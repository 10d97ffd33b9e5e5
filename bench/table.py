"""The table bench/run.py prints: figure | unit | treadle | DBOS | treadle/DBOS, pair by pair.

Standard library only (run.py and ab.py import it).
"""

from __future__ import annotations

from typing import Any

from benchlib import fmt, number, ratio, ratio_table, table_row

Result = dict[str, Any]

# (figure, unit, better, part, *keys): a row read from the same keys of both sides' results.
PAIRED: tuple[tuple[str, ...], ...] = (
    ("sequential: workflows/s", "wf/s", "higher", "sequential", "workflows_per_s"),
    ("sequential: p50 latency", "ms", "lower", "sequential", "p50_ms"),
    ("sequential: p99 latency", "ms", "lower", "sequential", "p99_ms"),
    ("concurrent: wall time", "s", "lower", "concurrent", "wall_s"),
    ("concurrent: workflows/s", "wf/s", "higher", "concurrent", "workflows_per_s"),
)
WAITING: tuple[tuple[str, ...], ...] = (
    ("waiting: RSS with N parked", "MB", "lower", "waiting", "rss_mb"),
    ("waiting: RSS per parked run", "bytes", "lower", "waiting", "rss_per_parked_run_bytes"),
    ("waiting: signal -> next step p50", "ms", "lower", "waiting", "signal_to_step_p50_ms"),
    ("waiting: signal -> next step p99", "ms", "lower", "waiting", "signal_to_step_p99_ms"),
)
FEATURES: tuple[tuple[str, ...], ...] = (
    ("concurrency(10) workflow: workflows/s", "wf/s", "higher", "limited", "workflows_per_s"),
    ("concurrency(10): most executing at once", "runs", "lower", "limited", "most_at_once"),
    ("concurrency(10): CPU per run", "ms", "lower", "limited", "cpu_ms_per_run"),
    ("rate-limited step (50/s): calls/s", "calls/s", "higher", "rate_limited", "calls_per_s"),
    ("rate-limited step: CPU per run", "ms", "lower", "rate_limited", "cpu_ms_per_run"),
    ("fan-out: map of N no-ops, max 50", "s", "lower", "fanout", "wall_s"),
    ("fan-out: iterations/s", "it/s", "higher", "fanout", "iterations_per_s"),
)
PROCESSES: tuple[tuple[str, ...], ...] = (
    ("SQLite backlog, 1 process: runs/s", "runs/s", "higher", "processes", "p1", "runs_per_s"),
    ("SQLite backlog, 2 processes: runs/s", "runs/s", "higher", "processes", "p2", "runs_per_s"),
    ("SQLite backlog: 2 processes / 1", "x", "higher", "processes", "speedup_2"),
)


def build_table(raw: Result, dbos: Result, treadle: Result) -> list[Result]:
    """Rows of figure | unit | treadle | DBOS | treadle/DBOS (pair by pair)."""
    full_us = number(raw, "one_row_full", "mean_us")
    rows: list[Result] = []

    def row(figure: str, unit: str, better: str, t: float | None, d: float | None) -> None:
        rows.append(table_row(figure, unit, better, t, d))

    def paired(specs: tuple[tuple[str, ...], ...]) -> None:
        for figure, unit, better, *path in specs:
            row(figure, unit, better, number(treadle, *path), number(dbos, *path))

    def alone(figure: str, unit: str, better: str, *path: str) -> None:
        row(figure, unit, better, number(treadle, *path), None)

    paired(PAIRED)
    t_step = number(treadle, "step_cost", "per_step_us")
    d_step = number(dbos, "step_cost", "per_step_us")
    row("cost per step (marginal)", "µs", "lower", t_step, d_step)
    row("cost per step / raw FULL commit", "x", "lower", ratio(t_step, full_us),
        ratio(d_step, full_us))  # fmt: skip
    paired(WAITING)
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
        alone(f"search: page of 100 {what} (p50)", "ms", "lower", "search", key, "p50_ms")
    # Retention: the commit path while the pruner deletes a backlog (DBOS: not measured).
    for label, key in (("no pruner", "no_pruner"), ("pruner deleting", "pruner")):
        alone(f"backlog, {label}: sequential wf/s", "wf/s", "higher", "pruning", key,
              "workflows_per_s")  # fmt: skip
        alone(f"backlog, {label}: sequential p99", "ms", "lower", "pruning", key, "p99_ms")
    alone("backlog: runs deleted/s meanwhile", "runs/s", "higher", "pruning", "pruner",
          "deleted_per_s")  # fmt: skip
    for label, key in (("no pruner", "no_pruner"), ("pruner deleting", "pruner")):
        alone(f"backlog, {label}: concurrent wf/s", "wf/s", "higher", "pruning_concurrent",
              key, "workflows_per_s")  # fmt: skip
    alone("backlog: runs deleted/s during concurrent", "runs/s", "higher", "pruning_concurrent",
          "pruner", "deleted_per_s")  # fmt: skip
    alone("no concurrency limit: workflows/s (same process)", "wf/s", "higher", "limited",
          "unlimited", "workflows_per_s")  # fmt: skip
    paired(FEATURES)
    for kind in ("sequential", "parallel"):
        for size in (10, 10_000, 100_000):
            alone(f"for_each {kind}: per iteration, {size:,} elements", "µs", "lower",
                  "foreach_scale", f"{kind}_{size}", "per_iteration_us")  # fmt: skip
    paired(PROCESSES)
    one = number(treadle, "backlog", "workers_1", "wall_s")
    three = number(treadle, "backlog", "workers_3", "wall_s")
    row("backlog drain (PostgreSQL), 1 worker", "s", "lower", one, None)
    row("backlog drain (PostgreSQL), 3 workers", "s", "lower", three, None)
    row("backlog drain: 1 worker / 3 workers", "x", "higher", ratio(one, three), None)
    return rows


def format_table(rows: list[Result], raw: Result, counts: dict[str, int]) -> str:
    """The table, the raw commit figures and what the rows without a twin mean."""
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
        "concurrency(10) / rate-limited, DBOS side: N three-step workflows enqueued on a Queue "
        "with concurrency=10 / limiter 50 per 1 s (polling_interval_sec=0.05)"
    )
    out.append(
        "SQLite backlog: runs stored by an engine that executes none, drained by 1 and by 2 "
        "processes on the same file (DBOS: 1 and 2 queue workers, worker_concurrency=100)"
    )
    out.append(
        "backlog: `backlog` queued runs of three plain steps of time.sleep(0.5), drained by "
        "worker processes of step_threads=32 each (ideal: runs x 1.5 s / 32 per worker)"
    )
    out.append("counts: " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    return "\n".join(out)
