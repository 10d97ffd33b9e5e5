"""Transaction scripts: the persistence logic, written once for every SQL dialect.

Each function runs inside one transaction (``tx``) and either completes or raises, in which case
its writes are rolled back. The backends decide how transactions are batched and committed.
What each operation guarantees is written once, on :class:`~treadle.persistence.Persistence`;
the docstrings here are implementation notes.

Scripts are pure functions of the database and their arguments: every time they need (the
engine's clock for stamps, the wall clock for leases) is a parameter, because a batch that a
backend replays under per-script savepoints runs a script twice and must get the same outcome.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .._errors import InvalidTransition, LeaseLost, RunNotFound
from .._state import FINISHED, Event, EventKind, Status
from .._text import storable, storable_json
from . import _values as values
from ._labels import insert_labels, replace_labels
from ._records import (
    Checkpoint,
    CheckpointAck,
    DefinitionRecord,
    InboxMessage,
    NewEvent,
    RunRecord,
    event_from_row,
    required_datetime,
)
from ._sql import Tx

_encode = json.JSONEncoder(default=str).encode
# In the ASCII JSON that json writes, what PostgreSQL's jsonb refuses can only appear as one of
# these escapes (a false positive, an escaped backslash before "u0000", only costs the slow path).
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def encode_detail(detail: dict[str, Any]) -> str:
    """An event's detail as JSON that every backend stores (see :func:`storable`)."""
    text = _encode(detail)
    if _UNSTORABLE_ESCAPE.search(text) is None:
        return text
    return _encode(storable_json(json.loads(text)))


def _event_row(run_id: str, event: NewEvent, now: datetime) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "at": event.at or now,
        "kind": event.kind,
        "step": event.step,
        "detail": encode_detail(event.detail),
    }


def _event(tx: Tx, run_id: str, event: NewEvent, now: datetime) -> None:
    tx.execute("insert_event", **_event_row(run_id, event, now))


def _events(tx: Tx, run_id: str, events: Sequence[NewEvent], now: datetime) -> None:
    if len(events) == 1:
        _event(tx, run_id, events[0], now)
    elif events:
        tx.many("insert_event", [_event_row(run_id, e, now) for e in events])


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


def _make_runnable(
    tx: Tx, run_id: str, now: datetime, owner: str | None, lease_until: datetime | None
) -> RunRecord:
    row = tx.one("make_runnable", id=run_id, now=now, owner=owner, lease_until=lease_until)
    if row is None:  # callers have locked the run in this transaction: it cannot be gone
        raise RunNotFound(run_id)
    if owner is None:
        tx.notify(run_id)
    return RunRecord.from_row(row)


def save_definition(
    tx: Tx, definition_id: str, name: str, shape: str, version: str | None, now: datetime
) -> None:
    """``ON CONFLICT DO NOTHING``: the first writer wins."""
    tx.execute(
        "save_definition", id=definition_id, name=name, shape=shape, version=version, now=now
    )


def list_definitions(tx: Tx, name: str | None) -> list[DefinitionRecord]:
    """Newest first."""
    return [DefinitionRecord.from_row(r) for r in tx.all("list_definitions", name=name)]


def load_definition(tx: Tx, definition_id: str) -> tuple[str, str] | None:
    """The (name, shape JSON) of a stored definition."""
    row = tx.one("load_definition", id=definition_id)
    return None if row is None else (row["name"], row["shape"])


def create_run(tx: Tx, run: RunRecord, event: NewEvent, now: datetime) -> tuple[RunRecord, bool]:
    """``insert_run`` changes no row when the id exists; the stored run is then read back."""
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
        version=run.version,
        forked_from=run.forked_from,
        deadline_at=run.deadline_at,
        labels=json.dumps(run.labels),
        priority=run.priority,
    )
    if created:
        insert_labels(tx, run.id, run.labels)
        if run.trace is not None:  # plain text, never through the codec
            tx.execute("set_run_trace", id=run.id, trace=run.trace)
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


def save_checkpoint(tx: Tx, cp: Checkpoint) -> CheckpointAck:
    """A RUNNING checkpoint (the common one) updates only data and cursor (``save_progress``,
    no indexed column changes); others go through ``save_checkpoint``. Either is fenced by the
    token in its ``WHERE``: no row returned means the lease was lost."""
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
    release = finished or status in (Status.WAITING, Status.PAUSED, Status.HELD)
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
    if cp.values or cp.values_reset:
        values.write(tx, cp.run_id, cp.values or [], cp.values_reset)
    if cp.definition_id is not None:
        tx.execute(
            "set_definition",
            id=cp.run_id,
            token=cp.token,
            definition_id=cp.definition_id,
            version=cp.version,
        )
    if cp.labels is not None:
        replace_labels(tx, cp.run_id, cp.token, cp.labels)
    if cp.consumed:
        tx.execute("consume_inbox", seqs=list(cp.consumed))
    _events(tx, cp.run_id, cp.events, cp.now)
    if finished:
        _drop_unconsumed(tx, cp)
    if suspended and cp.wake_at is not None:
        tx.notify(cp.run_id)
    if finished and cp.parent_id:
        _notify_parent(tx, cp.parent_id, cp.run_id, status, cp.now)
    return CheckpointAck(suspended=suspended, control=row["control"])


def _drop_unconsumed(tx: Tx, cp: Checkpoint) -> None:
    """A finished run consumes nothing more: its messages still in the inbox (a signal sent
    after its wait had passed) are dropped, and the history says which."""
    consumed = set(cp.consumed)
    left = [r for r in tx.all("pending_inbox", run_id=cp.run_id) if r["seq"] not in consumed]
    if not left:
        return
    tx.execute("consume_inbox", seqs=[r["seq"] for r in left])
    counts: dict[str, int] = {}
    for r in left:
        key = f"{r['kind']}:{r['name']}"
        counts[key] = counts.get(key, 0) + 1
    _event(tx, cp.run_id, NewEvent(EventKind.SIGNALS_DROPPED, detail={"dropped": counts}), cp.now)


_WAITS = (Status.WAITING, Status.HELD)  # the statuses whose ``waiting_for`` is kept


def _save_state(tx: Tx, cp: Checkpoint, status: Status, release: bool, finished: bool) -> Any:
    return tx.one(
        "save_checkpoint",
        id=cp.run_id,
        token=cp.token,
        status=status.value,
        data=cp.data,
        cursor=cp.cursor,
        error=None if cp.error is None else storable(cp.error),
        waiting_for=json.dumps(cp.waiting_for if status in _WAITS else []),
        wake_at=cp.wake_at if status is Status.WAITING else None,
        now=cp.now,
        release=release,
        clear_control=finished or status is Status.PAUSED,
        result=cp.result if status is Status.COMPLETED else None,
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
    if run.status in _WAITS and token in run.waiting_for:
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
    awaited: bool = False,
    idempotency_key: str | None = None,
) -> RunRecord:
    """Locks the run first (``_unfinished``), so a concurrent WAITING checkpoint either sees
    this message or is seen WAITING here. ``awaited``: refuse unless the run waits for it
    now (of two concurrent decisions on a held run, one wins).

    A duplicate writes nothing and returns the run as it is: a message whose
    ``idempotency_key`` the run's inbox has already (the unique index ``inbox_idempotency``
    decides, in this transaction), or a decision on an approval by an approver whose decision
    on it is still unconsumed (the first stands). A duplicate by key is acknowledged also once
    the run has ended (the first delivery may have ended it)."""
    run = _locked(tx, run_id)
    if run.status in FINISHED:
        if idempotency_key is not None and tx.one(
            "keyed_inbox", run_id=run_id, key=idempotency_key
        ):
            return run
        raise InvalidTransition(run_id, run.status.value, f"send {kind} {name!r} to")
    if awaited and (run.status not in _WAITS or f"{kind}:{name}" not in run.waiting_for):
        raise InvalidTransition(run_id, run.status.value, f"send {kind} {name!r} to")
    if kind == "approval" and _decided_already(tx, run_id, name, payload):
        return run
    if idempotency_key is None:
        tx.execute("insert_inbox", run_id=run_id, kind=kind, name=name, payload=payload, now=now)
    else:
        row = tx.one(
            "insert_keyed_inbox",
            run_id=run_id,
            kind=kind,
            name=name,
            payload=payload,
            now=now,
            key=idempotency_key,
        )
        if row is None:
            return run
    _event(tx, run_id, event, now)
    return _wake_if_waiting(tx, run, f"{kind}:{name}", now, owner, lease_until)


def _decided_already(tx: Tx, run_id: str, name: str, payload: str) -> bool:
    """Whether the approver of decision ``payload`` has the same decision (approve or reject) on
    approval ``name`` in the run's inbox, not consumed by a wait yet (a double click on a
    looped approval must not decide its next round as well)."""
    decision = json.loads(payload)
    same = (decision.get("by"), decision.get("approved"))
    return any(
        (found.get("by"), found.get("approved")) == same
        for found in (
            json.loads(r["payload"]) for r in tx.all("pending_decisions", run_id=run_id, name=name)
        )
    )


def read_inbox(tx: Tx, run_id: str, kind: str, name: str) -> list[InboxMessage]:
    """Ordered by ``seq``, which increases with every insert."""
    return [
        InboxMessage(
            seq=int(r["seq"]),
            run_id=r["run_id"],
            kind=r["kind"],
            name=r["name"],
            payload=json.loads(r["payload"]),
            created_at=required_datetime(r["created_at"]),
        )
        for r in tx.all("read_inbox", run_id=run_id, kind=kind, name=name)
    ]


def request_pause(tx: Tx, run_id: str, now: datetime, wall: datetime) -> RunRecord:
    """``wall`` (wall time) judges whether a lease still holds the run."""
    run = _unfinished(tx, run_id, "pause")
    if run.status is Status.PAUSED:
        return run
    if run.status is Status.HELD:
        raise InvalidTransition(run_id, run.status.value, "pause")
    if run.is_free(wall):
        tx.execute("park", id=run_id, now=now)
        _event(tx, run_id, NewEvent(EventKind.PAUSED), now)
        run.status = Status.PAUSED
    else:
        tx.execute("set_control", id=run_id, control="pause")
        _event(tx, run_id, NewEvent(EventKind.PAUSE_REQUESTED), now)
        run.control = "pause"
    return run


def resume(
    tx: Tx,
    run_id: str,
    now: datetime,
    owner: str | None,
    lease_until: datetime | None,
    detail: dict[str, Any] | None = None,
) -> RunRecord:
    """A PAUSED run is made runnable; a pending ``pause`` control is withdrawn."""
    run = _unfinished(tx, run_id, "resume")
    if run.status is Status.PAUSED:
        _event(tx, run_id, NewEvent(EventKind.RESUMED, detail=detail or {}), now)
        return _make_runnable(tx, run_id, now, owner, lease_until)
    if run.control == "pause":
        tx.execute("set_control", id=run_id, control=None)
        _event(tx, run_id, NewEvent(EventKind.RESUMED, detail=detail or {}), now)
        run.control = None
        return run
    raise InvalidTransition(run_id, run.status.value, "resume")


def request_cancel(
    tx: Tx,
    run_id: str,
    now: datetime,
    wall: datetime,
    owner: str | None,
    lease_until: datetime | None,
    detail: dict[str, Any] | None = None,
) -> RunRecord:
    """``wall`` (wall time) judges whether a lease still holds the run."""
    run = _unfinished(tx, run_id, "cancel")
    tx.execute("set_control", id=run_id, control="cancel")
    _event(tx, run_id, NewEvent(EventKind.CANCEL_REQUESTED, detail=detail or {}), now)
    if run.is_free(wall):
        run = _make_runnable(tx, run_id, now, owner, lease_until)
    run.control = "cancel"
    return run


def migrate_run(
    tx: Tx,
    run_id: str,
    token: int,
    definition_id: str,
    version: str | None,
    cursor: str,
    waiting_for: list[str],
    event: NewEvent,
    now: datetime,
    wall: datetime,
) -> RunRecord:
    """Compare-and-set on the token the plan was made from, under the run's lock."""
    run = _unfinished(tx, run_id, "migrate")
    if run.token != token or not run.is_free(wall):
        raise InvalidTransition(
            run_id, f"{run.status.value} and changed since it was read", "migrate"
        )
    row = tx.one(
        "migrate_run",
        id=run_id,
        token=token,
        definition_id=definition_id,
        version=version,
        cursor=cursor,
        waiting_for=json.dumps(waiting_for if run.status in _WAITS else []),
        now=now,
    )
    if row is None:  # locked above with the same token: it cannot have moved
        raise RunNotFound(run_id)
    _event(tx, run_id, event, now)
    return RunRecord.from_row(row)
