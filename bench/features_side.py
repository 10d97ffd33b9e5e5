"""treadle side of the benchmark: the features of the flow-control and retention issues, used.

Run by ``run.py --treadle-part NAME`` like treadle_side.py's figures (a fresh process, a fresh
SQLite file, engine defaults unless stated):

* ``limited``: n three-step runs of a workflow with ``.concurrency(10)`` started at once, then
  all awaited; the same workflow without the limit first, in the same process (``unlimited``);
* ``rate_limited``: n three-step runs started at once whose middle step takes a call of
  ``treadle.RateLimit("bench", 50, per="1s")``; the calls' rate and the busiest second;
* ``pruning`` / ``pruning_concurrent``: a backlog of completed runs that ended 60 days ago, then
  the sequential / concurrent figure with no retention and with ``Engine(retention="30d")``,
  whose pruner deletes the backlog while the runs are measured.

Every figure reports the process's CPU time per run (``cpu_ms_per_run``): what a feature
costs when it is used, beside what it lets through.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchlib import busiest_second, log
from treadle_side import (
    WARMUP,
    _concurrent_once,
    _engine,
    _prepopulate,
    _seq_figure,
    noop,
    three_sync,
)

import treadle

Result = dict[str, Any]
LIMIT = 10
RATE = 50  # calls per second

# --------------------------------------------------------------------------- concurrency(10)

_lock = threading.Lock()
_active = 0
_most = 0


def enter(ctx: treadle.Context, state: treadle.State) -> None:
    """First step: one more run executing (plain function, like the benchmark's no-ops)."""
    global _active, _most
    with _lock:
        _active += 1
        _most = max(_most, _active)


def leave(ctx: treadle.Context, state: treadle.State) -> None:
    """Last step: one run fewer executing."""
    global _active
    with _lock:
        _active -= 1


def counted_three(name: str, limit: int | None) -> treadle.Workflow:
    """Three plain steps that do nothing but count the runs between the first and the last."""
    b = treadle.new(name).step("a", enter).step("b", noop).step("c", leave)
    return b.concurrency(limit).build() if limit is not None else b.build()


async def _burst(engine: treadle.Engine, name: str, n: int) -> Result:
    """n runs started at once, then all awaited; wall time, CPU per run, most at once."""
    global _most
    _most = 0
    cpu0 = time.process_time()
    figure = await _concurrent_once(engine, name, n)
    figure["cpu_ms_per_run"] = (time.process_time() - cpu0) / (n + WARMUP) * 1e3
    figure["most_at_once"] = _most
    return figure


async def limited(n: int, db_path: str) -> Result:
    """n runs of a ``.concurrency(10)`` workflow started at once (after the same without it)."""
    engine = _engine(db_path)
    engine.register(counted_three("unlimited", None))
    engine.register(counted_three("limited", LIMIT))
    async with engine:
        unlimited = await _burst(engine, "unlimited", n)
        out = await _burst(engine, "limited", n)
    out["unlimited"] = unlimited
    out["limit"] = LIMIT
    out["how"] = (
        "treadle.new('limited').step(a).step(b).step(c).concurrency(10): asyncio.gather of n "
        "engine.start(), then of n engine.wait(); most_at_once = runs between their first and "
        "last step at once; unlimited: the same workflow without .concurrency, first"
    )
    return out


# --------------------------------------------------------------------------- rate limit

CALLS: list[float] = []


def call(ctx: treadle.Context, state: treadle.State) -> None:
    """The rate-limited step: note when it ran (list.append is atomic)."""
    CALLS.append(time.perf_counter())


async def rate_limited(n: int, db_path: str) -> Result:
    """n three-step runs at once; the middle step is limited to 50 calls per second."""
    limiter = treadle.RateLimit("bench", RATE, per="1s")
    workflow = (
        treadle.new("rated")
        .step("a", noop)
        .step("call", call, rate_limit=limiter)
        .step("c", noop)
        .build()
    )
    engine = _engine(db_path)
    engine.register(workflow)
    async with engine:
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        ids = await asyncio.gather(*(engine.start("rated", {"x": i}) for i in range(n)))
        states = await asyncio.gather(*(engine.wait(r, timeout=600) for r in ids))
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    assert all(s.status is treadle.Status.COMPLETED for s in states)
    span = max(CALLS) - min(CALLS)
    return {
        "n": n,
        "rate": RATE,
        "wall_s": wall,
        "calls_per_s": (len(CALLS) - 1) / span if span > 0 else None,
        "most_in_1s": busiest_second(CALLS),
        "cpu_ms_per_run": cpu / n * 1e3,
        "how": "three plain no-op steps, the middle one with rate_limit=treadle.RateLimit("
        "'bench', 50, per='1s') (burst 1); n runs started at once; calls/s = (calls - 1) / "
        "(last call - first call)",
    }


# --------------------------------------------------------------------------- retention


async def _count_runs(db_path: str) -> int:
    def count() -> int:
        conn = sqlite3.connect(db_path)
        try:
            return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
        finally:
            conn.close()

    return await asyncio.to_thread(count)


def _age_backlog(db_path: str) -> str:
    """Move every run 60 days back; a copy of the file for the run without a pruner."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    sixty_days = 60 * 86400
    conn.execute(
        "UPDATE runs SET created_at = created_at - ?, updated_at = updated_at - ?",
        (sixty_days, sixty_days),
    )
    base_path = db_path.replace(".sqlite", "_base.sqlite")
    copy = sqlite3.connect(base_path)
    conn.backup(copy)
    copy.close()
    conn.close()
    return base_path


Figure = Callable[[treadle.Engine, str, int], Awaitable[Result]]


async def _pruning(stored: int, n: int, db_path: str, measure: Figure, kind: str) -> Result:
    template = "bench-template"
    engine = _engine(db_path)
    engine.register(three_sync())
    async with engine:
        await engine.start("three", {"x": 0}, run_id=template)
        assert (await engine.wait(template)).status is treadle.Status.COMPLETED
    populated = _prepopulate(db_path, template, stored)
    base_path = _age_backlog(db_path)

    out: Result = {}
    for label, path, retention in (("no_pruner", base_path, None), ("pruner", db_path, "30d")):
        engine = _engine(path, retention=retention)
        engine.register(three_sync())
        before = await _count_runs(path)
        async with engine:
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            figure = await measure(engine, "three", n)
            window = time.perf_counter() - t0
            figure["cpu_ms_per_run"] = (time.process_time() - cpu0) / (n + WARMUP) * 1e3
            after = await _count_runs(path)
            started = n + min(WARMUP, n)
            figure["deleted_while_measured"] = before + started - after
            figure["deleted_per_s"] = figure["deleted_while_measured"] / window
            if retention is not None:
                t1 = time.perf_counter()
                await engine.prune("30d")  # the rest of the backlog, beside the pruner
                figure["backlog_deleted_s"] = window + time.perf_counter() - t1
                figure["left_after"] = await _count_runs(path)
        figure["db_size_mb_after"] = (await asyncio.to_thread(os.path.getsize, path)) / 1e6
        log(f"treadle pruning ({kind}) {label}: {figure['workflows_per_s']:.0f} wf/s")
        out[label] = figure
    out.update(populated)
    out["stored_workflows"] = stored
    out["how"] = (
        f"{stored} completed three-step runs that ended 60 days ago; then the {kind} figure "
        "on a copy without retention (no_pruner) and with Engine(retention='30d') (pruner: "
        "it deletes the backlog in batches while the runs are measured)"
    )
    out["engine_options"] = "defaults (+ retention='30d' for pruner)"
    return out


async def pruning(stored: int, n: int, db_path: str) -> Result:
    """The sequential figure (n runs) while the pruner deletes a backlog of ``stored`` runs."""
    return await _pruning(stored, n, db_path, _seq_figure, "sequential")


async def pruning_concurrent(stored: int, n: int, db_path: str) -> Result:
    """The concurrent figure (n runs at once) while the pruner deletes a backlog."""
    return await _pruning(stored, n, db_path, _concurrent_once, "concurrent")
