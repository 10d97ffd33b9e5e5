"""treadle side of the benchmark: the same figures as bench/dbos_side.py, figure by figure.

Each coroutine is run by ``run.py --treadle-part NAME`` in a fresh process (via
``asyncio.run``) on a fresh SQLite file and returns one dict (see run.py's docstring).

Engine: ``treadle.Engine(treadle.SQLitePersistence(db_path))`` with its defaults
(``journal_mode=WAL``, ``synchronous=FULL``, ``max_concurrent_runs=1000``,
``step_threads=32``), except where a figure says otherwise (the ``engine_options`` key).

Workflows, as on the DBOS side: three steps that do nothing, written as plain (sync)
functions. treadle runs a plain step function in a worker thread and a coroutine function
on the loop, so the sequential and concurrent figures also report the same workflow with
``async def`` steps under extra keys (``async_steps``).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchlib import log, percentile, rss_kib

import treadle

Result = dict[str, Any]
WARMUP = 20

# --------------------------------------------------------------------------- workflows


def noop(ctx: treadle.Context, state: treadle.State) -> None:
    """A step that does nothing (a plain function: treadle runs it in a worker thread)."""


async def anoop(ctx: treadle.Context, state: treadle.State) -> None:
    """A step that does nothing (a coroutine function: treadle runs it on the loop)."""


def _chain(name: str, steps: int, fn: Callable[..., Any]) -> treadle.Workflow:
    b = treadle.new(name)
    for i in range(steps):
        b = b.step(f"s{i + 1}", fn)
    return b.build()


def three_sync() -> treadle.Workflow:
    """The benchmark's workflow: three steps that do nothing."""
    return treadle.new("three").step("a", noop).step("b", noop).step("c", noop).build()


def three_async() -> treadle.Workflow:
    """The same with ``async def`` steps."""
    return treadle.new("three_async").step("a", anoop).step("b", anoop).step("c", anoop).build()


# Waiting: step("before") -> await_signal("go") -> step("after"); "after" records when its
# body starts, keyed by run id. Async steps, like DBOS's async parked workflow.
STEP_STARTED: dict[str, float] = {}


async def before(ctx: treadle.Context, state: treadle.State) -> None:
    """First step of a parked run: does nothing."""


async def after(ctx: treadle.Context, state: treadle.State) -> None:
    """Step after the signal: note when its body started."""
    STEP_STARTED[ctx.run_id] = time.perf_counter()


def after_sync(ctx: treadle.Context, state: treadle.State) -> None:
    """The same as a plain function (run in a worker thread); dict writes are atomic."""
    STEP_STARTED[ctx.run_id] = time.perf_counter()


def parked_workflow(name: str, before_fn: Callable[..., Any], after_fn: Callable[..., Any]) -> Any:
    return (
        treadle.new(name)
        .step("before", before_fn)
        .await_signal("go")
        .step("after", after_fn)
        .build()
    )


# --------------------------------------------------------------------------- helpers


def _engine(db_path: str, **options: Any) -> treadle.Engine:
    return treadle.Engine(treadle.SQLitePersistence(db_path), **options)


def _pragmas(db_path: str, engine: treadle.Engine) -> Result:
    persistence = engine.persistence
    assert isinstance(persistence, treadle.SQLitePersistence)
    conn = sqlite3.connect(db_path)
    try:
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    return {"journal_mode": journal, "synchronous": persistence.synchronous}


async def _run_seq(engine: treadle.Engine, name: str, n: int) -> list[float]:
    """Start and await n runs one after another; latencies in seconds."""
    lat: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        run_id = await engine.start(name, {"x": i})
        state = await engine.wait(run_id)
        lat.append(time.perf_counter() - t0)
        if state.status is not treadle.Status.COMPLETED:
            raise RuntimeError(f"run {run_id} ended {state.status.value}: {state.error}")
    return lat


def _lat_summary(lat: list[float], wall: float) -> Result:
    return {
        "n": len(lat),
        "wall_s": wall,
        "workflows_per_s": len(lat) / wall if wall > 0 else None,
        "p50_ms": percentile(lat, 50) * 1e3,
        "p99_ms": percentile(lat, 99) * 1e3,
        "mean_ms": sum(lat) / len(lat) * 1e3,
    }


async def _seq_figure(engine: treadle.Engine, name: str, n: int) -> Result:
    await _run_seq(engine, name, min(WARMUP, n))  # warm-up, not counted
    t0 = time.perf_counter()
    lat = await _run_seq(engine, name, n)
    return _lat_summary(lat, time.perf_counter() - t0)


async def _step_cost(engine: treadle.Engine, n: int) -> Result:
    """Marginal cost of one step: (mean 11-step run - mean 1-step run) / 10."""
    await _run_seq(engine, "one", min(WARMUP, n))  # warm-up
    one = await _run_seq(engine, "one", n)
    eleven = await _run_seq(engine, "eleven", n)
    m1 = sum(one) / len(one)
    m11 = sum(eleven) / len(eleven)
    return {
        "n": n,
        "one_step_mean_us": m1 * 1e6,
        "eleven_step_mean_us": m11 * 1e6,
        "per_step_us": (m11 - m1) / 10 * 1e6,
        "per_step_p50_us": (percentile(eleven, 50) - percentile(one, 50)) / 10 * 1e6,
    }


def _register_step_cost(engine: treadle.Engine) -> None:
    engine.register(_chain("one", 1, noop))
    engine.register(_chain("eleven", 11, noop))


# --------------------------------------------------------------------------- figures


async def sequential(n: int, db_path: str) -> Result:
    """n three-step runs started and awaited one after another (plain step functions)."""
    engine = _engine(db_path)
    engine.register(three_sync())
    engine.register(three_async())
    async with engine:
        out = await _seq_figure(engine, "three", n)
        out["async_steps"] = await _seq_figure(engine, "three_async", n)
        out["pragmas"] = _pragmas(db_path, engine)
    out["how"] = (
        "await engine.start('three') then await engine.wait(id), one after another; "
        "plain step functions (async_steps: the same with async def steps)"
    )
    out["engine_options"] = "defaults"
    return out


async def _concurrent_once(engine: treadle.Engine, name: str, n: int) -> Result:
    await _run_seq(engine, name, WARMUP)  # warm-up
    t0 = time.perf_counter()
    ids = await asyncio.gather(*(engine.start(name, {"x": i}) for i in range(n)))
    t_started = time.perf_counter() - t0
    states = await asyncio.gather(*(engine.wait(r) for r in ids))
    wall = time.perf_counter() - t0
    bad = [s for s in states if s.status is not treadle.Status.COMPLETED]
    if bad:
        raise RuntimeError(f"{len(bad)} runs did not complete, e.g. {bad[0]}")
    return {"n": n, "wall_s": wall, "start_all_s": t_started, "workflows_per_s": n / wall}


async def concurrent(n: int, db_path: str) -> Result:
    """n three-step runs started at once (asyncio.gather of engine.start), then all awaited."""
    # Default max_concurrent_runs (1000): runs beyond it are stored PENDING and claimed by
    # the dispatcher as room frees up, which is what treadle is designed to do.
    engine = _engine(db_path)
    engine.register(three_sync())
    engine.register(three_async())
    async with engine:
        out = await _concurrent_once(engine, "three", n)
        out["async_steps"] = await _concurrent_once(engine, "three_async", n)
        out["pragmas"] = _pragmas(db_path, engine)
    # The same with room for every run at once, as a user expecting bursts of n might set.
    raised = _engine(db_path + "-raised", max_concurrent_runs=max(n + 100, 1000))
    raised.register(three_sync())
    async with raised:
        out["max_concurrent_runs_n"] = await _concurrent_once(raised, "three", n)
        out["max_concurrent_runs_n"]["max_concurrent_runs"] = raised.max_concurrent_runs
    out["engine_options"] = "defaults (max_concurrent_runs=1000, step_threads=32)"
    out["how"] = (
        "asyncio.gather(*(engine.start('three') for _ in range(n))), then "
        "asyncio.gather(*(engine.wait(id) ...)); wall time from the first start to the "
        "last result"
    )
    return out


async def step_cost(n: int, db_path: str) -> Result:
    """n one-step and n eleven-step runs, sequentially; marginal cost per step."""
    engine = _engine(db_path)
    _register_step_cost(engine)
    async with engine:
        out = await _step_cost(engine, n)
        out["pragmas"] = _pragmas(db_path, engine)
    out["engine_options"] = "defaults"
    return out


async def _count_status(db_path: str, status: str) -> int:
    def count() -> int:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            return int(
                conn.execute("SELECT count(*) FROM runs WHERE status = ?", (status,)).fetchone()[0]
            )
        finally:
            conn.close()

    return await asyncio.to_thread(count)


async def _signal_burst(
    engine: treadle.Engine, ids: list[str], timeout: float = 600.0
) -> tuple[list[float], int]:
    """Signal every run of ids one after another; latencies to the next step's body."""
    sent: dict[str, float] = {}
    for run_id in ids:
        sent[run_id] = time.perf_counter()
        await engine.signal(run_id, "go", None)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(r in STEP_STARTED for r in ids):
            break
        await asyncio.sleep(0.01)
    lat = [STEP_STARTED[r] - sent[r] for r in ids if r in STEP_STARTED]
    return lat, len(lat)


async def waiting(n: int, sample: int, db_path: str) -> Result:
    """n runs parked on a signal; RSS; then signal a sample spread over them in one burst."""
    engine = _engine(db_path)
    engine.register(parked_workflow("parked", before, after))
    engine.register(parked_workflow("parked_sync", noop, after_sync))
    async with engine:
        pragmas = _pragmas(db_path, engine)
        rss_before = rss_kib()
        t0 = time.perf_counter()
        # Only the ids of the sample are kept (spread evenly over the n): a million run ids
        # held by the benchmark would be ~90 MB of the process's RSS that is not the engine's.
        k = min(sample, n)
        stride = max(1, n // k)
        chosen: list[str] = []
        chunk = 500
        for base in range(0, n, chunk):
            started = await asyncio.gather(
                *(engine.start("parked", {"x": i}) for i in range(base, min(n, base + chunk)))
            )
            chosen.extend(r for i, r in enumerate(started, base) if i % stride == 0)
            if (base // chunk) % 20 == 0:
                log(f"treadle waiting: started {base + len(started)}/{n}")
        del chosen[k:]
        deadline = time.monotonic() + max(600.0, n / 50)
        parked_now = 0
        while time.monotonic() < deadline:
            parked_now = await _count_status(db_path, "waiting")
            if parked_now >= n:
                break
            await asyncio.sleep(0.2)
        park_s = time.perf_counter() - t0
        log(f"treadle waiting: {parked_now} parked in {park_s:.1f}s")
        await asyncio.sleep(1.0)
        rss_parked = rss_kib()

        lat, delivered = await _signal_burst(engine, chosen)

        # Extra: the same with plain (threaded) step functions, on `sample` fresh runs
        # parked while the others are still parked.
        sync_ids = list(
            await asyncio.gather(*(engine.start("parked_sync", {"x": i}) for i in range(k)))
        )
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline:
            if await _count_status(db_path, "waiting") >= n - k + len(sync_ids):
                break
            await asyncio.sleep(0.05)
        sync_lat, _ = await _signal_burst(engine, sync_ids)

    return {
        "n_parked": n,
        "parked_registered": parked_now,
        "park_all_s": park_s,
        "rss_before_kib": rss_before,
        "rss_parked_kib": rss_parked,
        "rss_mb": rss_parked / 1024,
        "rss_per_parked_run_bytes": (rss_parked - rss_before) * 1024 / max(1, n),
        "signal_sample": len(chosen),
        "signal_delivered": delivered,
        "signal_to_step_p50_ms": percentile(lat, 50) * 1e3 if lat else None,
        "signal_to_step_p99_ms": percentile(lat, 99) * 1e3 if lat else None,
        "signal_to_step_max_ms": max(lat) * 1e3 if lat else None,
        "sync_steps": {
            "signal_sample": len(sync_ids),
            "signal_to_step_p50_ms": percentile(sync_lat, 50) * 1e3 if sync_lat else None,
            "signal_to_step_p99_ms": percentile(sync_lat, 99) * 1e3 if sync_lat else None,
        },
        "pragmas": pragmas,
        "engine_options": "defaults",
        "how": "runs of step('before') -> await_signal('go') -> step('after') (async def "
        "steps) started 500 at a time until all n are WAITING; engine.signal() to a sample "
        "spread over them, awaited one after another in one burst; latency = just before "
        "signal() to the body of 'after' starting (sync_steps: plain step functions, on "
        "`sample` extra runs)",
    }


def _prepopulate(db_path: str, template: str, stored: int) -> Result:
    """Copy one real completed run's rows (runs, events) `stored` times with new ids."""
    t0 = time.perf_counter()
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    run_cols = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
    ev_cols = [r[1] for r in conn.execute("PRAGMA table_info(events)") if r[1] != "id"]
    run_sel = ", ".join("printf('pre-%09d', s.n)" if c == "id" else f't."{c}"' for c in run_cols)
    ev_sel = ", ".join("printf('pre-%09d', s.n)" if c == "run_id" else f'e."{c}"' for c in ev_cols)
    series = "WITH RECURSIVE s(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM s WHERE n + 1 < ?) "
    batch = 50_000
    done = 0
    while done < stored:
        k = min(batch, stored - done)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            f"{series}INSERT INTO runs ({', '.join(run_cols)}) SELECT {run_sel} "
            "FROM s, runs t WHERE t.id = ?",
            (done, done + k, template),
        )
        conn.execute(
            f"{series}INSERT INTO events ({', '.join(ev_cols)}) SELECT {ev_sel} "
            "FROM s, events e WHERE e.run_id = ? ORDER BY s.n, e.id",
            (done, done + k, template),
        )
        conn.execute("COMMIT")
        done += k
        log(f"treadle growth: stored {done}/{stored}")
    runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    template_events = conn.execute(
        "SELECT count(*) FROM events WHERE run_id = ?", (template,)
    ).fetchone()[0]
    conn.close()
    return {
        "stored_workflows": runs,
        "stored_event_rows": events,
        "template_event_rows": template_events,
        "populate_s": time.perf_counter() - t0,
        "how_stored": "bulk SQL copies of one real completed three-step run's rows "
        "(runs, events) with new ids",
    }


async def growth(stored: int, n: int, db_path: str) -> Result:
    """`stored` completed three-step runs in the database, then the per-step cost."""
    template = "bench-template"
    engine = _engine(db_path)
    engine.register(three_sync())
    async with engine:
        await engine.start("three", {"x": 0}, run_id=template)
        state = await engine.wait(template)
        assert state.status is treadle.Status.COMPLETED
    populated = _prepopulate(db_path, template, stored)

    engine = _engine(db_path)
    engine.register(three_sync())
    _register_step_cost(engine)
    async with engine:
        out = await _step_cost(engine, n)
        t0 = time.perf_counter()
        lat = await _run_seq(engine, "three", n)
        out["sequential_three_step"] = _lat_summary(lat, time.perf_counter() - t0)
        out["pragmas"] = _pragmas(db_path, engine)
    out.update(populated)
    out["db_size_mb"] = (await asyncio.to_thread(os.path.getsize, db_path)) / 1e6
    out["engine_options"] = "defaults"
    return out
