"""What the interpreter passes around: where a node is, and why a walk stops."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._errors import DataError


def encode_data(data: object, where: str) -> str:
    """Serialise run data, or raise :class:`DataError` saying what is wrong and where."""
    if not isinstance(data, dict):
        raise DataError(
            f"{where}: run data must be a JSON object (dict), not {type(data).__name__}"
        )
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: run data is not JSON-serialisable: {exc}") from None


def new_cursor() -> str:
    """The cursor of a run that has not started."""
    return '{"n":{},"c":[],"f":null}'


class Suspend(Exception):
    """The run cannot go on until something arrives or a time comes."""

    def __init__(self, waits: list[str], wake_at: datetime | None) -> None:
        super().__init__(waits)
        self.waits = waits
        self.wake_at = wake_at

    @property
    def timer_only(self) -> bool:
        """Whether only time is awaited (no message)."""
        return self.wake_at is not None and all(
            w.startswith(("timer:", "retry:")) for w in self.waits
        )

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


class StepFailure(Exception):
    """A step failed for good; the run compensates and fails."""

    def __init__(self, step: str, error: BaseException) -> None:
        super().__init__(f"step {step!r} failed: {type(error).__name__}: {error}")
        self.step = step
        self.error = error


@dataclass(frozen=True)
class Scope:
    """Where a node sits: the path prefix of its names and its innermost loop position."""

    prefix: str = ""
    item: Any = None
    index: int | None = None
    iteration: int | None = None

    def inside(self, path: str) -> Scope:
        """The scope of the children of the node at ``path``."""
        return Scope(path + "/", self.item, self.index, self.iteration)
