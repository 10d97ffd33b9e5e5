"""A definition's shape as one run sees it: the parameters its steps computed from the run's
data (``State.params``, as recorded when each step started) in place of the static ones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

_SHOWN = {"approvers": "approvers", "quorum": "quorum", "workflow": "workflow"}


def with_params(shape: dict[str, Any], params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``shape`` (not changed) with each step's computed parameters filled in."""
    if not params:
        return shape
    out = dict(shape)
    computed = params.get(str(shape.get("name")), {})
    for key, field in _SHOWN.items():
        if key in computed:
            out[field] = computed[key]
    if "until" in computed:
        out["until"] = datetime.fromtimestamp(float(computed["until"]), UTC).isoformat()
    for key in ("timeout", "duration"):
        if key in computed:
            out["timeout"] = computed[key]
    if "steps" in shape:
        out["steps"] = [with_params(s, params) for s in shape["steps"]]
    if "branches" in shape:
        out["branches"] = [with_params(b, params) for b in shape["branches"]]
    return out
