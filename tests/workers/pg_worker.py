"""A worker process for the PostgreSQL damage test.

    python tests/workers/pg_worker.py DSN EFFECTS_FILE HOST [--lease 2] [--max-runs 20]

It builds an Engine on PostgresPersistence(DSN) with the ``damage`` workflow (STEPS steps, each
sleeping a little), prints ``ready`` once open, and runs until SIGTERM/SIGINT. Every execution of
a step appends one line ``run_id<TAB>step<TAB>pid<TAB>unix time`` to EFFECTS_FILE (O_APPEND, one
write: lines of concurrent processes never mix), and returns the pid, so the run's data tells
which execution's checkpoint was the one that committed. HOST is put in the engine's owner in
place of the machine's name, so that each worker looks like another machine and a dead one's
runs are taken over only when its leases expire.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import time
import uuid

import treadle

STEPS = ("s1", "s2", "s3", "s4")
WORKFLOW = "damage"


def build_workflow(effects: str) -> treadle.Workflow:
    """The workflow: STEPS steps that record their execution in ``effects``."""
    fd = os.open(effects, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def work(ctx: treadle.Context, state: treadle.State) -> int:
        line = f"{ctx.run_id}\t{ctx.step}\t{os.getpid()}\t{time.time():.6f}\n"
        os.write(fd, line.encode())
        await asyncio.sleep(random.uniform(0.1, 0.3))
        return os.getpid()

    builder = treadle.new(WORKFLOW)
    for name in STEPS:
        builder = builder.step(name, work)
    return builder.build()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("effects")
    parser.add_argument("host")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--max-runs", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format=f"[{args.host}] %(levelname)s %(message)s")
    from treadle.persistence._postgres import PostgresPersistence

    engine = treadle.Engine(
        PostgresPersistence(args.dsn),
        lease=args.lease,
        poll_interval=0.25,
        max_concurrent_runs=args.max_runs,
    )
    engine.owner = f"{args.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    engine.register(build_workflow(args.effects))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with engine:
        print("ready", engine.owner, flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
