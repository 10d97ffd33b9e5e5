"""Due times of schedules: the next, the latest missed, and the run id and jitter of each."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from treadle.cron._expression import CronExpression

_MICROSECOND = timedelta(microseconds=1)
_MINUTE = timedelta(minutes=1)


def run_id_for(schedule_id: str, due: datetime) -> str:
    """The deterministic id of the run that schedule ``schedule_id`` starts for ``due``."""
    return f"cron:{schedule_id}:{utc_text(due)}"


def utc_text(when: datetime) -> str:
    """``when`` in UTC as ISO 8601 text ending in ``Z``."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def jitter_delay(
    schedule_id: str, due: datetime, jitter: timedelta | None, gap: timedelta
) -> timedelta:
    """The delay of the run for ``due``: in ``[0, min(jitter, gap / 2))``, the same every time.

    ``gap`` is the time from ``due`` to the following due time; capping the delay at half of it
    keeps the runs of a schedule in the order of their due times.
    """
    if not jitter:
        return timedelta(0)
    bound = min(jitter, gap / 2)
    digest = hashlib.blake2b(f"{schedule_id}\n{utc_text(due)}".encode(), digest_size=8).digest()
    fraction = int.from_bytes(digest, "big") / 2**64
    return timedelta(microseconds=int(bound / _MICROSECOND * fraction))


def next_due(expr: CronExpression, after: datetime) -> datetime:
    """The first due time strictly after ``after``, in UTC."""
    return expr.next_fire(after).astimezone(UTC)


def latest_due(expr: CronExpression, first: datetime, at: datetime) -> datetime:
    """The latest due time in ``[first, at]``; ``first`` is a due time not after ``at``.

    ``@every`` due times lie on the grid ``first + k * interval``; five-field ones are found by
    bisection, so that a long downtime costs a few dozen evaluations, not one per missed time.
    """
    if expr.interval is not None:
        return first + ((at - first) // expr.interval) * expr.interval
    low, high = first, at  # low is a due time <= at; no due time lies in (high, at]
    while high - low > _MINUTE:
        middle = low + (high - low) / 2
        candidate = next_due(expr, middle)
        if candidate <= at:
            low = candidate
        else:
            high = middle
    while (candidate := next_due(expr, low)) <= at:
        low = candidate
    return low


def first_due_from(expr: CronExpression, first: datetime, at: datetime) -> datetime:
    """The first due time at or after ``at`` on the schedule whose due times start at ``first``."""
    if at <= first:
        return first
    if expr.interval is not None:
        return first - ((first - at) // expr.interval) * expr.interval
    return next_due(expr, at - _MICROSECOND)


def due_after(expr: CronExpression, first: datetime, at: datetime) -> datetime:
    """The first due time after ``at`` of the schedule whose due times start at ``first``."""
    if at < first:
        return first
    if expr.interval is not None:
        return first + ((at - first) // expr.interval + 1) * expr.interval
    return next_due(expr, at)
