"""Transaction scripts of debounced starts (see :mod:`._scripts` for what a transaction script
is): starts of one workflow with one debounce key collapse into one run until it begins.

The run is WAITING with a timer (``wake_at``) until its window has passed; ``runs_debounce``, a
unique index on ``(workflow, debounce_key)`` of runs that carry a key, keeps one such run per
key, and ``claim_runs`` clears the key of the run it begins, so that a later start makes a new
run. Concurrent starts race through the index: the loser of an insert finds the winner's run
and collapses into it.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta

from .._errors import PersistenceError
from .._state import EventKind, Status, WaitKind, wait_key
from ._labels import insert_labels, replace_labels
from ._records import NewEvent, RunRecord
from ._scripts import _event
from ._sql import Tx

ATTEMPTS = 5
"""How often a start looks for the run again after losing an insert to a concurrent start."""


def waiting_for(key: str, until: datetime) -> list[str]:
    """What a debounced run waits for: ``debounce:<key> until <ISO time>``."""
    return [wait_key(WaitKind.DEBOUNCE, f"{key} until {until.isoformat(timespec='milliseconds')}")]


def start_debounced(
    tx: Tx,
    run: RunRecord,
    event: NewEvent,
    now: datetime,
    window: timedelta,
    longest: timedelta | None,
) -> tuple[RunRecord, bool]:
    """The run of ``run.workflow`` and ``run.debounce_key`` that has not begun, with ``run``'s
    data, priority, deadline and labels, waking ``window`` after now (but no later than
    ``longest`` after it was first started); made from ``run`` if there is none. Returns it and
    whether it was made now. A run with a cancel pending is let go (its key cleared)."""
    key = run.debounce_key
    assert key is not None, "a debounced start has a key"
    for _ in range(ATTEMPTS):
        row = tx.one("debounced_run", workflow=run.workflow, key=key)
        if row is not None:
            found = RunRecord.from_row(row)
            if found.control != "cancel":
                return _collapse(tx, found, run, event, now, window, longest), False
            tx.execute("clear_debounce", id=found.id)
        until = now + window
        if _insert(tx, run, key, until, now):
            insert_labels(tx, run.id, run.labels)
            if run.trace is not None:  # plain text, never through the codec
                tx.execute("set_run_trace", id=run.id, trace=run.trace)
            _event(tx, run.id, _with_until(event, until), now)
            tx.notify(run.id)  # engines learn of the new timer
            made = dataclasses.replace(
                run, status=Status.WAITING, wake_at=until, waiting_for=waiting_for(key, until)
            )
            return made, True
    raise PersistenceError(
        f"debounced start of {run.workflow!r} with key {key!r}: the run of that key kept "
        f"changing under {ATTEMPTS} attempts; try again"
    )


def _insert(tx: Tx, run: RunRecord, key: str, until: datetime, now: datetime) -> bool:
    return bool(
        tx.execute(
            "insert_debounced_run",
            id=run.id,
            workflow=run.workflow,
            definition_id=run.definition_id,
            data=run.data,
            cursor=run.cursor,
            waiting_for=json.dumps(waiting_for(key, until)),
            wake_at=until,
            now=now,
            version=run.version,
            deadline_at=run.deadline_at,
            labels=json.dumps(run.labels),
            priority=run.priority,
            key=key,
        )
    )


def _collapse(
    tx: Tx,
    found: RunRecord,
    run: RunRecord,
    event: NewEvent,
    now: datetime,
    window: timedelta,
    longest: timedelta | None,
) -> RunRecord:
    """``found`` takes ``run``'s data; a WAITING one is pushed to ``window`` from now."""
    wake, waits = found.wake_at, found.waiting_for
    if found.status is Status.WAITING:
        wake = now + window
        if longest is not None:
            wake = min(wake, found.created_at + longest)
        waits = waiting_for(run.debounce_key or "", wake)
    if run.labels != found.labels:
        replace_labels(tx, found.id, found.token, run.labels)
    row = tx.one(
        "debounce_run",
        id=found.id,
        data=run.data,
        priority=run.priority,
        deadline_at=run.deadline_at,
        wake_at=wake,
        waiting_for=json.dumps(waits),
        now=now,
    )
    assert row is not None, "the run was locked in this transaction"
    collapsed = dataclasses.replace(event, kind=EventKind.DEBOUNCED)
    _event(tx, found.id, _with_until(collapsed, wake), now)
    return RunRecord.from_row(row)


def _with_until(event: NewEvent, until: datetime | None) -> NewEvent:
    detail = {**event.detail, "until": None if until is None else until.isoformat()}
    return dataclasses.replace(event, detail=detail)
