"""The app of the backlog tests: ``treadle worker backlog_app:workflow`` executes the ``backlog``
workflow, three plain steps that sleep ``BACKLOG_STEP_SECONDS`` (0.2) each.

Every execution of a step appends ``run_id<TAB>step<TAB>pid<TAB>phase<TAB>unix time`` to the
file ``BACKLOG_EFFECTS`` names, once as it starts (``start``) and once as it returns (``end``);
one ``O_APPEND`` write each, so that the lines of concurrent processes never mix.
"""

from __future__ import annotations

import os
import time

import treadle

STEPS = ("s1", "s2", "s3")
SECONDS = float(os.environ.get("BACKLOG_STEP_SECONDS", "0.2"))


def _record(ctx: treadle.Context, phase: str) -> None:
    path = os.environ.get("BACKLOG_EFFECTS")
    if path is None:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        line = f"{ctx.run_id}\t{ctx.step}\t{os.getpid()}\t{phase}\t{time.time():.6f}\n"
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def work(ctx: treadle.Context, state: treadle.State) -> None:
    """A plain step: record its start, sleep, record its end."""
    _record(ctx, "start")
    time.sleep(SECONDS)
    _record(ctx, "end")


def build() -> treadle.Workflow:
    """The ``backlog`` workflow."""
    builder = treadle.new("backlog")
    for name in STEPS:
        builder = builder.step(name, work)
    return builder.build()


workflow = build()
