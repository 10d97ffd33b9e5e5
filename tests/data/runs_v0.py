"""The workflows of ``runs-v0.db`` and the script that wrote it.

``runs-v0.db`` is a SQLite database written by treadle as it was before the cursor got types and a
version (commit ce5d53f): runs left waiting on a signal inside a parallel branch, in the middle of
a ``for_each`` loop, on an approval with one of two votes, on a timer, on a retry, on a child run,
paused, and interrupted in the middle of a step. ``tests/test_engine_old_runs.py`` opens a copy of
it with the code of today and drives every run to its end.

Write it again (only if the old format itself must change, which it must not)::

    PYTHONPATH=. python tests/data/runs_v0.py tests/data/runs-v0.db
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import treadle
from treadle import Context, State

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

#: Set while the fixture is written: the step "blocker" then hangs until the engine closes.
BLOCK = asyncio.Event()
#: Set once "blocker" has started.
BLOCKED = asyncio.Event()


def mark(ctx: Context, state: State) -> str:
    return f"{ctx.step}#{ctx.attempt}"


def pack(ctx: Context, state: State) -> None:
    state.data.setdefault("packed", []).append(ctx.item)
    state.data["last"] = ctx.item


def unreserve(ctx: Context, state: State) -> None:
    state.data["unreserved"] = True


def flaky(ctx: Context, state: State) -> int:
    if ctx.attempt == 1:
        raise RuntimeError("the first attempt fails")
    return ctx.attempt


async def blocker(ctx: Context, state: State) -> str:
    if BLOCK.is_set():
        BLOCKED.set()
        await asyncio.Event().wait()  # until the engine closes and cancels it
    return "unblocked"


def workflows() -> list[treadle.Workflow]:
    """Every workflow of the fixture (the same definitions both times)."""
    right = (
        treadle.new("right-branch")
        .step("right-1", mark)
        .await_signal("go")
        .timeout("720h")
        .step("right-2", mark)
        .build()
    )
    gate = (
        treadle.new("gate")
        .if_("big", lambda s: s.data["last"] > 1)
        .then(treadle.new("ask").await_signal("ack").build())
        .end()
        .build()
    )
    return [
        treadle.new("fan")
        .step("prepare", mark)
        .parallel("both", treadle.step("left", mark), right)
        .step("finish", mark)
        .build(),
        treadle.new("each")
        .loop("items-loop")
        .for_each("items")
        .do(treadle.step("pack", pack), gate)
        .end()
        .step("done", mark)
        .build(),
        treadle.new("approve")
        .step("reserve", mark, compensate=unreserve)
        .await_approval("manager", ["alice", "bob"])
        .quorum(2)
        .step("ship", mark)
        .build(),
        treadle.new("nap").step("before", mark).sleep("siesta", "2h").step("after", mark).build(),
        treadle.new("retrying")
        .step("flaky", flaky, retry=treadle.RetryPolicy().attempts(3).backoff("10m", "10m"))
        .build(),
        treadle.new("child").step("child-1", mark).await_signal("child-go").build(),
        treadle.new("parent")
        .step("parent-1", mark)
        .sub_workflow("kid", "child", {"n": 1})
        .step("parent-2", mark)
        .build(),
        treadle.new("pausable").step("one", mark).await_signal("go").step("two", mark).build(),
        treadle.new("interrupted")
        .step("first", mark)
        .step("blocker", blocker)
        .step("last", mark)
        .build(),
    ]


#: run id -> (workflow, data): the runs of the fixture.
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "fan-1": ("fan", {}),
    "each-1": ("each", {"items": [1, 2, 3]}),
    "approve-1": ("approve", {}),
    "approve-2": ("approve", {}),
    "nap-1": ("nap", {}),
    "retrying-1": ("retrying", {}),
    "parent-1": ("parent", {}),
    "pausable-1": ("pausable", {}),
    "interrupted-1": ("interrupted", {}),
}


async def write(path: Path) -> None:
    """Write the fixture database at ``path`` (which must not exist)."""
    BLOCK.set()
    engine = treadle.Engine(
        treadle.SQLitePersistence(str(path)), clock=treadle.FakeClock(START), poll_interval=0.2
    )
    for workflow in workflows():
        engine.register(workflow)
    await engine.open()
    for run_id, (name, data) in RUNS.items():
        if name != "interrupted":
            await engine.start(name, data, run_id=run_id)
    await engine.settle()
    await engine.approve("approve-1", "manager", by="alice", comment="fine by me")
    await engine.approve("approve-2", "manager", by="bob")
    await engine.signal("each-1", "ack", "first ack")
    await engine.pause("pausable-1")
    await engine.settle()
    await engine.start("interrupted", {}, run_id="interrupted-1")
    await asyncio.wait_for(BLOCKED.wait(), 10)
    await engine.close(drain=0.1)
    for run_id, state in sorted(await _states(path)):
        print(run_id, state)


async def _states(path: Path) -> list[tuple[str, str]]:
    async with treadle.Engine(treadle.SQLitePersistence(str(path)), max_concurrent_runs=0) as e:
        return [(r.id, f"{r.status.value} {r.waiting_for}") for r in await e.runs()]


if __name__ == "__main__":
    target = Path(sys.argv[1])
    if target.exists():
        raise SystemExit(f"{target} exists: remove it first")
    asyncio.run(write(target))
