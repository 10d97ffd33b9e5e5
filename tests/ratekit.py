"""Counting calls per window, for the rate-limit tests."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import treadle
from treadle._interpreter.rates import late_by

SLACK = 0.15
"""Seconds of scheduling noise allowed on top of the documented lateness: between the engine
letting a call go and the step function starting (a thread hand-off) a loaded 2-core machine
has been seen to take 100 ms. A limiter that let calls through even 30% faster than its rate
still fails the check."""


def most_in_window(times: Sequence[float], width: float) -> int:
    """The most calls that fall in any half-open window ``[t, t + width)``."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + width) - i for i, t in enumerate(ordered)), default=0
    )


def allowed(limit: treadle.RateLimit) -> int:
    """The most calls that the documented rule lets into one window of ``limit.per``."""
    return limit.limit + limit.capacity - 1


def window(limit: treadle.RateLimit) -> float:
    """The window the tests count in: ``per``, less the lateness that a call is allowed (its
    reserved time is exact; the call starts at most :func:`late_by` later) and some noise."""
    return limit.per_seconds - late_by(limit) - SLACK


def check_calls(times: Sequence[float], limit: treadle.RateLimit) -> None:
    """Assert that no window holds more calls than ``limit`` allows."""
    most = most_in_window(times, window(limit))
    assert most <= allowed(limit), (
        f"{most} calls within {window(limit):.3f}s, more than the {allowed(limit)} that "
        f"{limit.describe()} allows: {sorted(times)}"
    )
