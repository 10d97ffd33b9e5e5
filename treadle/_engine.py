"""The engine: registers workflows, starts runs, and executes whatever runs it can claim."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import Coroutine
from datetime import timedelta
from types import TracebackType
from typing import Any

from ._clock import Clock, RealClock
from ._control import encode_data, new_cursor
from ._errors import (
    DataError,
    DefinitionError,
    InvalidTransition,
    LeaseLost,
    NotAnApprover,
    RunNotFound,
    UnknownApproval,
    UnknownSignal,
    WorkflowNotFound,
)
from ._interpreter import RunDriver
from ._metrics import Metrics
from ._nodes import Workflow, validate
from ._state import Event, State, Status
from ._threads import StepThreads
from ._tracing import run_span, tracer
from .persistence import MemoryPersistence, Persistence
from .persistence._base import utcnow
from .persistence._records import NewEvent, RunRecord

log = logging.getLogger("treadle")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def to_state(record: RunRecord) -> State:
    """A detached snapshot of a stored run."""
    return State(
        id=record.id,
        workflow=record.workflow,
        status=record.status,
        data=json.loads(record.data),
        created_at=record.created_at,
        updated_at=record.updated_at,
        error=record.error,
        waiting_for=list(record.waiting_for),
        parent_id=record.parent_id,
    )


def _waits_of(shape: dict[str, Any]) -> tuple[set[str], dict[str, dict[str, Any]]]:
    signals: set[str] = set()
    approvals: dict[str, dict[str, Any]] = {}
    stack = [shape]
    while stack:
        node = stack.pop()
        kind = node.get("kind")
        if kind == "signal":
            signals.add(node["name"])
        elif kind == "approval":
            approvals[node["name"]] = node
        stack.extend(node.get("steps", []))
        stack.extend(node.get("branches", []))
    return signals, approvals


class Engine:
    """Runs workflows durably on a persistence (in memory by default).

    Use it as ``async with engine:`` (or :meth:`open`/:meth:`close`) so that it recovers
    unfinished runs, fires timers and picks up runs started elsewhere.

    Options: ``clock`` (a :class:`FakeClock` in tests), ``max_concurrent_runs`` executing at
    once in this engine (0 makes a control-only engine, as the CLI uses: it starts, signals and
    reads runs but executes none), ``lease`` (seconds another engine waits before it takes
    over a run of a dead one), ``poll_interval`` (the safety-net poll for work),
    ``step_threads`` (worker threads for plain step functions).
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
    ) -> None:
        self.persistence: Persistence = persistence or MemoryPersistence()
        self.clock: Clock = clock or RealClock()
        self.max_concurrent_runs = max_concurrent_runs
        self.lease = timedelta(seconds=lease)
        self.poll_interval = poll_interval
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.step_threads = step_threads
        self.threads = StepThreads(step_threads)
        self.metrics = Metrics()
        self._workflows: dict[str, Workflow] = {}
        self._shapes: dict[str, dict[str, Any]] = {}
        self._saved: set[str] = set()  # definitions known to be in the database
        self._active: dict[str, RunDriver] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._watched = asyncio.Event()  # set while someone waits for a run not executed here
        self._watched_workflow: dict[str, str] = {}  # the workflow of each such run
        self._open = False
        self._closing = False
        self._starting = 0  # runs being started here that will execute here
        self._chores: set[asyncio.Task[None]] = set()  # one-off background work (see settle)
        self._stir = asyncio.Event()  # set when a run stops here or a claim round ends
        self._rounds_begun = 0
        self._rounds_done = 0
        self._quiet_round = 0  # the last claim round that found nothing to claim

    # Definitions ---------------------------------------------------------------------------

    def register(self, workflow: Workflow) -> None:
        """Make a workflow known to this engine (before or after it is opened).

        Registering another definition under a taken name raises :class:`DefinitionError`.
        """
        if not isinstance(workflow, Workflow):
            raise DefinitionError(f"register() takes a built Workflow, not {workflow!r}")
        validate(workflow)
        known = self._workflows.get(workflow.name)
        if known is not None and known.id != workflow.id:
            raise DefinitionError(
                f"workflow {workflow.name!r} is already registered with another definition "
                f"({known.id}, new {workflow.id})"
            )
        self._workflows[workflow.name] = workflow
        self._shapes[workflow.id] = workflow.describe()
        if self._open:
            self._chore(self._save_definition(workflow))
            self._wake.set()

    @property
    def workflows(self) -> dict[str, Workflow]:
        """The workflows registered with this engine, by name."""
        return dict(self._workflows)

    async def _save_definition(self, workflow: Workflow) -> None:
        if workflow.id in self._saved:
            return
        await self.persistence.save_definition(workflow.id, workflow.name, workflow.describe())
        self._saved.add(workflow.id)

    async def definition(self, run_id: str) -> dict[str, Any]:
        """The shape of the definition a run follows (for checks, the CLI and the dashboard)."""
        record = await self._get(run_id)
        return await self._shape(record)

    async def _shape(self, record: RunRecord) -> dict[str, Any]:
        shape = self._shapes.get(record.definition_id)
        if shape is None:
            shape = await self.persistence.load_definition(record.definition_id)
            if shape is None:
                raise WorkflowNotFound(record.workflow)
            self._shapes[record.definition_id] = shape
        return shape

    # Life cycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the persistence, then recover and execute runs in the background."""
        if self._open:
            return
        self.persistence.now = self.clock.now
        # An engine can be opened again after close(), also under another event loop.
        self._wake = asyncio.Event()
        self._stir = asyncio.Event()
        if self.threads.closed:
            self.threads = StepThreads(self.step_threads)
        await self.persistence.open()
        self._open = True
        self._closing = False
        self.persistence.add_wake_listener(self._on_wake)
        self.clock.on_change(self._wake.set)
        for workflow in self._workflows.values():
            await self._save_definition(workflow)
        await self._reap_dead_owners()
        self._in_background(self._dispatch())
        self._in_background(self._heartbeat())
        self._watched = asyncio.Event()
        self._in_background(self._watch())

    async def close(self, drain: float = 5.0) -> None:
        """Stop taking work; let running steps finish for up to ``drain`` seconds, then stop them
        and release their runs so that another engine can go on with them at once."""
        if not self._open:
            return
        self._closing = True
        self._wake.set()
        background = [*self._background, *self._chores]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        self._background.clear()
        self._chores.clear()
        for driver in list(self._active.values()):
            driver.control = driver.control or "shutdown"
        tasks = [d.task for d in self._active.values() if d.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=drain)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.persistence.release_runs(self.owner)
        self.persistence.remove_wake_listener(self._on_wake)
        await self.persistence.close()
        self.threads.shutdown()
        self._open = False

    async def settle(self) -> None:
        """For tests: return once nothing more will happen here without an outside event.

        That is: no run executes or is being started here, no background work of the engine is
        left, and a claim round that began after all that found nothing to claim. Runs waiting
        for a signal, an approval, a later time (move a :class:`FakeClock` and settle again) or
        a run executed elsewhere stay as they are.
        """
        self._require_open()
        while True:
            while self._active or self._starting or self._chores:
                await self._stirred()
            target = self._rounds_begun + 1
            self._wake.set()
            while self._rounds_done < target:
                await self._stirred()
            if self._quiet_round >= target and not (self._active or self._starting or self._chores):
                return

    async def _stirred(self) -> None:
        self._stir.clear()
        await self._stir.wait()

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
        self, name: str, data: dict[str, Any] | None = None, *, run_id: str | None = None
    ) -> str:
        """Start a run of a registered workflow; return its id.

        With a ``run_id`` that exists already, nothing is started and that id is returned.
        """
        workflow = self._workflows.get(name)
        if workflow is None:
            raise WorkflowNotFound(name)
        return await self._create(workflow, data, run_id or new_run_id(), None)

    def child_run_id(self, parent_id: str, path: str) -> str:
        """The deterministic id of the child run a sub-workflow step starts."""
        digest = hashlib.blake2b(path.encode(), digest_size=6).hexdigest()
        return f"{parent_id}.{path.split('/')[-1].split('#')[0]}.{digest}"

    async def start_child(
        self, child_id: str, name: str, data: dict[str, Any] | None, parent_id: str
    ) -> str:
        """Start (idempotently) the child run of a sub-workflow step."""
        workflow = self._workflows.get(name)
        if workflow is None:
            raise WorkflowNotFound(name)
        return await self._create(workflow, data, child_id, parent_id)

    async def _create(
        self,
        workflow: Workflow,
        data: dict[str, Any] | None,
        run_id: str,
        parent_id: str | None,
    ) -> str:
        self._require_open()
        data_json = encode_data({} if data is None else data, f"start of {workflow.name!r}")
        # Other processes validate signals against the stored definition: store it first.
        await self._save_definition(workflow)
        claim = self._has_room()
        if claim:  # hold the room while the run is being stored
            self._starting += 1
        try:
            return await self._store_new(workflow, data_json, run_id, parent_id, claim)
        finally:
            if claim:
                self._starting -= 1

    async def _store_new(
        self, workflow: Workflow, data_json: str, run_id: str, parent_id: str | None, claim: bool
    ) -> str:
        now = self.clock.now()
        record = RunRecord(
            id=run_id,
            workflow=workflow.name,
            definition_id=workflow.id,
            data=data_json,
            cursor=new_cursor(),
            created_at=now,
            updated_at=now,
            parent_id=parent_id,
            owner=self.owner if claim else None,
            lease_until=utcnow() + self.lease if claim else None,
            token=1,
            status=Status.RUNNING if claim else Status.PENDING,
        )
        event = NewEvent("created", None, {"workflow": workflow.name, "definition": workflow.id})
        stored, created = await self.persistence.create_run(record, event)
        if created:
            self.metrics.started(workflow.name)
            if claim:
                self._spawn(stored)
        return stored.id

    async def _get(self, run_id: str) -> RunRecord:
        self._require_open()
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
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(run_id, []).append(future)
            try:
                driver = self._active.get(run_id)
                if driver is None:
                    record = await self._get(run_id)
                    if record.status.finished:
                        return to_state(record)
                    # Woken when it starts or ends here, or by the watcher when it ends elsewhere.
                    self._watched_workflow[run_id] = record.workflow
                    self._watched.set()
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    status = driver.status if driver is not None else record.status
                    raise TimeoutError(f"run {run_id!r} is still {status.value} after {timeout}s")
                await asyncio.wait([future], timeout=remaining)
                if driver is not None and driver.status.finished:
                    # Executed here: its driver says how it ended, no need to read the database.
                    return driver.snapshot()
            finally:
                waiters = self._waiters.get(run_id, [])
                if future in waiters:
                    waiters.remove(future)
                if not waiters:
                    self._waiters.pop(run_id, None)
                    self._watched_workflow.pop(run_id, None)

    async def _watch(self) -> None:
        """Wake the waiters of runs that do not execute here once those runs have ended, with one
        query for all of them; the more there are, the less often.

        A run of a workflow this engine executes starts here (which wakes its waiters) unless
        another process takes it first, so those are checked only every 20th round.
        """
        rounds = 0
        while True:
            await self._watched.wait()
            ids = [run_id for run_id in self._waiters if run_id not in self._active]
            if not ids:
                self._watched.clear()
                continue
            await asyncio.sleep(min(1.0, max(0.05, len(ids) / 20_000)))
            rounds += 1
            ids = [
                run_id
                for run_id in self._waiters
                if run_id not in self._active
                and (rounds % 20 == 0 or not self._runs_here(self._watched_workflow.get(run_id)))
            ]
            try:
                for start in range(0, len(ids), 500):
                    for run_id in await self.persistence.finished_among(ids[start : start + 500]):
                        self._wake_waiters(run_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not check on awaited runs; retrying")

    def _runs_here(self, workflow: str | None) -> bool:
        return workflow in self._workflows and self.max_concurrent_runs > 0

    def _wake_waiters(self, run_id: str) -> None:
        for future in self._waiters.get(run_id, []):
            if not future.done():
                future.set_result(None)

    # Controlling runs ----------------------------------------------------------------------

    async def pause(self, run_id: str) -> None:
        """Pause a run: running steps finish, then it stops before its next step."""
        self._require_open()
        await self.persistence.request_pause(run_id)
        driver = self._active.get(run_id)
        if driver is not None and driver.control is None:
            driver.control = "pause"

    async def resume(self, run_id: str) -> None:
        """Resume a paused run where it was."""
        self._require_open()
        record = await self._get(run_id)
        claim = self._can_run(record.workflow)
        after = await self.persistence.resume(
            run_id,
            owner=self.owner if claim else None,
            lease_until=utcnow() + self.lease if claim else None,
        )
        driver = self._active.get(run_id)
        if driver is not None and driver.control == "pause":
            driver.control = None
        elif after.owner == self.owner and run_id not in self._active:
            self._spawn(after)

    async def cancel(self, run_id: str) -> None:
        """Cancel a run: stop running steps, compensate, end CANCELLED (children too)."""
        self._require_open()
        record = await self._get(run_id)
        claim = self._can_run(record.workflow) and run_id not in self._active
        after = await self.persistence.request_cancel(
            run_id,
            owner=self.owner if claim else None,
            lease_until=utcnow() + self.lease if claim else None,
        )
        driver = self._active.get(run_id)
        if driver is not None:
            self._cancel_driver(driver)
        elif after.owner == self.owner:
            self._spawn(after)
        else:
            await self.cancel_children(run_id)

    def _cancel_driver(self, driver: RunDriver) -> None:
        if driver.control == "cancel":
            return
        driver.control = "cancel"
        if driver.task is not None and driver.failure is None:
            driver.task.cancel()

    async def cancel_children(self, run_id: str) -> None:
        """Cancel every unfinished child run of ``run_id``."""
        for child in await self.persistence.list_runs(parent_id=run_id, limit=10_000):
            if not child.status.finished:
                with contextlib.suppress(InvalidTransition, RunNotFound):
                    await self.cancel(child.id)

    async def signal(self, run_id: str, name: str, data: Any = None) -> None:
        """Send a signal; it is kept in order until the run reaches ``await_signal(name)``."""
        record = await self._get(run_id)
        signals, _ = _waits_of(await self._shape(record))
        if record.status.finished:
            raise InvalidTransition(run_id, record.status.value, f"signal {name!r}")
        if name not in signals:
            raise UnknownSignal(run_id, record.workflow, name)
        self._check_json(data, f"data of signal {name!r}")
        await self._deliver(record, "signal", name, data, {"data": data})

    async def approve(
        self, run_id: str, name: str, *, by: str | None = None, comment: str | None = None
    ) -> None:
        """Approve ``await_approval(name)`` as ``by`` (who must be one of its approvers)."""
        payload = {"approved": True, "by": by, "comment": comment}
        await self._decide(run_id, name, by, payload)

    async def reject(
        self, run_id: str, name: str, *, by: str | None = None, reason: str | None = None
    ) -> None:
        """Reject ``await_approval(name)``: the awaiting step fails with ApprovalRejected."""
        payload = {"approved": False, "by": by, "reason": reason}
        await self._decide(run_id, name, by, payload)

    async def _decide(
        self, run_id: str, name: str, by: str | None, payload: dict[str, Any]
    ) -> None:
        record = await self._get(run_id)
        _, approvals = _waits_of(await self._shape(record))
        if record.status.finished:
            raise InvalidTransition(run_id, record.status.value, f"decide approval {name!r} of")
        spec = approvals.get(name)
        if spec is None:
            raise UnknownApproval(run_id, record.workflow, name)
        approvers = list(spec.get("approvers") or [])
        if approvers and by not in approvers:
            raise NotAnApprover(run_id, name, by, approvers)
        self._check_json(payload, f"decision on approval {name!r}")
        await self._deliver(record, "approval", name, payload, payload)

    async def _deliver(
        self, record: RunRecord, kind: str, name: str, payload: Any, detail: dict[str, Any]
    ) -> None:
        claim = self._can_run(record.workflow) and record.id not in self._active
        after = await self.persistence.deliver(
            record.id,
            kind,
            name,
            payload,
            NewEvent(f"{kind}_received", name, detail),
            owner=self.owner if claim else None,
            lease_until=utcnow() + self.lease if claim else None,
        )
        if claim and after.owner == self.owner and after.id not in self._active:
            self._spawn(after)

    @staticmethod
    def _check_json(value: Any, what: str) -> None:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{what} is not JSON-serialisable: {exc}") from None

    # Executing -----------------------------------------------------------------------------

    def _require_open(self) -> None:
        if not self._open:
            raise RuntimeError("the engine is not open: use 'async with engine:' or open()")

    def _has_room(self) -> bool:
        busy = len(self._active) + self._starting
        return self._open and not self._closing and busy < self.max_concurrent_runs

    def _can_run(self, workflow: str) -> bool:
        return workflow in self._workflows and self._has_room()

    def _on_wake(self, run_id: str) -> None:
        self._wake.set()

    def _spawn(self, record: RunRecord) -> None:
        workflow = self._workflows[record.workflow]
        driver = RunDriver(self, record, workflow)
        self._active[record.id] = driver
        driver.task = asyncio.create_task(self._execute(driver), name=f"treadle-run:{record.id}")
        self._wake_waiters(record.id)  # they now follow the driver

    async def _execute(self, driver: RunDriver) -> None:
        run_id = driver.run_id
        try:
            driver.tracer = tracer()
            with run_span(driver.tracer, run_id, driver.workflow.name):
                status = await driver.drive()
            if status.finished:
                self.metrics.finished(driver.workflow.name, status.value)
            elif status is Status.RUNNING:
                await self._release(driver)
        except LeaseLost:
            log.warning(
                "run %s: lease lost; another worker took it over", run_id, extra={"run_id": run_id}
            )
        except asyncio.CancelledError:
            await asyncio.shield(self._release(driver))
        except Exception:
            log.exception(
                "run %s: execution stopped by an unexpected error; released for retry",
                run_id,
                extra={"run_id": run_id},
            )
            await asyncio.shield(self._release(driver))
        finally:
            full = len(self._active) >= self.max_concurrent_runs
            self._active.pop(run_id, None)
            self._wake_waiters(run_id)
            self._stir.set()
            if full:
                self._wake.set()

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task that close() cancels; it forgets the task once it is done."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _chore(self, work: Coroutine[Any, Any, None]) -> None:
        """Run one-off ``work`` as a task that close() cancels and settle() waits for."""
        task = asyncio.create_task(work)
        self._chores.add(task)
        task.add_done_callback(self._chore_done)

    def _chore_done(self, task: asyncio.Task[None]) -> None:
        self._chores.discard(task)
        self._stir.set()

    async def _spawn_after(self, driver: RunDriver, record: RunRecord) -> None:
        """Execute a fresh claim of a run whose previous driver here is still finishing."""
        if driver.task is not None:
            await asyncio.gather(asyncio.shield(driver.task), return_exceptions=True)
        if record.id in self._active or self._closing:
            await self._release_lease(record.id, record.token)
        else:
            self._spawn(record)

    async def _release(self, driver: RunDriver) -> None:
        await self._release_lease(driver.run_id, driver.token)

    async def _release_lease(self, run_id: str, token: int) -> None:
        # The heartbeat renews every lease of this engine, so a lease that could not be released
        # would never expire: keep trying (the database may be down) until the engine closes.
        delay = 0.5
        while True:
            try:
                await self.persistence.release_run(run_id, token)
                return
            except Exception:
                if self._closing or not self._open:
                    log.warning("run %s: could not release its lease", run_id)
                    return
                log.warning("run %s: could not release its lease; retrying", run_id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _dispatch(self) -> None:
        while not self._closing:
            self._rounds_begun += 1
            number = self._rounds_begun
            try:
                claimed = await self._claim_some()
                timeout = self.poll_interval
                due = await self.persistence.next_wake(list(self._workflows))
                if due is not None:
                    timeout = min(timeout, max(0.0, (due - self.clock.now()).total_seconds()))
                if not claimed:
                    self._quiet_round = number
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatcher: could not claim work; retrying")
                timeout = self.poll_interval
            self._rounds_done = number
            self._stir.set()
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()

    async def _claim_some(self) -> int:
        """Claim and spawn runnable runs while there is room; how many were claimed."""
        claimed = 0
        while not self._closing:
            room = self.max_concurrent_runs - len(self._active)
            names = list(self._workflows)
            if room <= 0 or not names:
                return claimed
            limit = min(room, 200)
            records = await self.persistence.claim_runs(
                self.owner, names, self.clock.now(), utcnow() + self.lease, limit
            )
            claimed += len(records)
            for record in records:
                if record.id not in self._active:
                    self._spawn(record)
                else:  # its driver here is still finishing: go on once it has
                    self._chore(self._spawn_after(self._active[record.id], record))
            if len(records) < limit:
                return claimed
        return claimed

    async def _heartbeat(self) -> None:
        interval = max(self.lease.total_seconds() / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                controls = await self.persistence.renew_leases(self.owner, utcnow() + self.lease)
                for run_id, control in controls.items():
                    driver = self._active.get(run_id)
                    if driver is None or control is None:
                        continue
                    if control == "cancel":
                        self._cancel_driver(driver)
                    elif driver.control is None:
                        driver.control = control
                await self._reap_dead_owners()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("heartbeat failed; retrying")

    async def _reap_dead_owners(self) -> None:
        """Release the leases of engines on this host whose process is gone, without waiting
        for the leases to expire."""
        host = socket.gethostname()
        for owner in await self.persistence.owners():
            parts = owner.split(":")
            if owner == self.owner or len(parts) != 3 or parts[0] != host:
                continue
            if parts[1].isdigit() and not _pid_alive(int(parts[1])):
                released = await self.persistence.release_runs(owner)
                log.info("released %d runs of dead engine %s", released, owner)
                self._wake.set()


def new_run_id() -> str:
    """A new run id: 32 hex digits, a millisecond timestamp then 80 random bits (like UUIDv7).

    Ids that grow with time keep the indexes on run ids (runs, history, inbox) appending at their
    end instead of touching a random page per new run.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"
