"""What the interpreter passes around: where a node is, why a walk stops, and what a run was
asked to do from outside."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from .._state import WaitKind
from . import cursor


class Control(Enum):
    """A request to a running run, from its engine or its database row (``control``).

    When several come, the strongest holds: CANCEL beats PAUSE, and PAUSE beats SHUTDOWN (a
    paused run is parked for good, a shut-down one is only handed back).
    """

    SHUTDOWN = "shutdown"
    PAUSE = "pause"
    CANCEL = "cancel"

    def beats(self, other: Control | None) -> bool:
        """Whether this request replaces ``other`` (the one already made, if any)."""
        return other is None or _RANK[self] > _RANK[other]


_RANK = {Control.SHUTDOWN: 0, Control.PAUSE: 1, Control.CANCEL: 2}

_TIMERS = (f"{WaitKind.TIMER}:", f"{WaitKind.RETRY}:", f"{WaitKind.RATE}:")


class Suspend(Exception):
    """The run cannot go on until something arrives or a time comes."""

    def __init__(self, waits: list[str], wake_at: datetime | None) -> None:
        super().__init__(waits)
        self.waits = waits
        self.wake_at = wake_at

    @property
    def timer_only(self) -> bool:
        """Whether only time is awaited (no message)."""
        return self.wake_at is not None and all(w.startswith(_TIMERS) for w in self.waits)

    @staticmethod
    def merge(suspensions: list[Suspend]) -> Suspend:
        """One suspension that waits for all of them (and wakes at the earliest time)."""
        waits = [w for s in suspensions for w in s.waits]
        times = [s.wake_at for s in suspensions if s.wake_at is not None]
        return Suspend(waits, min(times) if times else None)


class PauseRequested(Exception):
    """The run was asked to pause; it stops before its next step."""


class CancelRequested(Exception):
    """The run was asked to cancel."""


class ShutdownRequested(Exception):
    """The engine is closing: stop before the next step and hand the run back."""


#: The exception that stops a walk for each request.
STOPS: dict[Control, type[Exception]] = {
    Control.CANCEL: CancelRequested,
    Control.PAUSE: PauseRequested,
    Control.SHUTDOWN: ShutdownRequested,
}


class StepFailure(Exception):
    """A step failed for good; the run compensates and fails."""

    def __init__(self, step: str, error: BaseException) -> None:
        super().__init__(f"step {step!r} failed: {type(error).__name__}: {error}")
        self.step = step
        self.error = error


class Held(Exception):
    """A step failed for good under ``on_failure="hold"``: the run stops HELD for an operator,
    with nothing compensated."""

    def __init__(self, step: str, path: str, error: BaseException) -> None:
        super().__init__(f"step {step!r} failed: {type(error).__name__}: {error}")
        self.step = step
        self.path = path


class CheckpointRefused(Exception):
    """The persistence refused a checkpoint for good (:class:`DataError`): it will never be
    stored as it is, so the run fails rather than retrying it."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class Scope:
    """Where a node sits: the path prefix of its names and its innermost loop position;
    ``collect``: the parallel map (its name) whose result at ``index`` the values that steps
    store go to, instead of ``data[step name]``."""

    prefix: str = ""
    item: Any = None
    index: int | None = None
    iteration: int | None = None
    collect: str | None = None

    def inside(self, path: str) -> Scope:
        """The scope of the children of the node at ``path``."""
        return Scope(cursor.inside(path), self.item, self.index, self.iteration, self.collect)
