"""A run's result: what its workflow's ``output`` makes of the state when the run completes."""

from __future__ import annotations

import json

from .._errors import DataError
from .._params import evaluate
from .._state import EventKind
from .._typed import json_form
from .control import StepFailure
from .walk import Walk

OUTPUT = "output"
"""The name under which a failing output is reported (it is not a step of the definition)."""


async def output(driver: Walk) -> str | None:
    """The run's result as JSON text, or None when its workflow declares no output.

    An output function that raises, or returns what has no JSON form, fails the run as a step
    named ``output`` would (its completed steps are compensated)."""
    fn = driver.workflow.output
    if fn is None:
        return None
    try:
        value = await evaluate(fn, driver.view())
        return json.dumps(value, separators=(",", ":"), allow_nan=False, default=json_form)
    except Exception as exc:
        error = exc
        if isinstance(exc, TypeError | ValueError):
            error = DataError(f"the output of workflow {driver.workflow.name!r} is not JSON: {exc}")
        driver.note(EventKind.STEP_FAILED, OUTPUT, error=f"{type(error).__name__}: {error}")
        raise StepFailure(OUTPUT, error) from exc
