"""Rows as the core and the backends exchange them. Serialisation stays in the core: data and
cursors travel as JSON text, times as timezone-aware datetimes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .._state import Event, Status
from ._values import ValueWrite


def to_datetime(value: Any) -> datetime | None:
    """Read a time column: epoch seconds (SQLite) or a datetime (PostgreSQL)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), UTC)


def required_datetime(value: Any) -> datetime:
    """Read a ``NOT NULL`` time column."""
    result = to_datetime(value)
    if result is None:
        raise ValueError("a NOT NULL time column held NULL")
    return result


@dataclass
class RunRecord:
    """One row of ``runs``."""

    id: str
    workflow: str
    definition_id: str
    status: Status
    data: str
    cursor: str
    created_at: datetime
    updated_at: datetime
    error: str | None = None
    waiting_for: list[str] = field(default_factory=list)
    wake_at: datetime | None = None
    parent_id: str | None = None
    owner: str | None = None
    lease_until: datetime | None = None
    token: int = 0
    control: str | None = None
    version: str | None = None
    forked_from: str | None = None
    #: The caller's trace context (W3C fields as JSON) that the run's spans continue.
    trace: str | None = None
    #: When the run is cancelled with ``DeadlineExceeded`` unless it has ended.
    deadline_at: datetime | None = None
    #: What the run returned (its output, as JSON text), once it completed.
    result: str | None = None
    #: The run's labels (stored in plain text, never through a codec: search reads them).
    labels: dict[str, str] = field(default_factory=dict)
    #: Higher is claimed first (FIFO within one priority).
    priority: int = 0
    #: The debounce key of a debounced run that has not begun (its claim clears it).
    debounce_key: str | None = None

    def is_free(self, wall: datetime) -> bool:
        """Whether no live lease holds the run at wall time ``wall``."""
        return self.owner is None or self.lease_until is None or self.lease_until < wall

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunRecord:
        """Build a record from a database row."""
        waiting = row["waiting_for"]
        return cls(
            id=row["id"],
            workflow=row["workflow"],
            definition_id=row["definition_id"],
            status=Status(row["status"]),
            data=row["data"],
            cursor=row["cursor"],
            created_at=required_datetime(row["created_at"]),
            updated_at=required_datetime(row["updated_at"]),
            error=row["error"],
            waiting_for=json.loads(waiting) if isinstance(waiting, str) else list(waiting),
            wake_at=to_datetime(row["wake_at"]),
            parent_id=row["parent_id"],
            owner=row["owner"],
            lease_until=to_datetime(row["lease_until"]),
            token=int(row["token"]),
            control=row["control"],
            version=row["version"],
            forked_from=row["forked_from"],
            trace=row["trace"],
            deadline_at=to_datetime(row["deadline_at"]),
            result=row["result"],
            labels=_labels(row["labels"]),
            priority=int(row["priority"]),
            debounce_key=row["debounce_key"],
        )


def _labels(value: Any) -> dict[str, str]:
    return dict(json.loads(value) if isinstance(value, str) else value or {})


@dataclass(frozen=True)
class NewEvent:
    """A history event to append."""

    kind: str
    step: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None


def event_from_row(row: Mapping[str, Any]) -> Event:
    """Build a history :class:`Event` from a database row."""
    detail = row["detail"]
    return Event(
        run_id=row["run_id"],
        at=required_datetime(row["at"]),
        kind=row["kind"],
        step=row["step"],
        detail=json.loads(detail) if isinstance(detail, str) else dict(detail),
    )


@dataclass(frozen=True)
class InboxMessage:
    """A signal, an approval decision or a child's end, waiting to be consumed by its run."""

    seq: int
    run_id: str
    kind: str
    name: str
    payload: Any
    created_at: datetime


@dataclass
class Checkpoint:
    """What one durable step of progress writes, atomically, fenced by ``token``.

    ``status`` WAITING suspends the run (unless a message it waits for is already in its inbox);
    WAITING, PAUSED and the finished statuses release the run's lease.
    """

    run_id: str
    token: int
    status: Status
    data: str
    cursor: str
    now: datetime
    error: str | None = None
    waiting_for: list[str] = field(default_factory=list)
    wake_at: datetime | None = None
    events: list[NewEvent] = field(default_factory=list)
    consumed: list[int] = field(default_factory=list)
    parent_id: str | None = None
    #: Set when the run moves to another definition (``version`` is that one's label).
    definition_id: str | None = None
    version: str | None = None
    #: What the run returned (JSON text), with the checkpoint that completes it.
    result: str | None = None
    #: Every label of the run when a step set one since the last checkpoint (else None).
    labels: dict[str, str] | None = None
    #: Set on the checkpoint that admits a run of a limited workflow: the slot it asks for
    #: (see :class:`SlotClaim`).
    slot: SlotClaim | None = None
    #: Set on the checkpoint that ends a run of a limited workflow: its slot (or its place in
    #: the queue) is released, and given to the next queued run of its key.
    release_slot: bool = False
    #: The changes to the large values stored beside the run (see :mod:`._values`); with
    #: ``values_reset`` every such row is dropped first.
    values: list[ValueWrite] | None = None
    values_reset: bool = False


@dataclass(frozen=True)
class SlotClaim:
    """A run's request for a slot of concurrency key ``key`` (at most ``limit`` holders).

    The checkpoint it comes with is the WAITING one that parks the run should it have to
    queue; admitted, the run is written RUNNING instead. ``wall`` (wall time) judges the
    holders' leases for ``on_conflict="cancel_running"``."""

    key: str
    limit: int
    on_conflict: str
    wall: datetime


@dataclass(frozen=True)
class SlotOutcome:
    """What became of a :class:`SlotClaim`: ``"held"`` (admitted), ``"queued"`` or
    ``"skipped"``; ``key`` is the key the run holds or waits for (a key recorded earlier wins
    over the one asked for), ``holders`` the runs that held its slots when it could not."""

    state: str
    key: str
    holders: tuple[str, ...] = ()


@dataclass(frozen=True)
class LimitUse:
    """One concurrency key in use: its limit, the runs holding its slots (oldest first) and
    the runs queued for one (in the order they will get it)."""

    key: str
    limit: int
    holders: tuple[str, ...]
    queued: tuple[str, ...]


@dataclass(frozen=True)
class DefinitionRecord:
    """One row of ``workflows``: a stored definition."""

    id: str
    name: str
    version: str | None
    shape: dict[str, Any]
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> DefinitionRecord:
        """Build a record from a database row."""
        return cls(
            id=row["id"],
            name=row["name"],
            version=row["version"],
            shape=dict(json.loads(row["shape"])),
            created_at=required_datetime(row["created_at"]),
        )


@dataclass(frozen=True)
class CheckpointAck:
    """The answer to a checkpoint: whether a suspension took effect, and any pending control."""

    suspended: bool
    control: str | None
    #: What became of the checkpoint's :class:`SlotClaim`, if it had one.
    slot: SlotOutcome | None = None


@dataclass
class ScheduleRecord:
    """One row of ``schedules``."""

    id: str
    workflow: str
    expression: str
    timezone: str
    input: str
    enabled: bool
    options: str
    next_run: datetime | None
    last_run: datetime | None
    last_run_id: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ScheduleRecord:
        """Build a record from a database row."""
        return cls(
            id=row["id"],
            workflow=row["workflow"],
            expression=row["expression"],
            timezone=row["timezone"],
            input=row["input"],
            enabled=bool(row["enabled"]),
            options=row["options"],
            next_run=to_datetime(row["next_run"]),
            last_run=to_datetime(row["last_run"]),
            last_run_id=row["last_run_id"],
            created_at=required_datetime(row["created_at"]),
            updated_at=required_datetime(row["updated_at"]),
        )
