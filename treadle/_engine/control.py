"""What every handle on runs can do: start them by workflow name, read them, wait for them,
signal, decide, pause, resume, cancel, and go on with held ones. :class:`Engine` (which also
executes runs) and :class:`Client` (which executes none) are both :class:`RunControl`."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from .._clock import Clock, RealClock
from .._duration import Duration
from .._errors import (
    DataError,
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
from .._labels import check_labels
from .._nodes import Workflow
from .._params import all_recorded
from .._priority import check_priority
from .._search import RunFilter, RunPage
from .._state import Event, State, Status, WaitKind, as_stored
from .._text import require_storable
from .._tracing import capture, with_trace
from ..persistence import Codec, MemoryPersistence, Persistence, with_codec
from ..persistence._rates import RateLimitState
from ..persistence._records import DefinitionRecord, LimitUse, RunRecord
from .bulk import BulkOptions, BulkResult, Hands, bulk
from .convert import new_run_id, to_state
from .debounce import debounce_of, start_debounced
from .executor import Executor
from .inputs import absolute_deadline, input_digest, start_data
from .operator import Operator
from .registry import Registry
from .retention import BATCH_SIZE, Pruner, PruneReport, prune_older_than
from .search import find_page, make_filter


class RunControl:
    """Starts, reads and controls the runs on a persistence; the base of :class:`Engine` and
    :class:`Client` (its methods are documented once, here)."""

    def __init__(
        self,
        persistence: Persistence | None,
        *,
        clock: Clock | None,
        max_concurrent_runs: int,
        lease: float,
        poll_interval: float,
        step_threads: int,
        codec: Codec | None,
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
        self._pruner: Pruner | None = None  # an Engine's, deleting runs past their retention
        self._open = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = ""

    @property
    def persistence(self) -> Persistence:
        """Where the runs are kept."""
        return self._executor.persistence

    @property
    def clock(self) -> Clock:
        """The clock of durable times."""
        return self._executor.clock

    # Life cycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the persistence, then recover and execute runs (and, for an engine with a
        retention, delete finished runs past it) in the background."""
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
        if self._pruner is not None:
            self._pruner.start()

    async def close(self, drain: float = 5.0) -> None:
        """Stop taking work; let running steps finish for up to ``drain`` seconds, then stop them
        and release their runs so that another engine can go on with them at once."""
        if not self._open:
            return
        if self._pruner is not None:
            await self._pruner.stop()
        await self._executor.stop(drain)
        await self.persistence.close()
        self._open = False
        self._loop = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def definition(self, run_id: str) -> dict[str, Any]:
        """The shape of the definition a run follows (for checks, the CLI and the dashboard)."""
        return await self._registry.shape(self.persistence, await self._get(run_id))

    # Starting and reading runs -------------------------------------------------------------

    async def start(
        self,
        name: str,
        data: Any = None,
        *,
        run_id: str | None = None,
        version: str | None = None,
        deadline: Duration | datetime | None = None,
        labels: dict[str, str] | None = None,
        priority: int = 0,
        debounce_key: str | None = None,
        debounce: Duration | None = None,
        debounce_max: Duration | None = None,
    ) -> str:
        """Start a run of a workflow on its newest definition (or the one whose ``version``
        label or id is ``version``); return its id. The run stays pinned to that definition.

        ``deadline`` (a duration from now, or a timezone-aware datetime) cancels the run with
        ``DeadlineExceeded`` unless it has ended by then; the workflow's own ``.deadline(...)``
        applies when it is sooner.
        ``labels`` (key → text, see :class:`RunFilter`) are stored with the run, for search.

        A workflow (or version) not registered here is started from the definitions that
        workers stored: the run is PENDING for an engine that has it (so a web process starts
        runs without importing step code). :class:`WorkflowNotFound` when none is stored.

        With a ``run_id`` that exists already, nothing is started: with the same workflow and
        the same data (compared as canonical JSON) that id is returned, else :class:`RunExists`
        is raised.

        ``priority`` (an int from -1000 to 1000): engines claim runnable runs of higher priority
        first, FIFO within one. With ``debounce_key`` and ``debounce`` (a duration), starts of
        the workflow with that key collapse into one run, which begins ``debounce`` after the
        last of them (no later than ``debounce_max`` after the first, if given) with the last
        one's data, labels and priority; each returns that run's id.
        """
        self._require_open()
        check_id(name, "workflow name")
        workflow: Workflow | DefinitionRecord
        try:
            workflow = self._registry.get(name, version)
        except WorkflowNotFound:  # not registered here: a definition some worker stored
            workflow = await self._registry.resolve(self.persistence, name, version)
        debounced = debounce_of(debounce_key, debounce, debounce_max, run_id)
        run_id = new_run_id() if run_id is None else check_id(run_id, "run id")
        labels, priority = check_labels(labels), check_priority(priority)
        until = absolute_deadline(deadline, self.clock.now())
        data, data_json = start_data(workflow, data)  # checked, as the input model says
        if debounced is not None:
            return await start_debounced(
                self._executor,
                workflow,
                data_json,
                run_id,
                debounced,
                input_digest=input_digest(data),
                trace=capture(),
                deadline=until,
                labels=labels,
                priority=priority,
            )
        return await self._executor.create(
            workflow,
            data_json,
            run_id,
            None,
            input_digest=input_digest(data),
            trace=capture(),
            deadline=until,
            labels=labels,
            priority=priority,
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

    async def result(self, run_id: str) -> Any:
        """What the COMPLETED run returned (its workflow's ``output``; None without one);
        :class:`InvalidTransition` for a run that has not completed (saying its status)."""
        record = await self._get(run_id)
        if record.status is not Status.COMPLETED:
            raise InvalidTransition(run_id, record.status.value, "read the result of")
        return None if record.result is None else json.loads(record.result)

    async def runs(
        self,
        *,
        workflow: str | None = None,
        status: Status | str | None = None,
        limit: int = 100,
        parent_id: str | None = None,
        **fields: Any,
    ) -> list[State]:
        """Runs, newest first, optionally of one workflow and/or status (and matching the
        other ``fields`` of :class:`RunFilter`, given by name): the first page of
        :meth:`find_runs`."""
        self._require_open()
        if fields:
            chosen = dict(workflow=workflow, status=status, parent_id=parent_id, **fields)
            return (await self.find_runs(limit=limit, **chosen)).runs
        status_text = None if status is None else Status(status).value
        records = await self.persistence.list_runs(
            workflow=workflow, status=status_text, parent_id=parent_id, limit=limit
        )
        return [to_state(r) for r in records]

    async def find_runs(
        self,
        filter: RunFilter | None = None,
        /,
        *,
        cursor: str | None = None,
        limit: int = 100,
        **fields: Any,
    ) -> RunPage:
        """One page of the runs that match ``filter`` (or the :class:`RunFilter` of
        ``fields``), newest first: at most ``limit`` (1 to 1000), and the cursor of the next
        page, to pass back as ``cursor`` (None: this is the last page). Pages do not shift when
        runs are created meanwhile. :class:`DataError` for a bad filter, limit or cursor."""
        self._require_open()
        return await find_page(self.persistence, make_filter(filter, fields), cursor, limit)

    async def bulk(
        self,
        action: str,
        filter: RunFilter | None = None,
        /,
        *,
        dry_run: bool = False,
        by: str | None = None,
        reason: str | None = None,
        to: str | None = None,
        rename: dict[str, str] | None = None,
        batch: int = 100,
        run_ids: Sequence[str] | None = None,
        **fields: Any,
    ) -> BulkResult:
        """Apply ``action`` (``cancel``, ``resume``, ``retry``, ``abort`` with a ``reason``,
        ``migrate`` with ``to``/``rename``) to every run that ``filter`` (or the
        :class:`RunFilter` of ``fields``) matches, ``batch`` runs at a time, as ``by`` (kept in
        each run's history with ``bulk: true``). A run the action does not apply to (finished,
        not held, not paused, a cancel already requested...) is skipped with the reason, and
        so is one whose action is refused; the others go on. ``dry_run`` touches nothing and
        says which runs the action would apply to. With ``run_ids``, only those runs (that
        the filter matches too) are acted on."""
        self._require_open()
        options = BulkOptions(by=by, reason=reason, to=to, rename=rename)
        flt = make_filter(filter, fields)
        hands = Hands(self._executor, self._operator)
        return await bulk(
            hands, action, flt, options, dry_run=dry_run, batch=batch, run_ids=run_ids
        )

    async def history(self, run_id: str) -> list[Event]:
        """What happened to the run, in order."""
        await self._get(run_id)
        return await self.persistence.history(run_id)

    async def limits(self) -> list[LimitUse]:
        """Every concurrency key in use on the database (a run holds one of its slots or is
        queued for one), by key: its limit, holders and queued runs."""
        self._require_open()
        return await self.persistence.limits()

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

    async def resume(self, run_id: str, *, by: str | None = None) -> None:
        """Resume a paused run where it was (``by``, if given, is kept in its history)."""
        await self._executor.resume(await self._get(run_id), _by(by))

    async def cancel(self, run_id: str, *, by: str | None = None) -> None:
        """Cancel a run: stop running steps, compensate, end CANCELLED (children too); ``by``,
        if given, is kept in its history."""
        await self._executor.cancel(await self._get(run_id), _by(by))

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
        if record.status.finished and key is None:  # with a key: maybe a repeat, acknowledged
            raise InvalidTransition(run_id, record.status.value, f"signal {name!r}")
        if name not in waits.signals:
            raise UnknownSignal(run_id, record.workflow, name)
        data = _as_stored(data, f"data of signal {name!r}")
        detail = with_trace({"data": data})  # the sender's trace, for who looks at the history
        await self._executor.deliver(
            record, WaitKind.SIGNAL, name, data, detail, idempotency_key=key
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
        if record.status.finished and key is None:
            raise InvalidTransition(run_id, record.status.value, f"decide approval {name!r} of")
        spec = waits.approvals.get(name)
        if spec is None:
            raise UnknownApproval(run_id, record.workflow, name)
        # Approvers computed from the run's data are recorded in its cursor: they win.
        computed = all_recorded(record.cursor).get(name, {})
        approvers = list(computed.get("approvers") or spec.get("approvers") or [])
        if approvers and by not in approvers:
            raise NotAnApprover(run_id, name, by, approvers)
        payload = _as_stored(payload, f"decision on approval {name!r}")
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

    # Deleting finished runs ----------------------------------------------------------------

    async def delete(self, run_id: str) -> list[str]:
        """Delete a finished run now, whole (history, inbox, labels), with its descendants (an
        erasure request); return the ids deleted, the run's first. :class:`InvalidTransition`
        for an unfinished run (cancel it first), one whose parent is unfinished, or one with an
        unfinished descendant; :class:`RunNotFound` for an unknown one."""
        self._require_open()
        return await self.persistence.delete_run(check_id(run_id, "run id"))

    async def prune(
        self,
        older_than: Duration,
        *,
        status: Status | str | None = None,
        workflow: str | None = None,
        dry_run: bool = False,
        batch_size: int = BATCH_SIZE,
    ) -> PruneReport:
        """Delete the finished runs (of ``status``, of ``workflow``, if given) that ended more
        than ``older_than`` ago by this handle's clock, whatever their retention, in batches of
        ``batch_size`` runs a transaction; ``dry_run`` deletes nothing and reports what would
        go. Unfinished runs are never deleted."""
        self._require_open()
        return await prune_older_than(
            self.persistence,
            self.clock.now(),
            older_than,
            status=status,
            workflow=workflow,
            dry_run=dry_run,
            batch_size=batch_size,
        )

    async def rate_limits(self) -> list[RateLimitState]:
        """Every rate limiter that a step has reserved a call of, by name, with its state now
        (settings, calls available, the next free time, runs parked for it)."""
        self._require_open()
        return await self.persistence.rate_limits()

    def _require_open(self) -> None:
        kind = type(self).__name__  # Engine or Client, in the words of the caller's code
        handle = kind.lower()
        if not self._open:
            if kind == "Engine":
                raise EngineNotOpen("the engine is not open: use 'async with engine:' or open()")
            raise EngineNotOpen(f"this {kind} is not open: use 'async with {handle}:' or open()")
        if asyncio.get_running_loop() is not self._loop:
            raise WrongEventLoop(
                f"this {handle} belongs to the event loop it was opened on (in thread "
                f"{self._thread!r}) and was called from another loop (thread "
                f"{threading.current_thread().name!r}): use one {handle} per event loop, or call "
                "it on its own loop (asyncio.run_coroutine_threadsafe from other threads); for "
                f"threads without an event loop (Django, Flask) use treadle.Sync{kind}"
            )


def _as_stored(value: Any, what: str) -> Any:
    """``value`` in its JSON form (datetimes as ISO text...), as the inbox stores it; else
    :class:`DataError` saying what has no JSON form and where."""
    stored, _ = as_stored({"data": value}, what)
    return stored["data"]


def _by(by: str | None) -> dict[str, Any] | None:
    return None if by is None else {"by": str(by)}


def _key(idempotency_key: str | None) -> str | None:
    return None if idempotency_key is None else check_id(idempotency_key, "idempotency key")
