"""A worker process for the rate-limit tests.

    python tests/workers/rate_worker.py DB_URL CALLS_FILE HOST [--lease 2] [--limit 5]
        [--per 1s] [--burst N] [--offset SECONDS]

It runs an Engine on DB_URL (``postgresql://...`` or a SQLite path) with the ``rated``
workflow (see :func:`build_workflow`), prints ``ready`` once open, and runs until SIGTERM/SIGINT.
Every call of the rate-limited step appends ``run_id<TAB>attempt<TAB>unix time<TAB>pid`` to
CALLS_FILE
(O_APPEND, one write: lines of concurrent processes never mix). ``--offset`` moves the engine's
clock by that many seconds (clock skew between workers). HOST is put in the engine's owner in
place of the machine's name, so that a dead worker's runs are taken over when its leases expire.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
import uuid
from datetime import datetime, timedelta

import treadle

WORKFLOW = "rated"


class SkewedClock(treadle.RealClock):
    """The real clock, ``offset`` seconds off."""

    def __init__(self, offset: float) -> None:
        self.offset = timedelta(seconds=offset)

    def now(self) -> datetime:
        """The skewed time."""
        return super().now() + self.offset


def build_workflow(calls: str, limit: treadle.RateLimit) -> treadle.Workflow:
    """``prepare`` (not limited), then ``call`` under ``limit``: it records each call in
    ``calls``, takes a little while (a kill may land in it), and fails the first attempt of
    runs whose data says ``fail`` (so that retries take calls too)."""
    fd = os.open(calls, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def call(ctx: treadle.Context, state: treadle.State) -> int:
        os.write(fd, f"{ctx.run_id}\t{ctx.attempt}\t{time.time():.6f}\t{os.getpid()}\n".encode())
        await asyncio.sleep(0.05)
        if state.data.get("fail") and ctx.attempt == 1:
            raise RuntimeError("the partner said no")
        return ctx.attempt

    retry = treadle.RetryPolicy().attempts(3).backoff("50ms", "50ms")
    return (
        treadle.new(WORKFLOW)
        .step("prepare", lambda ctx, state: None)
        .step("call", call, rate_limit=limit, retry=retry)
        .build()
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("calls")
    parser.add_argument("host")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--per", default="1s")
    parser.add_argument("--burst", type=int, default=None)
    parser.add_argument("--offset", type=float, default=0.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format=f"[{args.host}] %(levelname)s %(message)s")
    engine = treadle.Engine(
        treadle.persistence_from_url(args.db),
        lease=args.lease,
        poll_interval=0.25,
        clock=SkewedClock(args.offset),
    )
    engine.owner = f"{args.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    limit = treadle.RateLimit("partner", args.limit, per=args.per, burst=args.burst)
    engine.register(build_workflow(args.calls, limit))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with engine:
        print("ready", engine.owner, flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
