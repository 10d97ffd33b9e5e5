"""The branches that lose a ``parallel`` any/count: their children are ended as their
``on_parent_end`` says, and with ``compensate_losers()`` their completed steps are undone.

Both happen when the parallel step has succeeded, before the checkpoint that forgets the
losing branches' entries, and again on a recovery that finds the step done: a crash in between
cancels a child twice (harmless) and runs the compensation under way once more at most.
"""

from __future__ import annotations

from .._calls import call_step
from .._nodes import ActionStep, ParallelStep
from .._state import EventKind
from .._text import storable
from . import cursor
from .deadlines import children, started
from .saga import compensation_context
from .walk import Walk


async def settle(driver: Walk, node: ParallelStep, path: str, done: list[str]) -> None:
    """End the children of the losing branches and undo their steps (see the module)."""
    prefix = cursor.inside(path)
    losing = [cursor.join(prefix, b.name) for b in node.branches if b.name not in done]
    if not losing:
        return
    doomed = {child for branch in losing for child in children(driver.nodes, branch)}
    if doomed:
        await driver.host.cancel_children(driver.run_id, started(driver.nodes) - doomed)
    if not node.compensate_losers:
        return
    while True:
        undo = [c for c in driver.comp if any(_under(c[0], b) for b in losing)]
        if not undo:
            return
        await _undo(driver, undo[-1])


def _under(path: str, branch: str) -> bool:
    return path == branch or path.startswith(cursor.below(branch))


async def _undo(driver: Walk, entry: cursor.CompensationEntry) -> None:
    """Run one compensation of a losing branch once (no retry: the run goes on either way)."""
    path, name, index, item = entry
    node = driver.by_name.get(name)
    await driver.flush()
    if isinstance(node, ActionStep) and node.compensate is not None:
        state = driver.view()
        ctx = compensation_context(driver, node, path, index, item, 1, state)
        state.data, base, since = driver.copy()
        error = None
        try:
            await call_step(node.compensate, ctx, state, node.timeout_seconds, driver.host.threads)
            sealed = driver.seal(state.data, base, f"compensation of {name!r}")
        except Exception as exc:
            error = storable(f"{type(exc).__name__}: {exc}")
        finally:
            driver.release(since)
        if error is None:
            driver.merge(name, sealed, base, since)
            driver.note(EventKind.COMPENSATED, name, loser=True)
        else:
            driver.note(EventKind.COMPENSATION_FAILED, name, error=error, loser=True)
    driver.comp.remove(entry)
    await driver.checkpoint()
