"""Run priority: which runnable work engines claim first."""

from __future__ import annotations

MIN_PRIORITY = -1000
MAX_PRIORITY = 1000


def check_priority(value: object) -> int:
    """``value`` if it is an int from :data:`MIN_PRIORITY` to :data:`MAX_PRIORITY`; else a
    :class:`ValueError` that says so."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(
            f"priority must be an int from {MIN_PRIORITY} to {MAX_PRIORITY}, not "
            f"{type(value).__name__} {value!r}"
        )
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(
            f"priority {value} is out of range: use an int from {MIN_PRIORITY} to "
            f"{MAX_PRIORITY} (higher is claimed first; the default is 0)"
        )
    return value
