"""``Persistence.queue_stats`` (the metrics' queue gauges) on every backend: WAITING runs per
kind of wait, and since when the oldest runnable run waits for an engine."""

from __future__ import annotations

from datetime import timedelta

from enginekit import EngineFactory

import treadle
from treadle.persistence._base import utcnow

LEAF = treadle.new("leaf").await_signal("done").build()
PARENT = treadle.new("parent").sub_workflow("child", "leaf").build()
MIXED = (
    treadle.new("mixed")
    .await_signal("go")
    .await_approval("boss", ["ann"])
    .sleep("nap", "1h")
    .build()
)


async def test_queue_stats_count_waiting_runs_per_kind_and_the_oldest_runnable(
    engine: treadle.Engine, make_engine: EngineFactory
) -> None:
    for workflow in (LEAF, PARENT, MIXED):
        engine.register(workflow)
    empty = await engine.persistence.queue_stats()
    assert empty.waiting == {} and empty.runnable_since is None
    await engine.start("parent", run_id="p")  # waits for its child, which waits for a signal
    await engine.start("mixed", run_id="m")
    await engine.settle()
    stats = await engine.persistence.queue_stats()
    assert stats.waiting == {"run": 1, "signal": 2}
    assert stats.runnable_since is None
    await engine.signal("m", "go")
    await engine.settle()
    assert (await engine.persistence.queue_stats()).waiting == {
        "run": 1,
        "signal": 1,
        "approval": 1,
    }

    # A run of a workflow that no executing engine has stays pending: runnable since then.
    before = utcnow()
    stored = treadle.new("elsewhere").step("s", lambda ctx, state: None).build()
    idle = await make_engine(stored, max_concurrent_runs=0)
    await idle.start("elsewhere", run_id="queued")
    since = (await engine.persistence.queue_stats()).runnable_since
    assert since is not None
    assert before - timedelta(seconds=1) <= since <= utcnow()
