"""Computing a step's parameters from the run's data, once, and reading them back.

The values are recorded in the step's cursor entry (``p``) and in the history
(``params_computed``) before anything depends on them, so a recovered run reuses them and never
calls the functions again (see :mod:`treadle._params`).
"""

from __future__ import annotations

from typing import Any

from .._errors import DefinitionError
from .._nodes import ActionStep, Node, dynamic_params
from .._params import CHECKS, evaluate
from .._state import EventKind
from .control import StepFailure
from .walk import Walk


async def compute(driver: Walk, node: Node, item: Any = None) -> dict[str, Any]:
    """Evaluate ``node``'s dynamic parameters now (a function that takes the element too gets
    ``item``), check them and note them in the history (empty when it has none); a function
    that raises or returns a bad value fails the step."""
    functions = dynamic_params(node)
    if not functions:
        return {}
    state = driver.view()
    values: dict[str, Any] = {}
    for name, fn in sorted(functions.items()):
        try:
            values[name] = CHECKS[name](node.name, await evaluate(fn, state, item))
        except Exception as exc:
            error = exc
            if not isinstance(exc, DefinitionError):
                error = DefinitionError(f"step {node.name!r}: computing {name} raised {exc!r}")
            driver.note(EventKind.STEP_FAILED, node.name, error=str(error), final=True)
            raise StepFailure(node.name, error) from exc
    driver.note(EventKind.PARAMS_COMPUTED, node.name, params=values)
    return values


def recorded(driver: Walk, path: str) -> dict[str, Any]:
    """The parameters recorded in the entry at ``path`` (empty when none are)."""
    entry = driver.nodes.get(path)
    found = entry.get("p") if isinstance(entry, dict) else None
    return dict(found) if isinstance(found, dict) else {}


async def attempts(driver: Walk, node: ActionStep, path: str) -> None:
    """Record the retry attempts of a step whose policy computes them, before its first
    attempt (the entry then holds no retry time, only the parameters)."""
    if "attempts" not in dynamic_params(node) or "p" in (driver.nodes.get(path) or {}):
        return
    values = await compute(driver, node)
    driver.nodes[path] = {"k": node.kind, "a": 0, "p": values}
    driver.touch()
