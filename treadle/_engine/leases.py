"""Leases: who executes a run and until when, giving one back, and taking back those of engines
whose process is gone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from ..persistence import Persistence
from .owners import known_dead

log = logging.getLogger("treadle")


@dataclass(frozen=True)
class Lease:
    """Who executes a run, and until when (wall time) unless it is renewed."""

    owner: str
    until: datetime


class LeaseFields(TypedDict):
    """A lease as the fields of a run (both None: the run is left for any engine)."""

    owner: str | None
    lease_until: datetime | None


NO_LEASE = LeaseFields(owner=None, lease_until=None)


async def release_lease(
    persistence: Persistence, run_id: str, token: int, stopping: Callable[[], bool]
) -> None:
    """Give the run's lease back, trying again until it is given back or ``stopping()``.

    The heartbeat renews every lease of the engine, so a lease that could not be released
    would never expire: keep trying (the database may be down) until the engine closes.
    """
    delay = 0.5
    while True:
        try:
            await persistence.release_run(run_id, token)
            return
        except Exception:
            if stopping():
                log.warning("run %s: could not release its lease", run_id)
                return
            log.warning("run %s: could not release its lease; retrying", run_id)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def reap_dead_owners(persistence: Persistence, me: str) -> int:
    """Release the leases of engines of this host, boot and pid namespace whose process is
    gone, without waiting for the leases to expire; how many runs were released."""
    released = 0
    for owner in await persistence.owners():
        if owner != me and known_dead(owner):
            count = await persistence.release_runs(owner)
            log.info("released %d runs of dead engine %s", count, owner)
            released += count
    return released
