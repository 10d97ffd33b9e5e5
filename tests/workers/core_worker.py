"""A worker process for the SIGKILL recovery tests (tests/test_recovery.py).

Usage: python core_worker.py DB EFFECTS [--start WORKFLOW=RUN_ID]... [--block NAME]... [--sync]
[--codec]

It opens an Engine (with ``--sync`` a SyncEngine, from a thread without an event loop) on the
SQLite file DB, registers the workflows below, starts the runs asked for (idempotently, by run
id) and then executes runs until it is killed. Every step and every
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
BIG = 1500  # the elements of the large loop and map
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


def tag(ctx: Context, state: State) -> Any:
    """A step that labels its run with its name and attempt, then goes on as :func:`do`."""
    ctx.label(ctx.step, f"attempt-{ctx.attempt}")
    return do(ctx, state)


def echo(ctx: Context, state: State) -> Any:
    """A map's body step: record the side effect, block if asked to, return the element."""
    do(ctx, state)
    return {"item": ctx.item, "key": ctx.idempotency_key}


def tick(ctx: Context, state: State) -> Any:
    """A large loop's body step: record the side effect (no fsync: a SIGKILL loses nothing the
    kernel has), block if asked to, append the element to ``data["seen"]``."""
    line = f"{ctx.run_id}\t{ctx.step}\tdo\t{ctx.attempt}\t{ctx.idempotency_key}\n"
    fd = os.open(EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    if f"{ctx.step}:{ctx.item}" in BLOCK:
        threading.Event().wait()  # until SIGKILL
    if "seen" in state.data:
        state.data["seen"].append(ctx.item)
        return None
    return {"item": ctx.item}


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
        treadle.new("vault")
        .step("v1", do)
        .step("v2", do)
        .await_signal("go")
        .step("v3", do)
        .build(),
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
        .loop("each")
        .for_each("items")
        .do(treadle.step("item", do))
        .end()
        .step("after", do)
        .build(),
        treadle.new("labeller").step("tag1", tag).step("tag2", tag).build(),
        treadle.new("fan")
        .parallel("both", treadle.step("slow", do), treadle.step("quick", do))
        .step("joined", do)
        .build(),
        treadle.new("expiring")
        .deadline("1s")
        .step("d1", do, compensate=undo)
        .step("d2", do, compensate=undo)
        .await_signal("never")
        .build(),
        treadle.new("mapper")
        .loop("lines")
        .for_each("items")
        .parallel(max=3)
        .do(treadle.step("ship", echo))
        .end()
        .step("shipped", do)
        .build(),
        treadle.new("biglooper")
        .loop("each")
        .for_each("items")
        .do(treadle.step("tick", tick))
        .end()
        .step("after", do)
        .build(),
        treadle.new("bigmapper")
        .loop("cells")
        .for_each("items")
        .parallel(max=10)
        .do(treadle.step("put", tick))
        .end()
        .step("after", do)
        .build(),
    ]


START_DATA: dict[str, dict[str, Any]] = {
    "looper": {"items": ["a", "b", "c"]},
    "mapper": {"items": list(range(10))},
    "vault": {"card": "4111-1111-SECRET"},
    # More elements than a chunk of a list stored beside the run (treadle/_interpreter/texts.py)
    "biglooper": {"items": list(range(BIG)), "seen": []},
    "bigmapper": {"items": list(range(BIG))},
}


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line; sets EFFECTS and BLOCK."""
    global EFFECTS
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("effects")
    parser.add_argument("--start", action="append", default=[])
    parser.add_argument("--block", action="append", default=[])
    parser.add_argument("--sync", action="store_true")
    parser.add_argument("--codec", action="store_true", help="store through sample_codec")
    args = parser.parse_args(argv)
    EFFECTS = args.effects
    BLOCK.update(args.block)
    return args


def starts(specs: list[str]) -> list[tuple[str, dict[str, Any] | None, str]]:
    """The runs to start: (workflow, data, run id) of each ``WORKFLOW=RUN_ID``."""
    runs = []
    for spec in specs:
        name, run_id = spec.split("=", 1)
        runs.append((name, START_DATA.get(name), run_id))
    return runs


def codec(args: argparse.Namespace) -> Any:
    """The codec to store through (tests/sample_codec.py), or None."""
    if not args.codec:
        return None
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from sample_codec import Base64Codec

    return Base64Codec()


async def main(args: argparse.Namespace) -> None:
    engine = treadle.Engine(
        treadle.SQLitePersistence(args.db), poll_interval=0.05, codec=codec(args)
    )
    for workflow in workflows():
        engine.register(workflow)
    async with engine:
        for name, data, run_id in starts(args.start):
            await engine.start(name, data, run_id=run_id)
        print("ready", flush=True)
        await asyncio.Event().wait()


def main_sync(args: argparse.Namespace) -> None:
    """The same on a SyncEngine: registered before it opens, runs started with blocking calls."""
    sync = treadle.SyncEngine(treadle.SQLitePersistence(args.db), poll_interval=0.05)
    for workflow in workflows():
        sync.register(workflow)
    with sync:
        for name, data, run_id in starts(args.start):
            sync.start(name, data, run_id=run_id)
        print("ready", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    ARGS = parse(sys.argv[1:])
    if ARGS.sync:
        main_sync(ARGS)
    else:
        asyncio.run(main(ARGS))
