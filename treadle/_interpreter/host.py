"""What a run's driver needs from whatever hosts it (the engine's executor)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from .._clock import Clock
from .._metrics import Metrics
from .._threads import StepThreads
from ..persistence import Persistence


class RunHost(Protocol):
    """The port through which a :class:`RunDriver` reaches the rest of the engine."""

    @property
    def clock(self) -> Clock:
        """The clock of durable times (timers, retries, deadlines, history)."""

    @property
    def persistence(self) -> Persistence:
        """Where checkpoints are written and inboxes read."""

    @property
    def threads(self) -> StepThreads:
        """The worker threads of plain step functions."""

    @property
    def metrics(self) -> Metrics:
        """The counters of steps and runs."""

    async def start_child(
        self,
        child_id: str,
        workflow: str,
        data: dict[str, Any] | None,
        parent_id: str,
        deadline: datetime | None,
    ) -> None:
        """Start (idempotently) the child run of a sub-workflow step; it ends by ``deadline``
        (its parent's) unless its own workflow's deadline is sooner.

        Raises :class:`WorkflowNotFound` or :class:`DataError` when it cannot be started.
        """

    async def cancel_children(self, run_id: str, keep: frozenset[str] = frozenset()) -> None:
        """Cancel every unfinished child run of ``run_id`` but those in ``keep``."""
