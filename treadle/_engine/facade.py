"""The engine: registers workflows, starts runs, and executes whatever runs it can claim."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from .._clock import Clock
from .._duration import Duration
from .._errors import DefinitionMismatch
from .._ids import check_id
from .._metrics import Metrics
from .._nodes import Workflow
from .._threads import StepThreads
from ..persistence import Codec, Persistence
from .control import RunControl
from .operator import MigrationPlan
from .retention import Pruner, parse_retention


class Engine(RunControl):
    """Runs workflows durably on a persistence (in memory by default).

    Use it as ``async with engine:`` (or :meth:`open`/:meth:`close`) so that it recovers
    unfinished runs, fires timers and picks up runs started elsewhere.

    Options: ``clock`` (a :class:`FakeClock` in tests), ``max_concurrent_runs`` executing at
    once in this engine (0 makes a control-only engine, as the CLI uses: it starts, signals and
    reads runs but executes none), ``lease`` (seconds another engine waits before it takes
    over a run of a dead one), ``poll_interval`` (the safety-net poll), ``step_threads``
    (threads for plain step functions), ``codec`` (a :class:`Codec` for data at rest),
    ``retention`` (how long finished runs are kept before this engine deletes them, e.g.
    ``"30d"``; None, the default, keeps them for ever; a workflow's own ``.retention(...)``
    wins).
    """

    def __init__(
        self,
        persistence: Persistence | None = None,
        *,
        clock: Clock | None = None,
        max_concurrent_runs: int = 1000,
        lease: float = 30.0,
        poll_interval: float = 1.0,
        step_threads: int = 32,
        codec: Codec | None = None,
        retention: Duration | None = None,
    ) -> None:
        pruner_retention = parse_retention(retention)
        super().__init__(
            persistence,
            clock=clock,
            max_concurrent_runs=max_concurrent_runs,
            lease=lease,
            poll_interval=poll_interval,
            step_threads=step_threads,
            codec=codec,
        )
        self._retention = pruner_retention
        self._pruner = Pruner(self._executor, pruner_retention)

    # What it was made with -----------------------------------------------------------------

    @property
    def owner(self) -> str:
        """This engine's id in the leases it holds (``host:pid:random``)."""
        return self._executor.owner

    @owner.setter
    def owner(self, owner: str) -> None:
        self._executor.owner = owner

    @property
    def lease(self) -> timedelta:
        """How long a lease of this engine lasts unless renewed."""
        return self._executor.lease

    @property
    def retention(self) -> timedelta | None:
        """How long this engine keeps finished runs of workflows that set no retention of
        their own (None: for ever)."""
        return self._retention

    @property
    def max_concurrent_runs(self) -> int:
        """How many runs execute here at once at most."""
        return self._executor.max_concurrent_runs

    @property
    def poll_interval(self) -> float:
        """Seconds between safety-net polls for work."""
        return self._executor.poll_interval

    @property
    def step_threads(self) -> int:
        """How many worker threads plain step functions get."""
        return self._executor.capacity.size

    @property
    def threads(self) -> StepThreads:
        """The worker threads of plain step functions."""
        return self._executor.threads

    @property
    def metrics(self) -> Metrics:
        """What this engine counted (runs started and finished, steps, retries)."""
        return self._executor.metrics

    # Definitions ---------------------------------------------------------------------------

    def register(self, *workflows: Workflow) -> None:
        """Make workflow definitions known to this engine (before or after it is opened).

        Several definitions of one name are kept, the last registered being the newest: new
        runs start on it, and each run goes on on the definition it started on. Registering a
        definition again (the same ``Workflow.id``) replaces it; two definitions of one name
        with the same ``version`` label raise :class:`DefinitionError`.
        """
        for workflow in workflows:
            self._registry.add(workflow)
            if self._open:
                self._executor.chore(self._registry.save(self.persistence, workflow))
        if self._open:
            self._executor.wake()

    @property
    def workflows(self) -> dict[str, Workflow]:
        """The newest registered definition of each workflow, by name."""
        return dict(self._registry.workflows)

    def versions(self, name: str) -> list[Workflow]:
        """The registered definitions of workflow ``name``, oldest first."""
        return self._registry.versions(name)

    # Life cycle ---------------------------------------------------------------------------

    async def settle(self) -> None:
        """For tests: return once nothing more will happen here without an outside event.

        That is: no run executes or is being started here, no background work of the engine is
        left, and a claim round that began after all that found nothing to claim. Runs waiting
        for a signal, an approval, a later time (move a :class:`FakeClock` and settle again) or
        a run executed elsewhere stay as they are.
        """
        self._require_open()
        await self._executor.settle()

    # Runs that outlive their code -----------------------------------------------------------

    async def plan_migration(
        self, run_id: str, *, to: str | None = None, rename: dict[str, str] | None = None
    ) -> MigrationPlan:
        """Whether :meth:`migrate` would move the run, and why not (nothing is changed)."""
        record = await self._get(run_id)
        plan, _, _ = await self._operator.plan(record, to, rename)
        return plan

    async def migrate(
        self,
        run_id: str,
        *,
        to: str | None = None,
        rename: dict[str, str] | None = None,
        by: str | None = None,
    ) -> MigrationPlan:
        """Move an unfinished run that no engine executes right now (pending, waiting, paused
        or held) onto definition ``to`` of its workflow (a label or id, stored by any engine;
        None: the newest registered here), renaming steps by ``rename`` (old → new).

        Raises :class:`DefinitionMismatch` (with ``reasons``) when its position does not map
        onto that definition, and changes nothing then; a held run stays held (then
        :meth:`retry` it).
        """
        record = await self._get(run_id)
        result = await self._operator.migrate(record, to, rename, by)
        if not result.ok:
            raise DefinitionMismatch(
                f"run {run_id!r} cannot move to definition "
                f"{result.target_version or result.target}: " + "; ".join(result.reasons),
                result.reasons,
            )
        return result

    async def migrate_runs(
        self,
        workflow: str,
        *,
        source: str | None = None,
        to: str | None = None,
        rename: dict[str, str] | None = None,
        dry_run: bool = False,
        by: str | None = None,
        limit: int = 10_000,
    ) -> list[MigrationPlan]:
        """Move every unfinished run of ``workflow`` (on definition ``source`` only, if given)
        that can move onto definition ``to``; one plan per run, moved or with the reasons it
        cannot. ``dry_run`` moves none."""
        self._require_open()
        check_id(workflow, "workflow name")
        return await self._operator.migrate_runs(workflow, source, to, rename, by, dry_run, limit)

    async def fork(
        self,
        run_id: str,
        *,
        from_step: str | None = None,
        data: dict[str, Any] | None = None,
        version: str | None = None,
        new_run_id: str | None = None,
    ) -> str:
        """Start a new run (its ``forked_from`` set) that counts the top-level steps before
        ``from_step`` as done and runs from there (None: from the start), on the newest
        registered definition or ``version``; works on runs of any status. Its data is the
        original's as last stored (for a failed run: after compensation) unless ``data`` is
        given. Returns the new run's id."""
        record = await self._get(run_id)
        return await self._operator.fork(record, from_step, data, version, new_run_id)
