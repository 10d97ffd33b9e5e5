"""A worker process for the SIGKILL recovery tests (tests/test_recovery.py).

Usage: python core_worker.py DB EFFECTS [--start WORKFLOW=RUN_ID]... [--block NAME]...

It opens an Engine on the SQLite file DB, registers the workflows below, starts the runs asked
for (idempotently, by run id) and then executes runs until it is killed. Every step and every
compensation appends one line to EFFECTS before doing anything else — run id, step, phase
("do"/"undo"), attempt, idempotency key — with O_APPEND and fsync, so the test can count side
effects exactly. ``--block s2`` makes step s2 block forever after writing its line (so that the
test can kill the process in the middle of it); ``--block item:b`` only in the
iteration whose item is "b"; ``--block undo:c1`` for the compensation of c1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
from typing import Any

import treadle
from treadle import Context, State

EFFECTS = ""
BLOCK: set[str] = set()


def effect(ctx: Context, phase: str) -> None:
    """Append one side-effect line durably."""
    line = f"{ctx.run_id}\t{ctx.step}\t{phase}\t{ctx.attempt}\t{ctx.idempotency_key}\n"
    fd = os.open(EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def do(ctx: Context, state: State) -> Any:
    """A step: record the side effect, block if asked to, return something to store."""
    effect(ctx, "do")
    if ctx.step in BLOCK or f"{ctx.step}:{ctx.item}" in BLOCK:
        threading.Event().wait()  # until SIGKILL
    return ctx.attempt


async def undo(ctx: Context, state: State) -> None:
    """A compensation: record it, block if asked to."""
    effect(ctx, "undo")
    if f"undo:{ctx.step}" in BLOCK:
        await asyncio.Event().wait()  # until SIGKILL


def boom(ctx: Context, state: State) -> None:
    """A step that fails for good."""
    effect(ctx, "do")
    raise treadle.NonRetryableError("boom")


def flaky(ctx: Context, state: State) -> Any:
    """A step whose first attempt fails."""
    effect(ctx, "do")
    if ctx.attempt == 1:
        raise ConnectionError("first attempt fails")
    return ctx.attempt


def workflows() -> list[treadle.Workflow]:
    """The workflows every worker registers (the same definitions in every process)."""
    return [
        treadle.new("chain").step("s1", do).step("s2", do).step("s3", do).build(),
        treadle.new("saga")
        .step("c1", do, compensate=undo)
        .step("c2", do, compensate=undo)
        .step("c3", do, compensate=undo)
        .step("boom", boom)
        .build(),
        treadle.new("waiter").step("w1", do).await_signal("go").step("w2", do).build(),
        treadle.new("napper").step("n1", do).sleep("nap", "2s").step("n2", do).build(),
        treadle.new("retrier")
        .step("r1", flaky, retry=treadle.RetryPolicy().attempts(3).backoff("1s", "1s"))
        .step("r2", do)
        .build(),
        treadle.new("kid").step("k1", do).await_signal("go").step("k2", do).build(),
        treadle.new("family").step("p1", do).sub_workflow("child", "kid").step("p2", do).build(),
        treadle.new("looper")
        .loop("each").for_each("items").do(treadle.step("item", do)).end()
        .step("after", do)
        .build(),
        treadle.new("fan")
        .parallel("both", treadle.step("slow", do), treadle.step("quick", do))
        .step("joined", do)
        .build(),
    ]


START_DATA: dict[str, dict[str, Any]] = {"looper": {"items": ["a", "b", "c"]}}


async def main(argv: list[str]) -> None:
    global EFFECTS
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("effects")
    parser.add_argument("--start", action="append", default=[])
    parser.add_argument("--block", action="append", default=[])
    args = parser.parse_args(argv)
    EFFECTS = args.effects
    BLOCK.update(args.block)
    engine = treadle.Engine(treadle.SQLitePersistence(args.db), poll_interval=0.05)
    for workflow in workflows():
        engine.register(workflow)
    async with engine:
        for spec in args.start:
            name, run_id = spec.split("=", 1)
            await engine.start(name, START_DATA.get(name), run_id=run_id)
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
