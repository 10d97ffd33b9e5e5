"""The dashboard's diagram draws a parallel map with its position: how many iterations are
done, running and failed, from a real run's history (on every persistence)."""

from __future__ import annotations

import asyncio
from typing import Any

from enginekit import start

import treadle
from treadle import Context, State, Status
from treadle.web._diagram import Box, diagram, progress


def find(boxes: list[Box], name: str) -> Box:
    """The box of step ``name``, at any depth."""
    for box in boxes:
        if box.name == name:
            return box
        for arm in box.seqs:
            try:
                return find(arm.steps, name)
            except LookupError:
                pass
    raise LookupError(name)


async def test_the_diagram_shows_iterations_done_running_and_failed(
    engine: treadle.Engine,
) -> None:
    release = asyncio.Event()
    blocked = 0

    async def ship(ctx: Context, state: State) -> Any:
        nonlocal blocked
        if ctx.item == "bad":
            raise treadle.NonRetryableError("no stock")
        if ctx.index >= 6:
            blocked += 1
            await release.wait()
        return ctx.item

    items = ["a", "b", "bad", "c", "d", "e", "f", "g", "h", "i"]
    wf = (
        treadle.new("drawn")
        .loop("ship-all")
        .for_each("items")
        .parallel(max=3, tolerate=1)
        .do(treadle.step("ship", ship))
        .end()
        .build()
    )
    run_id = await start(engine, wf, {"items": items})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        events = await engine.history(run_id)
        done = sum(1 for e in events if e.kind == "loop_iteration")
        if blocked == 3 and done == 6:
            break
        assert loop.time() < deadline, f"the map did not get there: {blocked}, {done}"
        await asyncio.sleep(0.01)
    state = await engine.status(run_id)
    box = find(diagram(wf.describe()["steps"], progress(state, events)), "ship-all")
    assert box.kind == "map" and box.title == "⇉ map ship-all"
    assert box.meta == "for each items · max 3 · tolerate 1 · 5/10 done, 3 running, 1 failed"
    assert box.state in ("visited", "failed")

    release.set()
    final = await engine.wait(run_id, 10)
    assert final.status is Status.COMPLETED, final.error
    events = await engine.history(run_id)
    box = find(diagram(wf.describe()["steps"], progress(final, events)), "ship-all")
    assert box.meta.endswith("9/10 done, 1 failed")
    assert box.state == "done"
