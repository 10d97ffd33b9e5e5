"""The engine: registers workflows, starts runs, and executes whatever runs it can claim."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta
from types import TracebackType
from typing import Any

from .._clock import Clock, RealClock
from .._errors import (
    DataError,
    DefinitionMismatch,
    EngineNotOpen,
    InvalidTransition,
    NotAnApprover,
    RunNotFound,
    UnknownApproval,
    UnknownSignal,
    WorkflowNotFound,
    WrongEventLoop,
)
from .._ids import check_id
from .._metrics import Metrics
from .._nodes import Workflow
from .._state import Event, State, Status, WaitKind
from .._text import require_storable
from .._threads import StepThreads
from ..persistence import Codec, MemoryPersistence, Persistence, with_codec
from ..persistence._records import DefinitionRecord, RunRecord
from .convert import new_run_id, to_state
from .executor import Executor, input_digest
from .inputs import start_data
from .operator import MigrationPlan, Operator
from .registry import Registry


class Engine:
    """Runs workflows durably on a persistence (in memory by default).

    Use it as ``async with engine:`` (or :meth:`open`/:meth:`close`) so that it recovers
    unfinished runs, fires timers and picks up runs started elsewhere.

    Options: ``clock`` (a :class:`FakeClock` in tests), ``max_concurrent_runs`` executing at
    once in this engine (0 makes a control-only engine, as the CLI uses: it starts, signals and
    reads runs but executes none), ``lease`` (seconds another engine waits before it takes
    over a run of a dead one), ``poll_interval`` (the safety-net poll), ``step_threads``
    (threads for plain step functions), ``codec`` (a :class:`Codec` for data at rest).
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
    ) -> None:
        self._registry = Registry()
        self._executor = Executor(
            with_codec(persistence or MemoryPersistence(), codec),
            clock or RealClock(),
            self._registry,
            max_concurrent_runs=max_concurrent_runs,
            lease=timedelta(seconds=lease),
            poll_interval=poll_interval,
            step_threads=step_threads,
        )
        self._operator = Operator(self._executor)
        self._open = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = ""

    # What it was made with -----------------------------------------------------------------

    @property
    def persistence(self) -> Persistence:
        """Where the runs are kept."""
        return self._executor.persistence

    @property
    def clock(self) -> Clock:
        """The clock of durable times."""
        return self._executor.clock

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
        return self._executor.step_threads

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

    async def definition(self, run_id: str) -> dict[str, Any]:
        """The shape of the definition a run follows (for checks, the CLI and the dashboard)."""
        return await self._registry.shape(self.persistence, await self._get(run_id))

    # Life cycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the persistence, then recover and execute runs in the background."""
        if self._open:
            raise WrongEventLoop(
                f"the engine is already open (on the event loop of thread {self._thread!r}): "
                "open it once and share it within that loop, or make one engine per loop"
            )
        self._loop = asyncio.get_running_loop()
        self._thread = threading.current_thread().name
        self.persistence.now = self.clock.now
        # An engine can be opened again after close(), also under another event loop.
        self._executor.prepare()
        await self.persistence.open()
        self._open = True
        await self._registry.save_all(self.persistence)
        await self._executor.start()

    async def close(self, drain: float = 5.0) -> None:
        """Stop taking work; let running steps finish for up to ``drain`` seconds, then stop them
        and release their runs so that another engine can go on with them at once."""
        if not self._open:
            return
        await self._executor.stop(drain)
        await self.persistence.close()
        self._open = False
        self._loop = None

    async def settle(self) -> None:
        """For tests: return once nothing more will happen here without an outside event.

        That is: no run executes or is being started here, no background work of the engine is
        left, and a claim round that began after all that found nothing to claim. Runs waiting
        for a signal, an approval, a later time (move a :class:`FakeClock` and settle again) or
        a run executed elsewhere stay as they are.
        """
        self._require_open()
        await self._executor.settle()

    async def __aenter__(self) -> Engine:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # Starting and reading runs -------------------------------------------------------------

    async def start(
        self,
        name: str,
        data: Any = None,
        *,
        run_id: str | None = None,
        version: str | None = None,
    ) -> str:
        """Start a run of a workflow on its newest definition (or the one whose ``version``
        label or id is ``version``); return its id. The run stays pinned to that definition.

        A workflow (or version) not registered here is started from the definitions that
        workers stored: the run is PENDING for an engine that has it (so a web process starts
        runs without importing step code). :class:`WorkflowNotFound` when none is stored.

        With a ``run_id`` that exists already, nothing is started: with the same workflow and
        the same data (compared as canonical JSON) that id is returned, else :class:`RunExists`
        is raised.
        """
        self._require_open()
        check_id(name, "workflow name")
        workflow: Workflow | DefinitionRecord
        try:
            workflow = self._registry.get(name, version)
        except WorkflowNotFound:  # not registered here: a definition some worker stored
            workflow = await self._registry.resolve(self.persistence, name, version)
        run_id = new_run_id() if run_id is None else check_id(run_id, "run id")
        data, data_json = start_data(workflow, data)  # checked, as the input model says
        return await self._executor.create(
            workflow, data_json, run_id, None, input_digest=input_digest(data)
        )

    async def _get(self, run_id: str) -> RunRecord:
        self._require_open()
        check_id(run_id, "run id")
        record = await self.persistence.get_run(run_id)
        if record is None:
            raise RunNotFound(run_id)
        return record

    async def status(self, run_id: str) -> State:
        """A snapshot of the run (changing it changes nothing stored)."""
        return to_state(await self._get(run_id))

    async def runs(
        self,
        *,
        workflow: str | None = None,
        status: Status | str | None = None,
        limit: int = 100,
        parent_id: str | None = None,
    ) -> list[State]:
        """Runs, newest first, optionally of one workflow and/or status."""
        self._require_open()
        status_text = None if status is None else Status(status).value
        records = await self.persistence.list_runs(
            workflow=workflow, status=status_text, parent_id=parent_id, limit=limit
        )
        return [to_state(r) for r in records]

    async def history(self, run_id: str) -> list[Event]:
        """What happened to the run, in order."""
        await self._get(run_id)
        return await self.persistence.history(run_id)

    async def wait(self, run_id: str, timeout: float | None = None) -> State:
        """Wait until the run is COMPLETED, FAILED or CANCELLED; :class:`TimeoutError` if not
        within ``timeout`` seconds."""
        self._require_open()
        return await self._executor.waiters.wait(run_id, timeout)

    # Controlling runs ----------------------------------------------------------------------

    async def pause(self, run_id: str) -> None:
        """Pause a run: running steps finish, then it stops before its next step."""
        self._require_open()
        await self.persistence.request_pause(run_id)
        self._executor.pause(run_id)

    async def resume(self, run_id: str) -> None:
        """Resume a paused run where it was."""
        await self._executor.resume(await self._get(run_id))

    async def cancel(self, run_id: str) -> None:
        """Cancel a run: stop running steps, compensate, end CANCELLED (children too)."""
        await self._executor.cancel(await self._get(run_id))

    async def signal(
        self, run_id: str, name: str, data: Any = None, *, idempotency_key: str | None = None
    ) -> None:
        """Send a signal; it is kept in order until the run reaches ``await_signal(name)``.

        With an ``idempotency_key`` (an id), a repeated delivery with the same key to the same
        run is acknowledged and stored once (a database constraint, also across engines)."""
        check_id(name, "signal name")
        key = _key(idempotency_key)
        require_storable(data, f"data of signal {name!r}")
        record = await self._get(run_id)
        waits = await self._registry.waits(self.persistence, record)
        if record.status.finished:
            raise InvalidTransition(run_id, record.status.value, f"signal {name!r}")
        if name not in waits.signals:
            raise UnknownSignal(run_id, record.workflow, name)
        _check_json(data, f"data of signal {name!r}")
        await self._executor.deliver(
            record, WaitKind.SIGNAL, name, data, {"data": data}, idempotency_key=key
        )

    async def approve(
        self,
        run_id: str,
        name: str,
        *,
        by: str | None = None,
        comment: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Approve ``await_approval(name)`` as ``by`` (who must be one of its approvers).

        A decision is stored once: per ``idempotency_key`` (as for :meth:`signal`), and while a
        decision by ``by`` on ``name`` waits unconsumed in the run's inbox, the same decision by
        them again is acknowledged and dropped (approving twice does not approve a looped
        approval's next round too)."""
        payload = {"approved": True, "by": by, "comment": comment}
        await self._decide(run_id, name, by, payload, idempotency_key)

    async def reject(
        self,
        run_id: str,
        name: str,
        *,
        by: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Reject ``await_approval(name)``: the awaiting step fails with ApprovalRejected.
        Stored once, as for :meth:`approve`."""
        payload = {"approved": False, "by": by, "reason": reason}
        await self._decide(run_id, name, by, payload, idempotency_key)

    async def _decide(
        self,
        run_id: str,
        name: str,
        by: str | None,
        payload: dict[str, Any],
        idempotency_key: str | None,
    ) -> None:
        check_id(name, "approval name")
        key = _key(idempotency_key)
        require_storable(payload, f"decision on approval {name!r}")
        record = await self._get(run_id)
        waits = await self._registry.waits(self.persistence, record)
        if record.status.finished:
            raise InvalidTransition(run_id, record.status.value, f"decide approval {name!r} of")
        spec = waits.approvals.get(name)
        if spec is None:
            raise UnknownApproval(run_id, record.workflow, name)
        approvers = list(spec.get("approvers") or [])
        if approvers and by not in approvers:
            raise NotAnApprover(run_id, name, by, approvers)
        _check_json(payload, f"decision on approval {name!r}")
        await self._executor.deliver(
            record, WaitKind.APPROVAL, name, payload, payload, idempotency_key=key
        )

    # Runs that outlive their code -----------------------------------------------------------

    async def retry(self, run_id: str, *, by: str | None = None) -> None:
        """Go on with a HELD run: its failed step runs again with fresh attempts (a run held by
        its definition checks its position again, e.g. after :meth:`migrate`)."""
        await self._operator.decide(await self._get(run_id), "retry", by)

    async def skip(
        self, run_id: str, data: dict[str, Any] | None = None, *, by: str | None = None
    ) -> None:
        """Mark the failed step of a HELD run done, with ``data`` merged into the run's data
        (its top-level keys replaced), and go on after it; its compensation is not stacked."""
        if data is not None and not isinstance(data, dict):
            raise DataError(
                f"skip of run {run_id!r}: data must be a dict, not {type(data).__name__}"
            )
        await self._operator.decide(await self._get(run_id), "skip", by, data=data or {})

    async def abort(self, run_id: str, reason: str, *, by: str | None = None) -> None:
        """End a HELD run as a failed one would: compensate its completed steps, end FAILED
        with ``aborted: <reason>``."""
        await self._operator.decide(await self._get(run_id), "abort", by, reason=str(reason))

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

    def _require_open(self) -> None:
        if not self._open:
            raise EngineNotOpen("the engine is not open: use 'async with engine:' or open()")
        if asyncio.get_running_loop() is not self._loop:
            raise WrongEventLoop(
                f"this engine belongs to the event loop it was opened on (in thread "
                f"{self._thread!r}) and was called from another loop (thread "
                f"{threading.current_thread().name!r}): use one engine per event loop, or call "
                "it on its own loop (asyncio.run_coroutine_threadsafe from other threads); for "
                "threads without an event loop (Django, Flask) use treadle.SyncEngine"
            )


def _check_json(value: Any, what: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} is not JSON-serialisable: {exc}") from None


def _key(idempotency_key: str | None) -> str | None:
    return None if idempotency_key is None else check_id(idempotency_key, "idempotency key")
