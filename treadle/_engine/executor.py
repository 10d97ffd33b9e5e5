"""The executor: claims runs, executes them, and keeps their leases (heartbeat, reaper)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any

from .._clock import Clock
from .._errors import InvalidTransition, LeaseLost, RunNotFound
from .._interpreter import NEW_CURSOR, Control, RunDriver
from .._interpreter.cursor import load as load_cursor
from .._interpreter.deadlines import abandoned
from .._metrics import Metrics
from .._nodes import Workflow
from .._state import EventKind, Status, WaitKind
from .._tracing import capture, run_span, tracer
from ..persistence import Persistence
from ..persistence._base import utcnow
from ..persistence._records import DefinitionRecord, NewEvent, RunRecord
from .backoff import Backoff
from .capacity import Capacity
from .executed import Executed
from .inputs import check_new_run, check_same, run_deadline, start_data
from .leases import NO_LEASE, Lease, LeaseFields, reap_dead_owners, release_lease
from .owners import new_owner
from .registry import Registry
from .waiters import Waiters

log = logging.getLogger("treadle")


class Executor:
    """Executes the runs this engine holds the lease of; implements :class:`RunHost`."""

    def __init__(
        self,
        persistence: Persistence,
        clock: Clock,
        registry: Registry,
        *,
        max_concurrent_runs: int,
        lease: timedelta,
        poll_interval: float,
        step_threads: int,
    ) -> None:
        self.persistence = persistence
        self.clock = clock
        self.registry = registry
        self.max_concurrent_runs = max_concurrent_runs
        self.lease = lease
        self.poll_interval = poll_interval
        self.owner = new_owner()
        self.metrics = Metrics()
        self.active: dict[str, RunDriver] = {}
        self.capacity = Capacity(step_threads, lease, max_concurrent_runs, self.active, registry)
        self.capacity.on_freed = self._room_freed
        self.threads = self.capacity.threads
        self.executed = Executed()
        self.waiters = Waiters(persistence, self.active, self.runs_here)
        self.running = False  # between start() and stop()
        self.closing = False
        self._starting = 0  # runs being started here that will execute here
        self._background: set[asyncio.Task[None]] = set()
        self._chores: set[asyncio.Task[None]] = set()  # one-off background work (see settle)
        self._wake = asyncio.Event()
        self._stir = asyncio.Event()  # set when a run stops here or a claim round ends
        self._rounds_begun = 0
        self._rounds_done = 0
        self._quiet_round = 0  # the last claim round that found nothing to claim
        self._wants_room = False  # the dispatcher waits for a run to end here
        self.backoff = Backoff()
        # Runs whose execution stopped by an unexpected error: their lease is kept (so nobody
        # runs them at once again) until the timer releases it.
        self._held: dict[str, asyncio.TimerHandle] = {}

    # Life cycle ----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Fresh loop-bound state before the persistence opens (also after a close)."""
        self._wake = asyncio.Event()
        self._stir = asyncio.Event()
        self.threads = self.capacity.renew()

    async def start(self) -> None:
        """Recover, then claim and execute runs in the background."""
        self.running, self.closing = True, False
        self.persistence.add_wake_listener(self._on_wake)
        self.clock.on_change(self._wake.set)
        await self._reap_dead_owners()
        if self.max_concurrent_runs > 0:  # an engine that executes nothing polls for nothing
            self._in_background(self._dispatch())
        self._in_background(self._heartbeat())
        self.waiters.reset()
        self._in_background(self.waiters.watch())

    async def stop(self, drain: float) -> None:
        """Stop claiming; let drivers finish for up to ``drain`` seconds, then stop them and
        release their runs."""
        self.closing = True
        self._wake.set()
        background = [*self._background, *self._chores]
        for task in background:
            task.cancel()
        for handle in self._held.values():  # release_runs() below lets them go
            handle.cancel()
        self._held.clear()
        self.backoff.clear()
        await asyncio.gather(*background, return_exceptions=True)
        self._background.clear()
        self._chores.clear()
        for driver in list(self.active.values()):
            driver.request(Control.SHUTDOWN)
        tasks = [d.task for d in self.active.values() if d.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=drain)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.persistence.release_runs(self.owner)
        self.persistence.remove_wake_listener(self._on_wake)
        self.threads.shutdown()
        self.running = False

    async def settle(self) -> None:
        """See :meth:`Engine.settle`."""
        while True:
            while self.active or self._starting or self._chores or self._held:
                await self._stirred()
            if self.max_concurrent_runs == 0:
                return  # no claim rounds to wait for
            target = self._rounds_begun + 1
            self._wake.set()
            while self._rounds_done < target:
                await self._stirred()
            busy = self.active or self._starting or self._chores or self._held
            if self._quiet_round >= target and not busy:
                return

    async def _stirred(self) -> None:
        self._stir.clear()
        await self._stir.wait()

    def wake(self) -> None:
        """Have the dispatcher look for work now."""
        self._wake.set()

    def _on_wake(self, run_id: str) -> None:
        self._wake.set()

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task that stop() cancels; it forgets the task once it is done."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def chore(self, work: Coroutine[Any, Any, None]) -> None:
        """Run one-off ``work`` as a task that stop() cancels and settle() waits for."""
        task = asyncio.create_task(work)
        self._chores.add(task)
        task.add_done_callback(self._chore_done)

    def _chore_done(self, task: asyncio.Task[None]) -> None:
        self._chores.discard(task)
        self._stir.set()

    # Leases --------------------------------------------------------------------------------

    def new_lease(self) -> Lease:
        """A lease of this engine from now on (the one place a lease's end is computed)."""
        return Lease(self.owner, utcnow() + self.lease)

    def lease_if(self, claim: bool) -> LeaseFields:
        """A new lease of this engine if it claims the run, else none."""
        if not claim:
            return NO_LEASE
        lease = self.new_lease()
        return LeaseFields(owner=lease.owner, lease_until=lease.until)

    def has_room(self, threads: bool = True) -> bool:
        """Whether one more run can execute here (a thread too, see :mod:`.capacity`)."""
        return self.running and not self.closing and self.capacity.room(self._starting, threads) > 0

    def can_run(self, record: RunRecord) -> bool:
        """Whether ``record`` can execute here now (its definition is here, and room)."""
        return self.registry.for_run(record) is not None and self.has_room()

    def runs_here(self, record: RunRecord | None) -> bool:
        """Whether ``record`` would execute here (its definition is registered, and there is
        room for runs at all)."""
        runnable = record is not None and self.registry.for_run(record) is not None
        return runnable and self.max_concurrent_runs > 0

    # Starting and steering runs ------------------------------------------------------------

    async def create(
        self,
        workflow: Workflow | DefinitionRecord,
        data_json: str,
        run_id: str,
        parent_id: str | None,
        *,
        cursor: str = NEW_CURSOR,
        detail: dict[str, Any] | None = None,
        forked_from: str | None = None,
        input_digest: str | None = None,
        trace: str | None = None,
        deadline: datetime | None = None,
        labels: dict[str, str] | None = None,
        priority: int = 0,
    ) -> str:
        """Store a new run (idempotently by id) and execute it here if there is room.

        With ``input_digest`` (of the start data, kept in the ``created`` event), a run that
        exists already with another workflow or another digest raises :class:`RunExists`.
        A stored definition (not registered here) makes a PENDING run for the engines that
        have it. It ends by ``deadline``, or its workflow's own if that is sooner."""
        # Other processes validate signals against the stored definition: store it first.
        here = isinstance(workflow, Workflow)
        if isinstance(workflow, Workflow):
            await self.registry.save(self.persistence, workflow)
        claim = here and self.has_room(threads=False)  # a start here stays here (no round trip)
        if claim:  # hold the room while the run is being stored
            self._starting += 1
        try:
            now = self.clock.now()
            record = RunRecord(
                id=run_id,
                workflow=workflow.name,
                definition_id=workflow.id,
                data=data_json,
                cursor=cursor,
                created_at=now,
                updated_at=now,
                parent_id=parent_id,
                token=1,
                status=Status.RUNNING if claim else Status.PENDING,
                version=workflow.version,
                forked_from=forked_from,
                trace=trace,
                deadline_at=run_deadline(workflow, now, deadline),
                labels=labels or {},
                priority=priority,
                **self.lease_if(claim),
            )
            about = {"workflow": workflow.name, "definition": workflow.id, **(detail or {})}
            if input_digest is not None:
                about["input"] = input_digest
            event = NewEvent(EventKind.CREATED, None, about)
            stored, created = await self.persistence.create_run(record, event)
            if created:
                self.metrics.started(workflow.name)
                if claim:
                    self._spawn(stored)
            elif input_digest is not None:
                await check_same(self.persistence, stored, workflow.name, input_digest)
            return stored.id
        finally:
            if claim:
                self._starting -= 1
                self._room_freed()

    async def start_child(
        self,
        child_id: str,
        workflow: str,
        data: dict[str, Any] | None,
        parent_id: str,
        deadline: datetime | None,
    ) -> None:
        """Start (idempotently) a sub-workflow step's child run, at its parent's priority."""
        found, parent = self.registry.get(workflow), self.active.get(parent_id)
        _, data_json = start_data(found, data)
        priority = 0 if parent is None else parent.record.priority
        await self.create(found, data_json, child_id, parent_id, trace=capture(),
                          deadline=deadline, priority=priority)  # fmt: skip

    def pause(self, run_id: str) -> None:
        """Ask the run's driver here, if any, to pause before its next step."""
        driver = self.active.get(run_id)
        if driver is not None:
            driver.request(Control.PAUSE)

    async def resume(self, record: RunRecord, detail: dict[str, Any] | None = None) -> None:
        """Resume a paused run; execute it here if it is this engine's to run."""
        lease = self.lease_if(self.can_run(record))
        after = await self.persistence.resume(record.id, detail=detail, **lease)
        driver = self.active.get(record.id)
        if driver is not None:
            driver.withdraw(Control.PAUSE)
        elif after.owner == self.owner:
            self._spawn(after)

    async def cancel(self, record: RunRecord, detail: dict[str, Any] | None = None) -> None:
        """Cancel a run: its driver here stops at once, or it is executed to compensate."""
        run_id = record.id
        claim = self.can_run(record) and run_id not in self.active
        after = await self.persistence.request_cancel(run_id, detail=detail, **self.lease_if(claim))
        driver = self.active.get(run_id)
        if driver is not None:
            driver.request(Control.CANCEL)
        elif after.owner == self.owner:
            self._spawn(after)
        else:
            await self.cancel_children(run_id, abandoned(load_cursor(after.cursor)["n"]))

    async def cancel_children(self, run_id: str, keep: frozenset[str] = frozenset()) -> None:
        """Cancel every unfinished child run of ``run_id`` but those in ``keep`` (for
        :class:`RunHost`)."""
        for child in await self.persistence.list_runs(parent_id=run_id, limit=10_000):
            if not child.status.finished and child.id not in keep:
                with contextlib.suppress(InvalidTransition, RunNotFound):
                    await self.cancel(child)

    async def deliver(
        self,
        record: RunRecord,
        kind: WaitKind,
        name: str,
        payload: Any,
        detail: dict[str, Any],
        *,
        event: EventKind | None = None,
        awaited: bool = False,
        idempotency_key: str | None = None,
    ) -> None:
        """Put a signal or decision in the run's inbox; execute the run here if it woke it
        (``awaited``: only if the run waits for it now, see ``Persistence.deliver``)."""
        claim = self.can_run(record) and record.id not in self.active
        after = await self.persistence.deliver(
            record.id,
            kind,
            name,
            payload,
            NewEvent(event or EventKind(f"{kind}_received"), name, detail),
            awaited=awaited,
            idempotency_key=idempotency_key,
            **self.lease_if(claim),
        )
        if claim and after.owner == self.owner and after.id not in self.active:
            self._spawn(after)

    # Executing -----------------------------------------------------------------------------

    def _spawn(self, record: RunRecord) -> None:
        if not self.executed.begin(record.id, record.token):
            return  # a stale hand-over of a lease already executed here (see .executed)
        workflow = self.registry.for_run(record)
        assert workflow is not None, "only runs whose definition is here are claimed"
        check_new_run(record, workflow)
        driver = RunDriver(self, record, workflow)
        self.active[record.id] = driver
        driver.task = asyncio.create_task(self._execute(driver), name=f"treadle-run:{record.id}")
        self.waiters.wake(record.id)  # they now follow the driver

    async def _execute(self, driver: RunDriver) -> None:
        run_id = driver.run_id
        try:
            driver.tracer = tracer()
            with run_span(driver.tracer, run_id, driver.workflow.name, driver.trace):
                status = await driver.drive()
            self.backoff.succeeded(run_id)
            if status.finished:
                self.metrics.finished(driver.workflow.name, status.value)
            elif status is Status.RUNNING:
                await self._release(driver)
        except LeaseLost:
            self.metrics.lease_lost()
            log.warning(
                "run %s: lease lost; another worker took it over", run_id, extra={"run_id": run_id}
            )
        except asyncio.CancelledError:
            await asyncio.shield(self._release(driver))
        except Exception:
            if self.closing or not self.running:
                log.exception("run %s: execution stopped by an unexpected error", run_id)
                await asyncio.shield(self._release(driver))
            else:
                delay = self.backoff.failed(run_id)
                log.exception(
                    "run %s: execution stopped by an unexpected error; executed again in %.1fs",
                    run_id,
                    delay,
                    extra={"run_id": run_id},
                )
                self._hold(run_id, driver.token, delay)
        finally:
            self.active.pop(run_id, None)
            self.capacity.ended(run_id)
            self.waiters.wake(run_id)
            self._stir.set()
            self._room_freed()

    def _room_freed(self) -> None:
        if self._wants_room:
            self._wake.set()

    def _hold(self, run_id: str, token: int, delay: float) -> None:
        """Keep the run's lease for ``delay`` seconds, then release it to be claimed again.

        A timer, not a task, while it waits; the heartbeat keeps renewing the lease meanwhile.
        """
        loop = asyncio.get_running_loop()
        self._held[run_id] = loop.call_later(delay, self._unhold, run_id, token)

    def _unhold(self, run_id: str, token: int) -> None:
        self._held.pop(run_id, None)
        self.chore(self._release_and_claim(run_id, token))

    async def _release_and_claim(self, run_id: str, token: int) -> None:
        await self._release_lease(run_id, token)
        self._wake.set()

    async def _spawn_after(self, driver: RunDriver, record: RunRecord) -> None:
        """Execute a fresh claim of a run whose previous driver here is still finishing."""
        if driver.task is not None:
            await asyncio.gather(asyncio.shield(driver.task), return_exceptions=True)
        if record.id in self.active or self.closing:
            await self._release_lease(record.id, record.token)
        else:
            self._spawn(record)

    async def _release(self, driver: RunDriver) -> None:
        await self._release_lease(driver.run_id, driver.token)

    async def _release_lease(self, run_id: str, token: int) -> None:
        await release_lease(
            self.persistence, run_id, token, lambda: self.closing or not self.running
        )

    async def _dispatch(self) -> None:
        while not self.closing:
            self._rounds_begun += 1
            number = self._rounds_begun
            try:
                claimed = await self._claim_some()
                timeout = self.poll_interval
                # Without room, a due timer is no work for this engine: wait for room instead.
                self._wants_room = not self.has_room()
                if not self._wants_room:
                    ids, upgrades = self.registry.claimable()
                    due = await self.persistence.next_wake(ids, upgrades=upgrades)
                    if due is not None:
                        timeout = min(timeout, (due - self.clock.now()).total_seconds())
                    if timeout <= 0 and not claimed:
                        # Due, yet not claimable (another engine holds it): never spin on it.
                        timeout = self.poll_interval
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
        while not self.closing:
            room = self.capacity.room(self._starting)
            ids, upgrades = self.registry.claimable()
            if room <= 0 or not (ids or upgrades):
                return claimed
            limit = min(room, 200)
            lease = self.new_lease()
            self._starting += limit  # hold the room while claiming, as create() does
            try:
                records = await self.persistence.claim_runs(
                    lease.owner, ids, self.clock.now(), lease.until, limit, upgrades=upgrades
                )
            finally:
                self._starting -= limit
            claimed += len(records)
            self.metrics.claimed(len(records))
            for record in records:
                if record.id not in self.active:
                    self._spawn(record)
                else:  # its driver here is still finishing: go on once it has
                    self.chore(self._spawn_after(self.active[record.id], record))
            if len(records) < limit:
                return claimed
        return claimed

    async def _heartbeat(self) -> None:
        interval = max(self.lease.total_seconds() / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                lease = self.new_lease()
                controls = await self.persistence.renew_leases(lease.owner, lease.until)
                self.metrics.renewed(len(controls))
                for run_id, control in controls.items():
                    driver = self.active.get(run_id)
                    if driver is not None and control is not None:
                        driver.request(Control(control))
                await self._reap_dead_owners()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("heartbeat failed; retrying")

    async def _reap_dead_owners(self) -> None:
        """Release the leases of engines of this host whose process is gone (:mod:`.owners`)."""
        if await reap_dead_owners(self.persistence, self.owner):
            self._wake.set()
