"""The composite steps: branches, loops and parallel branches, each recorded in the cursor."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .._calls import call_condition
from .._errors import DataError
from .._nodes import IfStep, LoopStep, Node, ParallelStep
from .._state import EventKind, State
from . import cursor, losers
from .control import Held, PauseRequested, Scope, ShutdownRequested, StepFailure, Suspend
from .walk import Walk


async def condition(driver: Walk, node: Node, cond: Callable[[State], Any]) -> bool:
    """Evaluate a condition of ``node``; one that raises fails the step."""
    try:
        return await call_condition(cond, driver.view())
    except Exception as exc:
        driver.note(EventKind.STEP_FAILED, node.name, error=f"condition raised {exc!r}", final=True)
        raise StepFailure(node.name, exc) from exc


async def run_if(driver: Walk, node: IfStep, path: str, scope: Scope) -> None:
    """``if_``: take the first branch whose condition holds (recorded, so taken again)."""
    entry = cursor.if_at(driver.nodes, path)
    if entry is None:
        chosen = -1
        for index, branch in enumerate(node.branches):
            if branch.cond is None or await condition(driver, node, branch.cond):
                chosen = index
                break
        driver.nodes[path] = cursor.IfEntry(k="if", b=chosen)
        is_else = chosen >= 0 and node.branches[chosen].cond is None
        driver.note(EventKind.BRANCH_TAKEN, node.name, branch=chosen, otherwise=is_else)
    else:
        chosen = entry["b"]
    if chosen >= 0:
        await driver.run_seq(node.branches[chosen].steps, scope.inside(path))


async def run_loop(driver: Walk, node: LoopStep, path: str, scope: Scope) -> None:
    """``loop``: run the body per iteration until an end condition (each recorded)."""
    entry = cursor.loop_at(driver.nodes, path)
    if entry is None:
        entry = {"k": "loop", "i": 0, "in": False}
        if node.for_each is not None:
            entry["n"] = len(elements(driver, node.name, node.for_each))
        driver.nodes[path] = entry
        driver.touch()
    # The elements stay in the run's data: the entry, written with every checkpoint, holds
    # only their count (or, written by an older treadle, the elements themselves).
    count = entry.get("n", len(entry.get("items") or ())) if node.for_each else None
    while True:
        i = entry["i"]
        if not entry["in"]:
            reason = None
            if count is not None and i >= count:
                reason = "items done"
            elif node.max_iterations is not None and i >= node.max_iterations:
                reason = "max_iterations"
            elif node.while_ is not None and not await condition(driver, node, node.while_):
                reason = "while_ false"
            if reason is not None:
                driver.note(EventKind.LOOP_ENDED, node.name, iterations=i, reason=reason)
                return
            entry["in"] = True
            driver.touch()
        here = cursor.iteration(path, i)
        if count is not None:
            inner = Scope(cursor.inside(here), element(driver, node, entry, i, count), i, i)
        else:
            inner = Scope(cursor.inside(here), scope.item, scope.index, i)
        await driver.run_seq(node.body, inner)
        driver.drop(here)
        stop = node.break_when is not None and await condition(driver, node, node.break_when)
        entry = {"k": "loop", "i": i + 1, "in": False}
        if count is not None:
            entry["n"] = count
        driver.nodes[path] = entry
        driver.note(EventKind.LOOP_ITERATION, node.name, iteration=i)
        if stop:
            driver.note(EventKind.LOOP_ENDED, node.name, iterations=i + 1, reason="break_when")
            return


def elements(driver: Walk, name: str, key: str) -> list[Any]:
    """The list a ``for_each`` iterates over, ``data[key]``; anything else fails the step."""
    items = driver.data.get(key)
    if not isinstance(items, list):
        text = repr(items) if len(repr(items)) <= 60 else repr(items)[:59] + "…"
        error = DataError(
            f"loop {name!r}: data[{key!r}] must be a list, not {type(items).__name__} {text}"
        )
        driver.note(EventKind.STEP_FAILED, name, error=str(error), final=True)
        raise StepFailure(name, error)
    return items


def element(driver: Walk, node: LoopStep, entry: cursor.LoopEntry, i: int, count: int) -> Any:
    """Element ``i`` of a ``for_each``: read from the run's data, where the list may have
    grown since the loop began (the count is fixed then) but may not have shrunk."""
    if "items" in entry:
        return entry["items"][i]  # type: ignore[index]
    assert node.for_each is not None
    items = elements(driver, node.name, node.for_each)
    if i >= len(items):
        error = DataError(
            f"loop {node.name!r}: data[{node.for_each!r}] has {len(items)} elements, the loop "
            f"began with {count}; a for_each body may add elements, not remove them"
        )
        driver.note(EventKind.STEP_FAILED, node.name, error=str(error), final=True)
        raise StepFailure(node.name, error)
    return items[i]


async def run_parallel(driver: Walk, node: ParallelStep, path: str, scope: Scope) -> None:
    """``parallel``: run the branches at once until the wait strategy is met or cannot be."""
    entry = cursor.parallel_at(driver.nodes, path)
    if entry is None:
        entry = {"k": "parallel", "done": [], "failed": []}
        driver.nodes[path] = entry
    needed, total = node.needed, len(node.branches)
    if len(entry["done"]) >= needed:
        await losers.settle(driver, node, path, entry["done"])  # again, after a crash
        return
    inner = scope.inside(path)
    settled = set(entry["done"]) | set(entry["failed"])
    tasks: dict[asyncio.Task[None], Node] = {}
    for branch in node.branches:
        if branch.name not in settled:
            tasks[asyncio.create_task(_branch(driver, branch, inner, tasks))] = branch
    held: list[BaseException] = []
    failure: StepFailure | None = None
    try:
        while tasks and len(entry["done"]) < needed:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                branch = tasks.pop(task)
                exc = task.exception()
                if exc is None:
                    entry["done"].append(branch.name)
                    driver.touch()
                elif isinstance(exc, StepFailure):
                    entry["failed"].append(branch.name)
                    driver.touch()
                    failure = failure or exc
                    if total - len(entry["failed"]) < needed:
                        raise exc
                elif isinstance(exc, Held | Suspend | PauseRequested | ShutdownRequested):
                    held.append(exc)
                else:
                    raise exc
            if tasks and driver.dirty and len(entry["done"]) < needed:
                # A branch ended while others still run: make its completed steps durable
                # now, or a crash before the parallel ends would run them again.
                await driver.flush()
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
    if len(entry["done"]) >= needed:
        driver.note(EventKind.PARALLEL_COMPLETED, node.name, done=list(entry["done"]))
        await losers.settle(driver, node, path, entry["done"])
        return
    holds = [h for h in held if isinstance(h, Held)]
    if holds:  # one held step at a time: the others run again after it is dealt with
        raise holds[0]
    pauses = [h for h in held if isinstance(h, PauseRequested | ShutdownRequested)]
    if pauses:
        raise pauses[0]
    suspensions = [h for h in held if isinstance(h, Suspend)]
    if suspensions:
        raise Suspend.merge(suspensions)
    raise failure or StepFailure(node.name, RuntimeError("no branch could complete"))


async def _branch(
    driver: Walk, branch: Node, scope: Scope, tasks: dict[asyncio.Task[None], Node]
) -> None:
    me = asyncio.current_task()
    while True:
        try:
            await driver.run_node(branch, scope)
            return
        except Suspend as suspension:
            others = any(not t.done() for t in tasks if t is not me)
            if not (suspension.timer_only and others) or suspension.wake_at is None:
                raise
            # Siblings are still working: wait for this short timer in memory.
            await driver.host.clock.sleep_until(suspension.wake_at)
