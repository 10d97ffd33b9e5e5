"""What a stored definition (its JSON shape, ``Workflow.describe()``) lets a run receive."""

from __future__ import annotations

from typing import Any, NamedTuple


class Waits(NamedTuple):
    """The signals and the approvals (by name, with their specs) a definition awaits (shared
    by every caller: read them, do not change them)."""

    signals: set[str]
    approvals: dict[str, dict[str, Any]]


def waits_of(shape: dict[str, Any]) -> Waits:
    """Every signal and approval awaited anywhere in ``shape``."""
    signals: set[str] = set()
    approvals: dict[str, dict[str, Any]] = {}
    stack = [shape]
    while stack:
        node = stack.pop()
        kind = node.get("kind")
        if kind == "signal":
            signals.add(node["name"])
        elif kind == "approval":
            approvals[node["name"]] = node
        stack.extend(node.get("steps", []))
        stack.extend(node.get("branches", []))
    return Waits(signals, approvals)
