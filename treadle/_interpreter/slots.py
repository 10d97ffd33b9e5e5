"""Where a step's value goes: ``data[name]``, or inside a parallel map its iteration's slot of
the map's results."""

from __future__ import annotations

from typing import Any

from .control import Scope
from .walk import Walk


def store(driver: Walk, scope: Scope, name: str, value: Any) -> None:
    """Store a step's value: at ``data[name]``, or inside a map as its iteration's result."""
    results = driver.data.get(scope.collect) if scope.collect is not None else None
    if scope.collect is None or not isinstance(results, list) or scope.index is None:
        driver.set_data(name, value)
    elif scope.index < len(results):
        driver.set_slot(scope.collect, scope.index, value)
