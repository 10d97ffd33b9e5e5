"""What a run is: its status, its data, its history events, and the context a step sees."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any


class Status(str, Enum):
    """The life cycle of a run.

    PENDING: queued for an engine (new, or woken, resumed or cancelled while no engine of this
    process could take it); RUNNING: an engine executes it; WAITING: for a signal, an approval,
    a timer, a retry backoff or a child run; PAUSED; and the finished COMPLETED, FAILED and
    CANCELLED.
    """

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Whether the run has ended for good."""
        return self in FINISHED

    def __str__(self) -> str:
        return self.value


FINISHED = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


@dataclass
class State:
    """A run as a step or a caller sees it. ``Engine.status`` returns a detached snapshot."""

    id: str
    workflow: str
    status: Status
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    error: str | None = None
    waiting_for: list[str] = field(default_factory=list)
    parent_id: str | None = None


@dataclass(frozen=True)
class Event:
    """One entry of a run's history."""

    run_id: str
    at: datetime
    kind: str
    step: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """Where a step is: its run, its name, its attempt and its loop position."""

    run_id: str
    workflow: str
    step: str
    attempt: int = 1
    item: Any = None
    index: int | None = None
    iteration: int | None = None
    idempotency_key: str = ""
