"""Transaction scripts of schedules (see :mod:`._scripts` for what a transaction script is):
the rows of ``treadle.Cron``, written once for every SQL dialect."""

from __future__ import annotations

from datetime import datetime

from ._records import ScheduleRecord
from ._sql import Tx


def add_schedule(tx: Tx, record: ScheduleRecord, now: datetime) -> bool:
    """``ON CONFLICT DO NOTHING``: the row count says whether it was inserted."""
    return bool(
        tx.execute(
            "insert_schedule",
            id=record.id,
            workflow=record.workflow,
            expression=record.expression,
            timezone=record.timezone,
            input=record.input,
            enabled=record.enabled,
            options=record.options,
            next_run=record.next_run,
            now=now,
        )
    )


def get_schedule(tx: Tx, schedule_id: str) -> ScheduleRecord | None:
    """By primary key."""
    row = tx.one("get_schedule", id=schedule_id)
    return None if row is None else ScheduleRecord.from_row(row)


def list_schedules(tx: Tx) -> list[ScheduleRecord]:
    """``ORDER BY id``."""
    return [ScheduleRecord.from_row(r) for r in tx.all("list_schedules")]


def remove_schedule(tx: Tx, schedule_id: str) -> bool:
    """The row count says whether there was one."""
    return bool(tx.execute("delete_schedule", id=schedule_id))


def set_schedule_enabled(
    tx: Tx,
    schedule_id: str,
    enabled: bool,
    next_run: datetime | None,
    now: datetime,
    options: str | None = None,
) -> bool:
    """The row count says whether there was one (``options`` None keeps the stored ones)."""
    return bool(
        tx.execute(
            "set_schedule_enabled",
            id=schedule_id,
            enabled=enabled,
            next_run=next_run,
            now=now,
            options=options,
        )
    )


def advance_schedule(
    tx: Tx,
    schedule_id: str,
    expected_next: datetime,
    new_next: datetime | None,
    last_run: datetime | None,
    last_run_id: str | None,
    now: datetime,
) -> bool:
    """The compare-and-set is the ``WHERE next_run = :expected_next`` of one ``UPDATE``: the
    row lock makes concurrent advancers queue, and the later ones match no row."""
    return bool(
        tx.execute(
            "advance_schedule",
            id=schedule_id,
            expected_next=expected_next,
            new_next=new_next,
            last_run=last_run,
            last_run_id=last_run_id,
            now=now,
        )
    )
