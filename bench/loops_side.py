"""treadle side of the benchmark: the fan-out and for_each figures (run by ``run.py
--treadle-part fanout|foreach_scale``; see treadle_side.py for the conventions)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchlib import log
from treadle_side import _engine, _pragmas

import treadle

Result = dict[str, Any]

# --------------------------------------------------------------------------- fan-out, for_each

ITERATIONS = 0  # iterations that started their body (the for_each figures count them)


async def counted(ctx: treadle.Context, state: treadle.State) -> None:
    """A map or loop body that does nothing but count itself."""
    global ITERATIONS
    ITERATIONS += 1


def map_workflow(name: str, max_at_once: int) -> treadle.Workflow:
    """A parallel map over ``data["items"]`` whose body does nothing."""
    return (
        treadle.new(name)
        .loop("each")
        .for_each("items")
        .parallel(max=max_at_once)
        .do(treadle.step("noop", counted))
        .end()
        .build()
    )


def loop_workflow(name: str) -> treadle.Workflow:
    """A sequential for_each over ``data["items"]`` whose body does nothing."""
    return (
        treadle.new(name)
        .loop("each")
        .for_each("items")
        .do(treadle.step("n", counted))
        .end()
        .build()
    )


async def fanout(n: int, db_path: str) -> Result:
    """One run: a parallel map of n no-op iterations, at most 50 at a time, start to end."""
    engine = _engine(db_path)
    engine.register(map_workflow("fanout", 50))
    async with engine:
        warm = await engine.start("fanout", {"items": list(range(50))})
        await engine.wait(warm, timeout=600)
        t0 = time.perf_counter()
        run_id = await engine.start("fanout", {"items": list(range(n))})
        final = await engine.wait(run_id, timeout=3600)
        wall = time.perf_counter() - t0
        out = _pragmas(db_path, engine)
    assert final.status is treadle.Status.COMPLETED, final.error
    return {
        "n": n,
        "max": 50,
        "wall_s": wall,
        "iterations_per_s": n / wall,
        "per_iteration_us": wall / n * 1e6,
        "engine_options": "defaults",
        "how": "one run: loop('each').for_each('items').parallel(max=50) over n elements, "
        "body an async no-op step; start() to wait() returning",
        **out,
    }


async def _per_iteration(engine: treadle.Engine, name: str, size: int, sample: int) -> Result:
    """The cost of one iteration of a for_each over ``size`` elements: whole runs for small
    lists, else a window of ``sample`` iterations in the middle of one run."""
    global ITERATIONS
    items = [f"element-{i:06d}" for i in range(size)]
    if size < 2 * sample:
        runs = max(1, sample // size)
        t0 = time.perf_counter()
        for _ in range(runs):
            await engine.wait(await engine.start(name, {"items": items}), timeout=600)
        wall = time.perf_counter() - t0
        return {
            "elements": size,
            "iterations": runs * size,
            "per_iteration_us": wall / (runs * size) * 1e6,
            "how": f"{runs} whole runs",
        }
    ITERATIONS = 0
    run_id = await engine.start(name, {"items": items})
    warm = min(50, size // 10)
    while warm > ITERATIONS:  # noqa: ASYNC110  (polling a counter the steps bump)
        await asyncio.sleep(0.001)
    t0, c0 = time.perf_counter(), ITERATIONS
    while c0 + sample > ITERATIONS:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    wall = time.perf_counter() - t0
    await engine.cancel(run_id)
    return {
        "elements": size,
        "iterations": sample,
        "per_iteration_us": wall / sample * 1e6,
        "how": f"iterations {c0} to {c0 + sample} of one run",
    }


async def foreach_scale(n: int, db_path: str) -> Result:
    """Cost per iteration at 10, 10,000 and 100,000 elements, sequential for_each and
    parallel map (max=50), each size on a fresh database; ``n`` iterations measured."""
    out: Result = {"sample": n, "engine_options": "defaults"}
    for size in (10, 10_000, 100_000):
        for kind, workflow in (
            ("sequential", loop_workflow("seq")),
            ("parallel", map_workflow("par", 50)),
        ):
            path = f"{db_path}-{kind}-{size}"
            engine = _engine(path)
            engine.register(workflow)
            async with engine:
                figure = await _per_iteration(engine, workflow.name, size, n)
            log(f"treadle for_each {kind} {size}: {figure['per_iteration_us']:.0f} µs/iteration")
            out[f"{kind}_{size}"] = figure
    return out
