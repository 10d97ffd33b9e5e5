"""The parallel map: a ``for_each`` body run for every element, at most ``max`` at a time.

What is durable, and where:

- The elements stay in the run's data (``data[over]``); the map's cursor entry
  (:class:`~.cursor.MapEntry`) holds their count, the first index never started and the
  completed and failed indexes as ranges. Iterations complete roughly in order, so the ranges
  are about as many as the iterations in flight: the entry, rewritten with every checkpoint,
  does not grow with the number of elements.
- Each iteration's result goes to ``data[name][index]`` (the list is made, all None, when the
  map starts) in the checkpoint of the step that produced it.
- An iteration in flight has its entries under ``name#index/`` like a loop's iteration; one
  started and not settled when the process died runs again (from its own position), with the
  same idempotency keys.
"""

from __future__ import annotations

import asyncio
import bisect
import json
from collections.abc import Iterator
from typing import Any

from .._errors import DataError
from .._nodes import MapStep, WaitStrategy
from .._state import EventKind, as_stored
from . import cursor
from .composites import elements
from .control import Held, PauseRequested, Scope, ShutdownRequested, StepFailure, Suspend
from .walk import Walk

_PARKED = (Held, Suspend, PauseRequested, ShutdownRequested)


def add(ranges: list[list[int]], i: int) -> None:
    """Add index ``i`` to sorted, disjoint ``[start, end)`` ranges, joining neighbours."""
    at = bisect.bisect_right(ranges, [i, i + 1])
    if at and ranges[at - 1][1] >= i + 1 and ranges[at - 1][0] <= i:
        return  # already there
    left = at > 0 and ranges[at - 1][1] == i
    right = at < len(ranges) and ranges[at][0] == i + 1
    if left and right:
        ranges[at - 1][1] = ranges[at][1]
        del ranges[at]
    elif left:
        ranges[at - 1][1] = i + 1
    elif right:
        ranges[at][0] = i
    else:
        ranges.insert(at, [i, i + 1])


def size(ranges: list[list[int]]) -> int:
    """How many indexes the ranges hold."""
    return sum(end - start for start, end in ranges)


def unsettled(entry: cursor.MapEntry) -> Iterator[int]:
    """The indexes to run: those started and not settled (in no range), then the rest."""
    settled = sorted(entry["done"] + entry["failed"])
    at = 0
    for start, end in settled:
        yield from range(at, min(start, entry["next"]))
        at = max(at, end)
    yield from range(at, entry["next"])
    yield from range(entry["next"], entry["n"])


def shown(value: Any) -> str:
    """A value in an error message, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def as_result(name: str, value: Any) -> Any:
    """A step's return value in its stored JSON form (raises :class:`DataError` if it has
    none), for a map's results list."""
    _, text = as_stored({name: value}, f"step {name!r}")
    return json.loads(text)[name]


def _bad_wait(driver: Walk, node: MapStep, total: int) -> None:
    needed = node.needed(total)
    if needed <= total and (total or node.strategy is WaitStrategy.ALL):
        return
    how = "WaitAny" if node.strategy is WaitStrategy.ANY else f"wait_count({node.count})"
    error = DataError(
        f"map {node.name!r}: {how} needs at least {max(needed, 1)} elements, "
        f"data[{node.over!r}] has {total}"
    )
    driver.note(EventKind.STEP_FAILED, node.name, error=str(error), final=True)
    raise StepFailure(node.name, error)


async def run_map(driver: Walk, node: MapStep, path: str, scope: Scope) -> None:
    """``loop(...).for_each(key).parallel(max=n)``: run the body for every element until the
    wait strategy is met, or fail once more iterations failed than it tolerates."""
    entry = cursor.map_at(driver.nodes, path)
    if entry is None:
        total = len(elements(driver, node.name, node.over))
        _bad_wait(driver, node, total)
        entry = {"k": "map", "n": total, "next": 0, "done": [], "failed": []}
        driver.nodes[path] = entry
        driver.set_data(node.name, [None] * total)
        driver.note(EventKind.MAP_STARTED, node.name, items=total, max=node.max)
    total = entry["n"]
    needed, tolerated = node.needed(total), node.tolerated(total)

    def met() -> bool:
        done = size(entry["done"])
        if node.strategy is WaitStrategy.ALL:
            return done + size(entry["failed"]) >= total
        return done >= needed

    todo = unsettled(entry)
    tasks: dict[asyncio.Task[None], int] = {}
    parked: list[BaseException] = []
    failure: StepFailure | None = None
    try:
        while not met():
            stopping = any(not isinstance(p, Suspend) for p in parked)
            while not stopping and len(tasks) + len(parked) < node.max:
                i = next(todo, None)
                if i is None:
                    break
                if i >= entry["next"]:
                    entry["next"] = i + 1
                    driver.touch()
                task = asyncio.create_task(_iteration(driver, node, path, i, total, tasks))
                tasks[task] = i
            if not tasks:
                break
            finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                i = tasks.pop(task)
                exc = task.exception()
                if exc is None:
                    add(entry["done"], i)
                    driver.note(EventKind.LOOP_ITERATION, node.name, iteration=i)
                elif isinstance(exc, StepFailure):
                    add(entry["failed"], i)
                    driver.note(
                        EventKind.LOOP_ITERATION,
                        node.name,
                        iteration=i,
                        failed=True,
                        error=str(exc),
                    )
                    failure = failure or exc
                    if size(entry["failed"]) > tolerated:
                        raise _too_many(node, entry, tolerated, exc)
                elif isinstance(exc, _PARKED):
                    parked.append(exc)
                else:
                    raise exc
            if tasks and driver.dirty and not met():
                # Iterations ended while others run: make them durable now, or a crash before
                # the map ends would run them again.
                await driver.flush()
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
    if met():
        done = size(entry["done"])
        reason = "items done" if done + size(entry["failed"]) >= total else "wait met"
        driver.note(EventKind.LOOP_ENDED, node.name, iterations=done, reason=reason)
        return
    for kind in (Held, (PauseRequested, ShutdownRequested)):
        first = next((p for p in parked if isinstance(p, kind)), None)
        if first is not None:  # one held step at a time; the others run again after it
            raise first
    suspensions = [p for p in parked if isinstance(p, Suspend)]
    if suspensions:
        raise Suspend.merge(suspensions)
    raise failure or StepFailure(node.name, RuntimeError("no iteration could complete"))


def _too_many(
    node: MapStep, entry: cursor.MapEntry, tolerated: int, first: StepFailure
) -> StepFailure:
    failed = size(entry["failed"])
    allowed = f"more than the {tolerated} tolerated" if tolerated else "none is tolerated"
    return StepFailure(
        node.name,
        DataError(f"{failed} of {entry['n']} iterations failed, {allowed}; the first: {first}"),
    )


async def _iteration(
    driver: Walk,
    node: MapStep,
    path: str,
    i: int,
    total: int,
    tasks: dict[asyncio.Task[None], int],
) -> None:
    here = cursor.iteration(path, i)
    items = elements(driver, node.name, node.over)
    if i >= len(items):
        error = DataError(
            f"map {node.name!r}: data[{node.over!r}] has {len(items)} elements, the map "
            f"began with {total}; its body may add elements, not remove them"
        )
        driver.note(EventKind.STEP_FAILED, node.name, error=str(error), final=True)
        raise StepFailure(node.name, error)
    inner = Scope(cursor.inside(here), items[i], i, i, node.name)
    me = asyncio.current_task()
    while True:
        try:
            await driver.run_seq(node.body, inner)
            driver.drop(here)
            return
        except Suspend as suspension:
            others = any(not t.done() for t in tasks if t is not me)
            if not (suspension.timer_only and others) or suspension.wake_at is None:
                raise
            # Siblings are still working: wait for this short timer in memory.
            await driver.host.clock.sleep_until(suspension.wake_at)
