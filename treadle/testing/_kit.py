"""The test kit: a real engine on a fake clock, with a cron, and time that moves on demand."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import Any

from .._clock import FakeClock
from .._duration import Duration, parse_duration
from .._engine import Engine
from .._errors import EngineNotOpen
from .._nodes import Workflow
from .._state import Event, EventKind
from ..cron import Cron
from ..persistence import Persistence
from ._faults import ErrorSpec, Fault, Faults

_KINDS = frozenset(kind.value for kind in EventKind)


class TestKit:
    """A real :class:`~treadle.Engine` for tests: memory persistence, a :class:`FakeClock`,
    and a :class:`~treadle.Cron` on both, with time that moves only when the test says so.

    ``async with TestKit(*workflows) as kit:`` opens the engine (and closes it at the end);
    every method that touches the engine needs that, and raises
    :class:`~treadle.EngineNotOpen` outside it. ``persistence`` runs the engine on another
    persistence (a ``SQLitePersistence`` on a temporary file, say); ``now`` is where the clock
    starts (by default 2030-01-01 00:00 UTC).

    The kit registers a copy of each workflow whose step functions first check the failures
    planned with :meth:`fail`; the copy has the same ``Workflow.id`` and behaves the same
    otherwise.
    """

    __test__ = False  # a class named Test*: pytest must not collect it from users' modules

    def __init__(
        self,
        *workflows: Workflow,
        persistence: Persistence | None = None,
        now: datetime | None = None,
    ) -> None:
        self._clock = FakeClock(now)
        self._engine = Engine(persistence, clock=self._clock)
        self._cron = Cron(self._engine)
        self._faults = Faults()
        self._open = False
        self.register(*workflows)

    @property
    def engine(self) -> Engine:
        """The engine: signal, approve, pause, cancel and read runs through it."""
        return self._engine

    @property
    def clock(self) -> FakeClock:
        """The engine's fake clock (move it with :meth:`advance`, which settles as it goes)."""
        return self._clock

    @property
    def cron(self) -> Cron:
        """A cron on the engine and its clock; :meth:`advance` fires its schedules (its
        background ticker is not started: the kit ticks it)."""
        return self._cron

    def register(self, *workflows: Workflow) -> None:
        """Register workflows with the engine (before or inside ``async with``), so that
        :meth:`fail` can reach their steps."""
        self._engine.register(*(self._faults.wrap(w) for w in workflows))

    # Life cycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> TestKit:
        await self._engine.open()
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False
        await self._cron.stop()
        await self._engine.close()

    def _require_open(self, method: str) -> None:
        if not self._open:
            raise EngineNotOpen(
                f"TestKit.{method}() needs the kit open: use 'async with TestKit(...) as kit:' "
                "and call it inside that block"
            )

    # Runs and time -------------------------------------------------------------------------

    async def start(
        self,
        name: str,
        data: dict[str, Any] | None = None,
        *,
        run_id: str | None = None,
        version: str | None = None,
    ) -> str:
        """Start a run, as :meth:`Engine.start` does; return its id. It executes in the
        background: :meth:`run_until_idle` waits for it to end or to wait."""
        self._require_open("start")
        return await self._engine.start(name, data, run_id=run_id, version=version)

    async def run_until_idle(self) -> None:
        """Return once nothing more happens without an outside event or a later time: every
        run has ended or waits (for a signal, an approval, a run elsewhere, or a time the clock
        has not reached), and every schedule due now has started its runs."""
        self._require_open("run_until_idle")
        await self._settle()

    async def advance(self, duration: Duration) -> None:
        """Move the clock on by ``duration`` (a timedelta, seconds, or ``"72h"``, ``"1d12h"``),
        firing on the way everything that comes due within it, in order, at its own time.

        The clock stops at each due time — a durable sleep, a retry's backoff, a signal's or an
        approval's timeout, a cron schedule — and the engine settles there before it goes on,
        so that what a fired timer schedules (a retry, the next sleep) fires too if it falls
        within the span. A negative duration raises ``ValueError``.
        """
        span = parse_duration(duration)
        self._require_open("advance")
        target = self._clock.now() + span
        due = await self._settle()
        while due is not None and due <= target:
            if due <= self._clock.now():
                # Due, yet nothing here could take it (another engine holds the run): rather
                # than stopping on it forever, go on to the end of the span.
                break
            self._clock.set(due)
            due = await self._settle()
        if self._clock.now() < target:
            self._clock.set(target)
            await self._settle()

    async def _settle(self) -> datetime | None:
        """Settle the engine and tick the cron until neither starts anything; return the next
        time at which a run of this engine or a schedule comes due (None: none will)."""
        while True:
            await self._engine.settle()
            started, cron_due = await self._cron._tick()
            if not started:
                break
        ids, upgrades = self._engine._registry.claimable()
        run_due = await self._engine.persistence.next_wake(ids, upgrades=upgrades)
        dues = [d for d in (run_due, cron_due) if d is not None]
        return min(dues) if dues else None

    # Failures ------------------------------------------------------------------------------

    def fail(
        self,
        step: str,
        *,
        on_attempt: int | Iterable[int] | None = None,
        error: ErrorSpec = None,
        run_id: str | None = None,
        workflow: str | None = None,
    ) -> Fault:
        """Make step ``step`` fail on attempt ``on_attempt`` (1 is the first; several as a list;
        None, the default, every attempt) instead of calling its function, in every run or in
        run ``run_id`` / runs of ``workflow`` only.

        The attempt raises ``error`` (an exception, or an exception class made with a message
        naming the step and attempt), by default :class:`InjectedFailure`; the step's retry
        policy then applies as to any failure (``treadle.NonRetryableError`` fails it at once).
        Returns the :class:`Fault`: its ``hits`` say which attempts it failed, and ``cancel()``
        ends it. A step that no workflow of the kit has, or one that runs no code (a signal,
        a sleep), raises ``ValueError``.
        """
        return self._faults.add(step, on_attempt, error, run_id, workflow)

    # History -------------------------------------------------------------------------------

    async def events(self, run_id: str, kind: str | None = None) -> list[Event]:
        """The run's history events, in order; only those of ``kind`` (e.g. ``"timer_fired"``)
        if given. An unknown kind raises ``ValueError`` listing the kinds."""
        return await self._history(run_id, kind, "events")

    async def steps(self, run_id: str) -> list[str]:
        """The names of the run's completed steps (skipped ones included), in the order they
        completed; a step of a loop once per iteration."""
        completed = await self._history(run_id, EventKind.STEP_COMPLETED, "steps")
        return [e.step for e in completed if e.step is not None]

    async def attempts(self, run_id: str, step: str) -> int:
        """How many attempts step ``step`` of the run made (failed or completed), over all
        its loop iterations; 0 if it never ran."""
        history = await self._history(run_id, None, "attempts")
        return sum(1 for e in history if e.step == step and e.kind in _ATTEMPT_KINDS)

    async def _history(self, run_id: str, kind: str | None, method: str) -> list[Event]:
        if kind is not None and kind not in _KINDS:
            raise ValueError(
                f"unknown event kind {kind!r}; the kinds are: {', '.join(sorted(_KINDS))}"
            )
        self._require_open(method)
        history = await self._engine.history(run_id)
        return [e for e in history if kind is None or e.kind == kind]


_ATTEMPT_KINDS = (EventKind.STEP_COMPLETED, EventKind.STEP_FAILED)
