"""A worker process for the concurrency-limit tests with several processes.

    python tests/workers/limits_worker.py URL EFFECTS_FILE HOST [--lease 2]

It runs the ``limited`` workflow (at most LIMIT runs at once per tenant: two plain steps that
each sleep a little) on ``persistence_from_url(URL)``, prints ``ready`` once open, and runs
until SIGTERM/SIGINT. Every step appends ``run_id<TAB>key<TAB>step<TAB>phase<TAB>pid<TAB>unix
time`` at its start and its end to EFFECTS_FILE (O_APPEND, one write a line). HOST stands in
for the machine's name in the engine's owner, so that a killed worker's runs are taken over
only when their leases expire.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import time
import uuid

import treadle

WORKFLOW = "limited"
LIMIT = 2


def build_workflow(effects: str) -> treadle.Workflow:
    """The limited workflow, recording its steps' start and end in ``effects``."""
    fd = os.open(effects, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def work(ctx: treadle.Context, state: treadle.State) -> None:
        key = state.data["tenant"]
        os.write(
            fd, f"{ctx.run_id}\t{key}\t{ctx.step}\tstart\t{os.getpid()}\t{time.time()}\n".encode()
        )
        time.sleep(random.uniform(0.05, 0.15))
        os.write(
            fd, f"{ctx.run_id}\t{key}\t{ctx.step}\tend\t{os.getpid()}\t{time.time()}\n".encode()
        )

    return (
        treadle.new(WORKFLOW)
        .concurrency(LIMIT, key=lambda s: s.data["tenant"])
        .step("work", work)
        .step("done", work)
        .build()
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("effects")
    parser.add_argument("host")
    parser.add_argument("--lease", type=float, default=2.0)
    args = parser.parse_args()
    engine = treadle.Engine(
        treadle.persistence_from_url(args.url), lease=args.lease, poll_interval=0.25
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
