"""A worker process for the rolling-deployment damage tests (tests/test_engine_rolling.py).

    python rolling_worker.py STORE EFFECTS --version 1 [--version 2] [--lease 2]
    python rolling_worker.py STORE EFFECTS --migrate-to 2

STORE is a PostgreSQL DSN (``postgresql://...``) or a SQLite file. The first form opens an
engine that has the definitions of ``order`` given by ``--version`` (and ``repair``), prints
``ready <owner>`` and executes runs until SIGTERM or SIGKILL. The second opens a control-only
engine with both definitions, prints ``ready``, and moves every waiting run of ``order`` onto
``--migrate-to`` with ``Engine.migrate_runs``, appending ``before <run>``/``after <run>`` to
EFFECTS around each run's move, then exits.

Every step execution appends ``run<TAB>step<TAB>version<TAB>pid<TAB>phase`` to EFFECTS
(O_APPEND, one write, so lines of several processes never mix) and returns ``version:pid``,
which the run's data keeps under the step's name. Marker files next to EFFECTS steer the steps:

- ``EFFECTS.gate``: step ``b`` of a run whose data has ``block`` writes a ``started`` line and
  waits while the file exists (so the test can kill the process inside it);
- ``EFFECTS.fail``: step ``charge`` of ``repair`` fails for good while the file exists;
- ``EFFECTS.block``: step ``charge`` writes ``started`` and waits while the file exists.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from typing import Any

import treadle

ORDER = "order"
REPAIR = "repair"


def effect(effects: str, ctx: treadle.Context, version: str, phase: str) -> None:
    """Append one line of what a step did."""
    line = f"{ctx.run_id}\t{ctx.step}\t{version}\t{os.getpid()}\t{phase}\n"
    fd = os.open(effects, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _wait_while(path: str) -> None:
    while os.path.exists(path):
        time.sleep(0.02)


def order(version: str, effects: str) -> treadle.Workflow:
    """``order`` v1 (a, go, b) or v2 (a, go, check, confirm, b)."""

    def step(ctx: treadle.Context, state: treadle.State) -> str:
        if ctx.step == "b" and state.data.get("block"):
            effect(effects, ctx, version, "started")
            _wait_while(effects + ".gate")
        effect(effects, ctx, version, "do")
        return f"{version}:{os.getpid()}"

    builder = treadle.new(ORDER, version=version).step("a", step).await_signal("go")
    if version == "2":
        builder = builder.step("check", step).await_signal("confirm")
    return builder.step("b", step).build()


def repair(effects: str) -> treadle.Workflow:
    """``repair``: prep, charge (which may fail or block, see the module doc), ship; a step
    failing for good holds the run."""

    def step(ctx: treadle.Context, state: treadle.State) -> str:
        if ctx.step == "charge":
            effect(effects, ctx, "r", "start")
            if os.path.exists(effects + ".fail"):
                raise treadle.NonRetryableError("the card is declined")
            if os.path.exists(effects + ".block"):
                effect(effects, ctx, "r", "started")
                _wait_while(effects + ".block")
        effect(effects, ctx, "r", "do")
        return f"r:{os.getpid()}"

    return (
        treadle.new(REPAIR, on_failure="hold")
        .step("prep", step)
        .step("charge", step)
        .step("ship", step)
        .build()
    )


def persistence(store: str) -> treadle.Persistence:
    """PostgreSQL for a DSN, else a SQLite file."""
    if store.startswith("postgres"):
        return treadle.PostgresPersistence(store)
    return treadle.SQLitePersistence(store)


async def work(args: argparse.Namespace) -> None:
    engine = treadle.Engine(persistence(args.store), lease=args.lease, poll_interval=0.05)
    engine.register(*(order(v, args.effects) for v in args.version), repair(args.effects))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with engine:
        print("ready", engine.owner, flush=True)
        await stop.wait()


async def migrate(args: argparse.Namespace) -> None:
    store = persistence(args.store)
    engine = treadle.Engine(store, max_concurrent_runs=0)
    engine.register(order("1", args.effects), order("2", args.effects))
    real = store.migrate_run

    async def logged(run_id: str, *rest: Any, **options: Any) -> Any:
        os.write(log, f"before {run_id}\n".encode())
        record = await real(run_id, *rest, **options)
        os.write(log, f"after {run_id}\n".encode())
        return record

    log = os.open(args.effects, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    store.migrate_run = logged  # type: ignore[method-assign]
    async with engine:
        print("ready", engine.owner, flush=True)
        plans = await engine.migrate_runs(ORDER, to=args.migrate_to, by="rolling test")
        print("moved", sum(p.moved for p in plans), flush=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("effects")
    parser.add_argument("--version", action="append", default=[])
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--migrate-to")
    args = parser.parse_args(argv)
    asyncio.run(migrate(args) if args.migrate_to else work(args))


if __name__ == "__main__":
    main(sys.argv[1:])
