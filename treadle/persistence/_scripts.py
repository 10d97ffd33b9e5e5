"""Transaction scripts: the persistence logic, written once for every SQL dialect.

Each function runs inside one transaction (``tx``) and either completes or raises, in which case
its writes are rolled back. The backends decide how transactions are batched and committed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .._errors import InvalidTransition, LeaseLost, RunNotFound
from .._state import FINISHED, Event, EventKind, Status
from ._records import (
    Checkpoint,
    CheckpointAck,
    InboxMessage,
    NewEvent,
    RunRecord,
    ScheduleRecord,
    event_from_row,
    to_datetime,
)
from ._sql import Tx

SCHEMA_VERSION = 1
_encode_detail = json.JSONEncoder(default=str).encode


def _event(tx: Tx, run_id: str, event: NewEvent, now: datetime) -> None:
    tx.execute(
        "insert_event",
        run_id=run_id,
        at=event.at or now,
        kind=event.kind,
        step=event.step,
        detail=_encode_detail(event.detail),
    )


def _locked(tx: Tx, run_id: str) -> RunRecord:
    row = tx.one("lock_run", id=run_id)
    if row is None:
        raise RunNotFound(run_id)
    return RunRecord.from_row(row)


def _unfinished(tx: Tx, run_id: str, action: str) -> RunRecord:
    run = _locked(tx, run_id)
    if run.status in FINISHED:
        raise InvalidTransition(run_id, run.status.value, action)
    return run


def _is_free(run: RunRecord) -> bool:
    return run.owner is None or run.lease_until is None or run.lease_until < datetime.now(UTC)


def _make_runnable(
    tx: Tx, run_id: str, now: datetime, owner: str | None, lease_until: datetime | None
) -> RunRecord:
    row = tx.one("make_runnable", id=run_id, now=now, owner=owner, lease_until=lease_until)
    assert row is not None
    if owner is None:
        tx.notify(run_id)
    return RunRecord.from_row(row)


def save_definition(tx: Tx, definition_id: str, name: str, shape: str, now: datetime) -> None:
    """Store a workflow definition's shape under its fingerprint (first writer wins)."""
    tx.execute("save_definition", id=definition_id, name=name, shape=shape, now=now)


def load_definition(tx: Tx, definition_id: str) -> tuple[str, str] | None:
    """The (name, shape JSON) of a stored definition."""
    row = tx.one("load_definition", id=definition_id)
    return None if row is None else (row["name"], row["shape"])


def create_run(tx: Tx, run: RunRecord, event: NewEvent, now: datetime) -> tuple[RunRecord, bool]:
    """Insert a run unless its id exists; return the stored run and whether it was created."""
    created = tx.execute(
        "insert_run",
        id=run.id,
        workflow=run.workflow,
        definition_id=run.definition_id,
        status=run.status.value,
        data=run.data,
        cursor=run.cursor,
        parent_id=run.parent_id,
        now=now,
        owner=run.owner,
        lease_until=run.lease_until,
    )
    if created:
        _event(tx, run.id, event, now)
        if run.owner is None:
            tx.notify(run.id)
        return run, True
    return _locked(tx, run.id), False


def get_run(tx: Tx, run_id: str) -> RunRecord | None:
    """The run, or None."""
    row = tx.one("get_run", id=run_id)
    return None if row is None else RunRecord.from_row(row)


def list_runs(
    tx: Tx, workflow: str | None, status: str | None, parent_id: str | None, limit: int
) -> list[RunRecord]:
    """Runs, newest first."""
    rows = tx.all("list_runs", workflow=workflow, status=status, parent_id=parent_id, limit=limit)
    return [RunRecord.from_row(r) for r in rows]


def history(tx: Tx, run_id: str) -> list[Event]:
    """The run's events in the order they were written."""
    return [event_from_row(r) for r in tx.all("history", run_id=run_id)]


def claim_runs(
    tx: Tx,
    owner: str,
    workflows: Sequence[str],
    now: datetime,
    due: datetime,
    lease_until: datetime,
    limit: int,
) -> list[RunRecord]:
    """Lease up to ``limit`` runnable runs of these workflows to ``owner`` (token bumped).

    ``now`` (wall time) judges leases; ``due`` (the engine's clock) judges timers.
    """
    if not workflows or limit <= 0:
        return []
    rows = tx.all(
        "claim_runs",
        owner=owner,
        workflows=list(workflows),
        now=now,
        due=due,
        lease_until=lease_until,
        limit=limit,
    )
    return [RunRecord.from_row(r) for r in rows]


def renew_leases(tx: Tx, owner: str, lease_until: datetime) -> dict[str, str | None]:
    """Extend every lease of ``owner``; return each owned run's pending control."""
    rows = tx.all("renew_leases", owner=owner, lease_until=lease_until)
    return {r["id"]: r["control"] for r in rows}


def release_runs(tx: Tx, owner: str) -> int:
    """Give up every lease of ``owner``: its runs become claimable at once."""
    return tx.execute("release_runs", owner=owner)


def release_run(tx: Tx, run_id: str, token: int) -> None:
    """Give up one lease (only while ``token`` still holds it)."""
    if tx.execute("release_run", id=run_id, token=token):
        tx.notify(run_id)


def owners(tx: Tx) -> list[str]:
    """Every engine that holds a lease now."""
    return [r["owner"] for r in tx.all("owners")]


def save_checkpoint(tx: Tx, cp: Checkpoint) -> CheckpointAck:
    """Write one checkpoint, fenced by the lease token.

    Raises :class:`LeaseLost` when another engine has claimed the run since. A WAITING
    checkpoint is written as RUNNING (not suspended) when a message it waits for is already in
    the inbox, so a signal that raced with the suspension is never lost.
    """
    status = cp.status
    suspended = False
    if status is Status.WAITING:
        # Lock the run first: a concurrent delivery (signal, child run ending) locks it too, so
        # either it sees this run WAITING and wakes it, or its message is visible below.
        tx.one("lock_run", id=cp.run_id)
        waiting = set(cp.waiting_for)
        consumed = set(cp.consumed)
        ready = any(
            f"{r['kind']}:{r['name']}" in waiting and r["seq"] not in consumed
            for r in tx.all("pending_inbox", run_id=cp.run_id)
        )
        suspended = not ready
        if ready:
            status = Status.RUNNING
    finished = status in FINISHED
    release = finished or status in (Status.WAITING, Status.PAUSED)
    if status is Status.RUNNING:
        # The owner of a claimed run finds it 'running' with nothing to wait for: write only
        # what a step changes.
        row = tx.one(
            "save_progress",
            id=cp.run_id,
            token=cp.token,
            data=cp.data,
            cursor=cp.cursor,
            now=cp.now,
        )
    else:
        row = _save_state(tx, cp, status, release, finished)
    if row is None:
        raise LeaseLost(cp.run_id)
    if cp.consumed:
        tx.execute("consume_inbox", seqs=list(cp.consumed))
    for event in cp.events:
        _event(tx, cp.run_id, event, cp.now)
    if suspended and cp.wake_at is not None:
        tx.notify(cp.run_id)
    if finished and cp.parent_id:
        _notify_parent(tx, cp.parent_id, cp.run_id, status, cp.now)
    return CheckpointAck(suspended=suspended, control=row["control"])


def _save_state(tx: Tx, cp: Checkpoint, status: Status, release: bool, finished: bool) -> Any:
    return tx.one(
        "save_checkpoint",
        id=cp.run_id,
        token=cp.token,
        status=status.value,
        data=cp.data,
        cursor=cp.cursor,
        error=cp.error,
        waiting_for=json.dumps(cp.waiting_for if status is Status.WAITING else []),
        wake_at=cp.wake_at if status is Status.WAITING else None,
        now=cp.now,
        release=release,
        clear_control=finished or status is Status.PAUSED,
    )


def _notify_parent(tx: Tx, parent_id: str, child_id: str, status: Status, now: datetime) -> None:
    row = tx.one("lock_run", id=parent_id)
    if row is None:
        return
    parent = RunRecord.from_row(row)
    if parent.status in FINISHED:
        return
    tx.execute(
        "insert_inbox",
        run_id=parent_id,
        kind="run",
        name=child_id,
        payload=json.dumps({"status": status.value}),
        now=now,
    )
    _wake_if_waiting(tx, parent, f"run:{child_id}", now, None, None)


def _wake_if_waiting(
    tx: Tx,
    run: RunRecord,
    token: str,
    now: datetime,
    owner: str | None,
    lease_until: datetime | None,
) -> RunRecord:
    if run.status is Status.WAITING and token in run.waiting_for:
        return _make_runnable(tx, run.id, now, owner, lease_until)
    return run


def deliver(
    tx: Tx,
    run_id: str,
    kind: str,
    name: str,
    payload: str,
    event: NewEvent,
    now: datetime,
    owner: str | None,
    lease_until: datetime | None,
) -> RunRecord:
    """Append a message to a run's inbox, in order; wake the run if it waits for it.

    When ``owner`` is given and the run wakes, it is leased to ``owner`` in the same transaction.
    Raises :class:`RunNotFound` or :class:`InvalidTransition` (finished run) and writes nothing.
    """
    run = _unfinished(tx, run_id, f"send {kind} {name!r} to")
    tx.execute("insert_inbox", run_id=run_id, kind=kind, name=name, payload=payload, now=now)
    _event(tx, run_id, event, now)
    return _wake_if_waiting(tx, run, f"{kind}:{name}", now, owner, lease_until)


def read_inbox(tx: Tx, run_id: str, kind: str, name: str) -> list[InboxMessage]:
    """The run's unconsumed messages of one kind and name, oldest first."""
    return [
        InboxMessage(
            seq=int(r["seq"]),
            run_id=r["run_id"],
            kind=r["kind"],
            name=r["name"],
            payload=json.loads(r["payload"]),
            created_at=to_datetime(r["created_at"]) or datetime.min,
        )
        for r in tx.all("read_inbox", run_id=run_id, kind=kind, name=name)
    ]


def request_pause(tx: Tx, run_id: str, now: datetime) -> RunRecord:
    """Pause a run: at once when no engine executes it, else ask its owner (control)."""
    run = _unfinished(tx, run_id, "pause")
    if run.status is Status.PAUSED:
        return run
    if _is_free(run):
        tx.execute("park", id=run_id, now=now)
        _event(tx, run_id, NewEvent(EventKind.PAUSED), now)
        run.status = Status.PAUSED
    else:
        tx.execute("set_control", id=run_id, control="pause")
        _event(tx, run_id, NewEvent(EventKind.PAUSE_REQUESTED), now)
        run.control = "pause"
    return run


def resume(
    tx: Tx, run_id: str, now: datetime, owner: str | None, lease_until: datetime | None
) -> RunRecord:
    """Resume a paused run (or withdraw a pause not yet taken); else :class:`InvalidTransition`."""
    run = _unfinished(tx, run_id, "resume")
    if run.status is Status.PAUSED:
        _event(tx, run_id, NewEvent(EventKind.RESUMED), now)
        return _make_runnable(tx, run_id, now, owner, lease_until)
    if run.control == "pause":
        tx.execute("set_control", id=run_id, control=None)
        _event(tx, run_id, NewEvent(EventKind.RESUMED), now)
        run.control = None
        return run
    raise InvalidTransition(run_id, run.status.value, "resume")


def request_cancel(
    tx: Tx, run_id: str, now: datetime, owner: str | None, lease_until: datetime | None
) -> RunRecord:
    """Mark a run for cancellation; a run no engine executes becomes runnable to compensate."""
    run = _unfinished(tx, run_id, "cancel")
    tx.execute("set_control", id=run_id, control="cancel")
    _event(tx, run_id, NewEvent(EventKind.CANCEL_REQUESTED), now)
    if _is_free(run):
        run = _make_runnable(tx, run_id, now, owner, lease_until)
    run.control = "cancel"
    return run


def count_unfinished(tx: Tx) -> dict[str, int]:
    """How many runs are pending, running, waiting and paused."""
    return {r["status"]: int(r["n"]) for r in tx.all("count_unfinished")}


def finished_among(tx: Tx, run_ids: Sequence[str]) -> list[str]:
    """Those of these runs that have ended."""
    return [r["id"] for r in tx.all("finished_among", ids=list(run_ids))]


def next_wake(tx: Tx, workflows: Sequence[str]) -> datetime | None:
    """The earliest timer among waiting runs of these workflows."""
    if not workflows:
        return None
    row = tx.one("next_wake", workflows=list(workflows))
    return None if row is None else to_datetime(row["wake_at"])


def ensure_schema(tx: Tx, now: datetime) -> int:
    """Create the schema on an empty database; return the version found or made."""
    if tx.one("has_meta_table") is None:
        tx.execute("schema")
        tx.execute("set_meta", key="schema_version", value=str(SCHEMA_VERSION))
        return SCHEMA_VERSION
    row = tx.one("get_meta", key="schema_version")
    return 0 if row is None else int(row["value"])


# Schedules -----------------------------------------------------------------------------------


def add_schedule(tx: Tx, record: ScheduleRecord, now: datetime) -> bool:
    """Insert a schedule; False (and nothing written) when the id exists."""
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
    """One schedule, or None."""
    row = tx.one("get_schedule", id=schedule_id)
    return None if row is None else ScheduleRecord.from_row(row)


def list_schedules(tx: Tx) -> list[ScheduleRecord]:
    """Every schedule, by id."""
    return [ScheduleRecord.from_row(r) for r in tx.all("list_schedules")]


def remove_schedule(tx: Tx, schedule_id: str) -> bool:
    """Delete a schedule; False when there was none."""
    return bool(tx.execute("delete_schedule", id=schedule_id))


def set_schedule_enabled(
    tx: Tx, schedule_id: str, enabled: bool, next_run: datetime | None, now: datetime
) -> bool:
    """Enable or disable a schedule (with its new next due time); False when there is none."""
    return bool(
        tx.execute(
            "set_schedule_enabled", id=schedule_id, enabled=enabled, next_run=next_run, now=now
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
    """Move a schedule's next due time on, only if it still is ``expected_next`` (compare and set).

    Of several engines ticking the same due time, exactly one gets True.
    """
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
