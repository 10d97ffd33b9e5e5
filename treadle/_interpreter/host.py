"""What a run's driver needs from whatever hosts it (the engine's executor)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from .._clock import Clock
from .._metrics import Metrics
from .._threads import StepThreads
from ..persistence import Persistence


class Admission(Protocol):
    """Whether a run's next step can be executed now."""

    async def admit(self, run_id: str, plain: bool, alone: bool) -> bool:
        """Wait, if need be, until the step can run: a ``plain`` function needs a free step
        thread. False: none came free in time and the run, ``alone`` (not in a parallel
        branch), should be handed back before this step for another engine to take."""


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
    def capacity(self) -> Admission:
        """What admits each step (see :mod:`treadle._engine.capacity`)."""

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
