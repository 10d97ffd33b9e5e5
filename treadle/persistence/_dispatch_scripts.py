"""Transaction scripts of dispatch (see :mod:`._scripts` for what a transaction script is):
claiming runs, leases and their owners, and what the engines poll for (timers, counts, ends)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ._records import RunRecord, to_datetime
from ._sql import Tx


def claim_runs(
    tx: Tx,
    owner: str,
    definitions: Sequence[str],
    upgrades: Sequence[str],
    now: datetime,
    due: datetime,
    lease_until: datetime,
    limit: int,
) -> list[RunRecord]:
    """One ``UPDATE ... WHERE id IN (SELECT ... LIMIT)``: ``now`` (wall time) judges leases,
    ``due`` (the engine's clock) judges timers."""
    if not (definitions or upgrades) or limit <= 0:
        return []
    rows = tx.all(
        "claim_runs",
        owner=owner,
        definitions=list(definitions),
        upgrades=list(upgrades),
        now=now,
        due=due,
        lease_until=lease_until,
        limit=limit,
    )
    return [RunRecord.from_row(r) for r in rows]


def renew_leases(tx: Tx, owner: str, lease_until: datetime) -> dict[str, str | None]:
    """``UPDATE ... RETURNING id, control`` (PostgreSQL skips locked rows)."""
    rows = tx.all("renew_leases", owner=owner, lease_until=lease_until)
    return {r["id"]: r["control"] for r in rows}


def release_runs(tx: Tx, owner: str) -> int:
    """Unfenced: clears owner and lease of every run of ``owner``."""
    return tx.execute("release_runs", owner=owner)


def release_run(tx: Tx, run_id: str, token: int) -> None:
    """Fenced by ``token``; notifies only when a row changed."""
    if tx.execute("release_run", id=run_id, token=token):
        tx.notify(run_id)


def owners(tx: Tx) -> list[str]:
    """``SELECT DISTINCT owner``: expired leases included."""
    return [r["owner"] for r in tx.all("owners")]


def count_unfinished(tx: Tx) -> dict[str, int]:
    """``GROUP BY status`` over the unfinished statuses."""
    return {r["status"]: int(r["n"]) for r in tx.all("count_unfinished")}


def finished_among(tx: Tx, run_ids: Sequence[str]) -> list[str]:
    """One query for all ids."""
    return [r["id"] for r in tx.all("finished_among", ids=list(run_ids))]


def next_wake(tx: Tx, definitions: Sequence[str], upgrades: Sequence[str]) -> datetime | None:
    """``MIN(wake_at)``: ``None`` when no run waits on a timer."""
    if not (definitions or upgrades):
        return None
    row = tx.one("next_wake", definitions=list(definitions), upgrades=list(upgrades))
    return None if row is None else to_datetime(row["wake_at"])
