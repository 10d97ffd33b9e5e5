"""What an engine can execute now: the claim room that its step threads leave, and the hand-back
of a run whose next plain step would wait too long for a thread.

An engine claims a run only while it can make progress on it at once. Plain step functions run
on the engine's ``step_threads``; coroutine steps on the loop, bounded by ``max_concurrent_runs``
alone. So, when a registered workflow has a plain step, each run held here counts as wanting a
thread from its claim until it starts a coroutine step (and again from its next plain step): the
claim room is the run room, capped by the threads neither wanted by those runs nor busy (an
abandoned plain step that timed out keeps its thread busy). A run whose next plain step finds
no thread free for a third of the lease is handed back at that step boundary, where its state is
checkpointed, so that an engine with a free thread takes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta

from .._threads import StepThreads
from .registry import Registry

log = logging.getLogger("treadle")

#: The share of the lease a run's next plain step may wait for a thread before the run is
#: handed back.
WAIT_SHARE = 1 / 3


def _nothing() -> None:
    pass


class Capacity:
    """The step threads of an engine, and which of the runs executing there want one."""

    def __init__(
        self,
        step_threads: int,
        lease: timedelta,
        max_runs: int,
        active: Mapping[str, object],
        registry: Registry,
    ) -> None:
        self.threads = StepThreads(step_threads)
        #: How long a run's next plain step may wait for a thread before the run is handed back.
        self.wait_bound = lease.total_seconds() * WAIT_SHARE
        self._max_runs = max_runs
        self._active = active  # the runs executing here (the executor's drivers)
        self._registry = registry
        #: Called when a run stops wanting a thread while it goes on executing.
        self.on_freed: Callable[[], None] = _nothing
        self._on_loop: set[str] = set()  # runs executing here at a coroutine step

    @property
    def size(self) -> int:
        """How many step threads the engine has."""
        return self.threads.size

    def renew(self) -> StepThreads:
        """The threads, fresh ones after a close."""
        if self.threads.closed:
            self.threads = StepThreads(self.size)
        return self.threads

    def room(self, starting: int, threads: bool = True) -> int:
        """How many more runs may begin executing here, ``starting`` being claimed or started
        meanwhile: the run room, capped by the threads (unless not ``threads``) when a
        registered step is plain."""
        busy = len(self._active) + starting
        if not threads or not self._registry.plain_steps():
            return self._max_runs - busy
        wanting = busy - len(self._on_loop)
        return min(self._max_runs - busy, self.size - wanting, self.threads.free)

    def ended(self, run_id: str) -> None:
        """The run stopped executing here."""
        self._on_loop.discard(run_id)

    async def admit(self, run_id: str, plain: bool, alone: bool) -> bool:
        """Whether the run's next step may be called now (see :class:`RunHost`)."""
        if not plain:
            if run_id not in self._on_loop:
                self._on_loop.add(run_id)
                self.on_freed()
            return True
        self._on_loop.discard(run_id)
        if not alone or self.threads.free > 0:
            return True  # (steps in parallel branches queue for a thread)
        if await self.threads.wait_free(self.wait_bound):
            return True
        log.info(
            "run %s: no step thread free for %.1fs; handed back for another worker",
            run_id,
            self.wait_bound,
            extra={"run_id": run_id},
        )
        return False
