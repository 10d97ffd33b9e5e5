"""Rate limiters in the database: a GCRA reservation per call, and what the limiters look like
now (``treadle rates``, ``GET /api/rate-limits``, the gauges). Written once for every dialect;
PostgreSQL reads the server's clock, SQLite the ``now`` it is given (one host, one clock).

A limiter's row holds ``tat``, the theoretical arrival time of the next call at the steady rate
(one call per ``interval = per / limit``). A reservation moves ``tat`` on by one interval from
``max(tat, now)``; the call may go at ``max(now, tat - burst * interval)`` (the new ``tat``), so
``burst`` calls may go at once after a quiet spell and then one per interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from ._records import required_datetime
from ._sql import Tx


@dataclass(frozen=True)
class Reservation:
    """One reserved call: when it may go (``at``, on the database's clock) and how long that is
    from the database's now (``delay``, seconds, 0 when it may go at once)."""

    at: datetime
    delay: float


@dataclass(frozen=True)
class RateLimitState:
    """A limiter as it stands: its settings (those of the last reservation), how many calls may
    go at once now (``available``), when the next call may go (``next_free``, now if it may at
    once), and how many runs are parked waiting for it (``waiting``)."""

    name: str
    limit: int
    per_seconds: float
    burst: int
    available: int
    next_free: datetime
    waiting: int
    now: datetime


def reserve(
    tx: Tx, name: str, limit: int, per_seconds: float, burst: int, now: datetime
) -> Reservation:
    """Reserve the next call of limiter ``name`` (made with these settings if it is new; the
    settings are stored with it either way)."""
    interval = per_seconds / limit
    row = tx.one(
        "reserve_rate",
        name=name,
        calls=limit,
        per_s=per_seconds,
        burst=burst,
        interval=interval,
        now=now,
    )
    assert row is not None  # an upsert with RETURNING always returns its row
    tat, at_now = required_datetime(row["tat"]), required_datetime(row["now"])
    at = max(at_now, tat - timedelta(seconds=burst * interval))
    return Reservation(at, max(0.0, (at - at_now).total_seconds()))


def clock(tx: Tx, now: datetime) -> datetime:
    """The database's now (PostgreSQL: the server's; SQLite: ``now``)."""
    row = tx.one("rate_clock", now=now)
    assert row is not None
    return required_datetime(row["now"])


def states(tx: Tx, now: datetime) -> list[RateLimitState]:
    """Every limiter, by name."""
    waiting = {str(r["name"]): int(r["n"]) for r in tx.all("rate_waiting")}
    found = []
    for row in tx.all("list_rate_limits", now=now):
        limit, per, burst = int(row["calls"]), float(row["per_s"]), int(row["burst"])
        tat, at_now = required_datetime(row["tat"]), required_datetime(row["now"])
        interval = per / limit
        ahead = (tat - at_now).total_seconds()  # > 0: calls reserved into the future
        available = min(burst, max(0, math.floor(-ahead / interval + 1e-9) + burst))
        next_free = max(at_now, tat - timedelta(seconds=(burst - 1) * interval))
        name = str(row["name"])
        found.append(
            RateLimitState(
                name, limit, per, burst, available, next_free, waiting.get(name, 0), at_now
            )
        )
    return found
