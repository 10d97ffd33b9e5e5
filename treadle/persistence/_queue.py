"""The queue as the metrics' gauges show it: WAITING runs per kind of wait, and the age of the
oldest runnable run (queue lag). One read of indexed columns, written once for every dialect."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ._records import to_datetime
from ._sql import Tx


@dataclass(frozen=True)
class QueueStats:
    """WAITING runs by the kind of what they wait for (``"signal"``, ``"approval"``,
    ``"timer"``, ``"run"`` for a child run, ...), and since when the oldest runnable run (PENDING
    and free, or with a due timer) waits for an engine (None: none does)."""

    waiting: dict[str, int] = field(default_factory=dict)
    runnable_since: datetime | None = None


def queue_stats(tx: Tx, now: datetime) -> QueueStats:
    """Two grouped reads; the oldest of the two "since" times."""
    waiting = {str(r["kind"]): int(r["n"]) for r in tx.all("waiting_by_kind")}
    row = tx.one("oldest_runnable", now=now)
    times = [] if row is None else [row["pending_since"], row["due_since"]]
    found = [t for t in map(to_datetime, times) if t is not None]
    return QueueStats(waiting, min(found) if found else None)
