"""The interpreter: walks a workflow's step tree for one run, checkpointing as it goes.

Where a run is lives in its cursor (see :mod:`.cursor`). Recovery is a fresh walk from the root:
completed parts are skipped by their entries, recorded branch and loop decisions are reused, and
the first step not completed runs (again).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime
from typing import Any, NoReturn

from .._calls import call_step, is_async_callable
from .._errors import DataError, StepTimeout
from .._logging import current_run, current_step
from .._nodes import (
    ActionStep,
    ApprovalStep,
    CustomStep,
    IfStep,
    LoopStep,
    MapStep,
    Node,
    ParallelStep,
    SignalStep,
    SleepStep,
    Workflow,
)
from .._state import (
    Context,
    EventKind,
    State,
    Status,
    WaitKind,
    wait_key,
)
from .._text import storable
from .._tracing import step_span
from ..persistence._records import Checkpoint, CheckpointAck, NewEvent, RunRecord, SlotClaim
from . import cursor, deadlines, limits, mapping, params, rates, results
from .composites import run_if, run_loop, run_parallel
from .control import (
    STOPS,
    CancelRequested,
    CheckpointRefused,
    Control,
    Held,
    PauseRequested,
    Scope,
    ShutdownRequested,
    StepFailure,
    Suspend,
)
from .data import RunData
from .host import RunHost
from .mapped import as_result, run_map
from .refusals import refuse
from .saga import unwind
from .slots import store
from .waits import due_time, run_approval, run_signal, run_sleep, run_subworkflow

log = logging.getLogger("treadle")


class RunDriver(RunData):
    """Executes one run while its host holds the run's lease."""

    def __init__(self, host: RunHost, record: RunRecord, workflow: Workflow) -> None:
        self.host = host
        self.record = record
        self.workflow = workflow
        self.run_id = record.id
        self.token = record.token
        #: What the run was asked to do from outside (see :meth:`request`).
        self.control: Control | None = None if record.control is None else Control(record.control)
        #: How many checkpoints the persistence refused (see :func:`.refusals.refuse`).
        self.refusals = 0
        #: Why the stored cursor cannot be read (then drive() raises it).
        self.unreadable: cursor.CursorVersionError | None = None
        try:
            stored = cursor.load(record.cursor)
        except cursor.CursorVersionError as exc:
            self.unreadable, stored = exc, cursor.load(cursor.NEW)
        self.nodes: cursor.Nodes = stored["n"]
        #: The compensation stack (see :mod:`.cursor`).
        self.comp: list[cursor.CompensationEntry] = stored["c"]
        self.failure: cursor.Failure | None = stored.get("f")
        #: What holds the run, while it is HELD or has just been woken from it.
        self.hold: cursor.Hold | None = stored.get("h")
        #: The run's concurrency key, once computed (see :mod:`.limits`).
        self.slot_key: str | None = stored.get("s")
        #: The held step to mark done instead of running it (an operator's skip), and its data.
        self.skip: tuple[str, dict[str, Any]] | None = None
        #: Set when the run moves onto ``workflow`` (auto_upgrade): written with the next
        #: checkpoint.
        self.moved = False
        #: The definition the run is stored as following (and its label).
        self.definition_id, self.version = record.definition_id, record.version
        #: The run's labels, and whether a step changed them since the last checkpoint.
        self.labels, self.relabelled = dict(record.labels), False
        self.events: list[NewEvent] = []
        self.consumed: list[int] = []
        self.dirty = False
        #: Whether everything since the last checkpoint can be derived again from what is stored
        #: (a consumed inbox message): then the next step need not wait for a checkpoint.
        self.replayable = False
        #: The OpenTelemetry tracer of this stretch of execution (None: not tracing).
        self.tracer: Any = None
        self.trace = record.trace  # the stored context its run spans continue
        self.task: asyncio.Task[None] | None = None
        self.status = record.status
        self.error: str | None = record.error
        self.by_name = {node.name: node for node in workflow.nodes()}
        self.init_data(record.data)

    # Checkpoints ---------------------------------------------------------------------------

    def note(self, kind: EventKind, step: str | None = None, **detail: Any) -> None:
        """Record a history event with the next checkpoint."""
        self.events.append(NewEvent(kind, step, detail, self.host.clock.now()))
        self.touch()

    def touch(self) -> None:
        """Mark progress that must be checkpointed before the next step's side effects."""
        self.dirty = True
        self.replayable = False

    async def checkpoint(
        self,
        status: Status = Status.RUNNING,
        *,
        error: str | None = None,
        waiting_for: list[str] | None = None,
        wake_at: datetime | None = None,
        result: str | None = None,
        slot: SlotClaim | None = None,
    ) -> CheckpointAck:
        """Write everything since the last checkpoint, atomically (``slot``: see
        :mod:`.limits`)."""
        events, self.events = self.events, []
        consumed, self.consumed = self.consumed, []
        self.dirty = self.replayable = False
        data, values, reset = self.stored_data()
        taken = self.texts  # (replaced, never changed in place: what this checkpoint writes)
        checkpoint = Checkpoint(
            run_id=self.run_id,
            token=self.token,
            status=status,
            data=data,
            cursor=cursor.dump(self.nodes, self.comp, self.failure, self.hold, self.slot_key),
            now=self.host.clock.now(),
            error=error,
            waiting_for=waiting_for or [],
            wake_at=wake_at,
            events=events,
            consumed=consumed,
            parent_id=self.record.parent_id,
            result=result,
            labels=dict(self.labels) if self.relabelled else None,
            values=values,
            values_reset=reset,
            slot=slot,
            release_slot=self.slot_key is not None and status.finished,
        )
        self.relabelled = False
        if self.moved:
            checkpoint.definition_id, checkpoint.version = self.workflow.id, self.workflow.version
        try:
            ack = await self.host.persistence.save_checkpoint(checkpoint)
        except DataError as exc:
            raise CheckpointRefused(exc) from exc
        if self.moved:
            self.definition_id, self.version = self.workflow.id, self.workflow.version
        self.moved = False
        self.stored(taken)
        self.error = error
        if ack.control:
            self.request(Control(ack.control))
        self.status = status
        return ack

    def request(self, control: Control) -> None:
        """Ask the run to cancel, pause or stop (the strongest request holds, see
        :class:`Control`). A cancel asked from outside the run also stops the step under way."""
        if not control.beats(self.control):
            return
        self.control = control
        task = self.task
        if (
            control is Control.CANCEL
            and task is not None
            and self.failure is None
            and task is not asyncio.current_task()
        ):
            task.cancel()

    def withdraw(self, control: Control) -> None:
        """Take back a request not yet acted on (a resume withdraws a pause)."""
        if self.control is control:
            self.control = None

    async def flush(self) -> None:
        """Make what happened so far durable before user code has side effects.

        Progress that a recovery derives again the same way (see ``replayable``) is left for
        the step's own checkpoint: a crash in between runs the step again, as it would anyway.
        """
        if (self.dirty and not self.replayable) or self.status is not Status.RUNNING:
            await self.checkpoint()

    def snapshot(self) -> State:
        """The run as this driver last wrote it (a detached copy)."""
        return State(
            id=self.run_id,
            workflow=self.workflow.name,
            status=self.status,
            data=json.loads(self.data_json),
            created_at=self.record.created_at,
            updated_at=self.host.clock.now(),
            error=self.error,
            parent_id=self.record.parent_id,
            definition_id=self.definition_id,
            version=self.version,
            forked_from=self.record.forked_from,
            labels=dict(self.labels),
        )

    def view(self) -> State:
        """The run as conditions see it."""
        return State(
            id=self.run_id,
            workflow=self.workflow.name,
            status=Status.RUNNING,
            data=self.data,
            created_at=self.record.created_at,
            updated_at=self.record.updated_at,
            parent_id=self.record.parent_id,
            definition_id=self.definition_id,
            version=self.version,
            forked_from=self.record.forked_from,
            labels=dict(self.labels),
        )

    def drop(self, path: str) -> None:
        """Forget the entries of the node at ``path`` and of everything below it."""
        below = cursor.below(path)
        for key in [k for k in self.nodes if k == path or k.startswith(below)]:
            del self.nodes[key]
        self.dirty = True

    def check_control(self) -> None:
        """Stop before the next step if a pause, cancel or shutdown was requested."""
        if self.control is not None:
            raise STOPS[self.control]()

    # The walk ------------------------------------------------------------------------------

    async def run_seq(self, steps: tuple[Node, ...], scope: Scope) -> None:
        """Run a sequence from its recorded position."""
        key = cursor.position_key(scope.prefix)
        position = cursor.position_at(self.nodes, key)
        start = position["i"] if position else 0
        for index in range(start, len(steps)):
            node = steps[index]
            await self.run_node(node, scope)
            self.nodes[key] = {"i": index + 1, "n": node.name}
            self.dirty = True

    async def run_node(self, node: Node, scope: Scope) -> None:
        """Run one node to completion (or suspension), then drop its entries."""
        if self.control is not None:
            self.check_control()
        path = cursor.join(scope.prefix, node.name)
        if isinstance(node, ActionStep | CustomStep):
            await self._action(node, path, scope)
        elif isinstance(node, Workflow):
            await self.run_seq(node.steps, scope.inside(path))
        elif isinstance(node, IfStep):
            await run_if(self, node, path, scope)
        elif isinstance(node, LoopStep):
            await run_loop(self, node, path, scope)
        elif isinstance(node, ParallelStep):
            await run_parallel(self, node, path, scope)
        elif isinstance(node, MapStep):
            await run_map(self, node, path, scope)
        elif isinstance(node, SignalStep):
            await run_signal(self, node, path)
        elif isinstance(node, ApprovalStep):
            await run_approval(self, node, path)
        elif isinstance(node, SleepStep):
            await run_sleep(self, node, path)
        else:
            await run_subworkflow(self, node, path, scope)
        self.drop(path)

    async def _action(self, node: ActionStep | CustomStep, path: str, scope: Scope) -> None:
        host = self.host
        if self.skip is not None and self.skip[0] == path:
            for key, value in self.skip[1].items():
                self.set_data(key, value, f"skip of step {node.name!r}")
            self.skip = None
            self.note(EventKind.STEP_COMPLETED, node.name, skipped=True)
            return
        if isinstance(node, ActionStep):
            await params.attempts(self, node, path)
        entry = cursor.action_at(self.nodes, path)
        attempt = 1 + (entry["a"] if entry else 0)
        if entry and "r" in entry:
            retry_at = due_time(self, entry["r"])
            if retry_at is not None and host.clock.now() < retry_at:
                raise Suspend([wait_key(WaitKind.RETRY, node.name)], retry_at)
        await self.flush()
        plain = isinstance(node, ActionStep) and not is_async_callable(node.action)
        if not await host.capacity.admit(self.run_id, plain, asyncio.current_task() is self.task):
            raise ShutdownRequested  # no step thread free for long: hand the run back here
        if isinstance(node, ActionStep) and node.rate_limit is not None:
            await rates.take(self, node, path)  # after the thread: a run handed back reserves none
        state = self.view()
        ctx = Context(
            run_id=self.run_id,
            workflow=self.workflow.name,
            step=node.name,
            attempt=attempt,
            item=scope.item,
            index=scope.index,
            iteration=scope.iteration,
            idempotency_key=f"{self.run_id}/{path}",
            params=params.recorded(self, path) if entry else {},
            input_model=self.workflow.input,
            _state=state,
            _labels={},
        )
        state.data, base, since = self.copy()
        started = time.perf_counter()
        step_token = current_step.set(node.name)
        result: Any = None
        try:
            with step_span(self.tracer, self.run_id, self.workflow.name, node.name, attempt):
                if isinstance(node, CustomStep):
                    await node.target.execute(ctx, state)
                else:
                    result = await call_step(
                        node.action, ctx, state, node.timeout_seconds, host.threads
                    )
                    if result is not None and scope.collect is None:
                        state.data[node.name] = result
                    elif result is not None:  # a map's result, stored with the step
                        result = as_result(node.name, result)
            sealed = self.seal(state.data, base, f"step {node.name!r}")
        except TimeoutError as exc:
            timeout = node.timeout_seconds if isinstance(node, ActionStep) else None
            error: Exception = StepTimeout(node.name, timeout) if timeout else exc
            self._failed(node, path, attempt, error)
        except Exception as exc:
            self._failed(node, path, attempt, exc)
        finally:
            self.release(since)
            current_step.reset(step_token)
        took = round((time.perf_counter() - started) * 1000, 3)
        self.merge(node.name, sealed, base, since)
        if ctx._labels:
            self.labels.update(ctx._labels)
            self.relabelled = True
        if result is not None and scope.collect is not None:
            store(self, scope, node.name, result)
        if isinstance(node, ActionStep) and node.compensate is not None:
            self.comp.append([path, node.name, scope.index, scope.item])
        self.note(EventKind.STEP_COMPLETED, node.name, attempt=attempt, ms=took)
        host.metrics.step_done(self.workflow.name, node.name, took / 1000)

    def _failed(
        self, node: ActionStep | CustomStep, path: str, attempt: int, error: Exception
    ) -> NoReturn:
        policy = node.retry if isinstance(node, ActionStep) else None
        text = f"{type(error).__name__}: {error}"
        computed = params.recorded(self, path)
        if policy is not None and policy.should_retry(error, attempt, computed.get("attempts")):
            wait = policy.wait_before(attempt, f"{self.run_id}/{path}")
            retry_at = self.host.clock.now() + wait
            retrying: cursor.ActionEntry = {"k": node.kind, "a": attempt, "r": retry_at.timestamp()}
            if computed:
                retrying["p"] = computed
            self.nodes[path] = retrying
            self.note(
                EventKind.STEP_FAILED,
                node.name,
                attempt=attempt,
                error=text,
                retry_in=round(wait.total_seconds(), 3),
            )
            self.host.metrics.retried(self.workflow.name, node.name)
            raise Suspend([wait_key(WaitKind.RETRY, node.name)], retry_at)
        self.note(EventKind.STEP_FAILED, node.name, attempt=attempt, error=text, final=True)
        on_failure = getattr(node, "on_failure", None) or self.workflow.on_failure
        if on_failure == "hold":
            self.nodes.pop(path, None)  # a retry starts with fresh attempts
            raise Held(node.name, path, error) from error
        raise StepFailure(node.name, error) from error

    # Whole runs ----------------------------------------------------------------------------

    async def drive(self) -> Status:
        """Run until the run completes, fails, is cancelled, pauses or waits."""
        current_run.set(self.run_id)
        if self.unreadable is not None:
            raise self.unreadable
        async with deadlines.enforced(self, self.request):
            return await self._drive()

    async def _drive(self) -> Status:
        if self.hold is not None:
            await self._decision()
        if self.control is Control.CANCEL:
            self.hold = None  # a held run that is cancelled compensates
        elif self.hold is not None:  # woken with no decision: still held
            return await self._held(self.hold["step"], self.hold["path"], self.error or "held")
        elif (
            self.failure is None
            and self.record.definition_id != self.workflow.id
            and not self._adopt()
        ):
            return await self._held(None, None, self.error or "")
        while True:
            try:
                return await self._walk()
            except CheckpointRefused as refused:
                refuse(self, refused)

    async def _decision(self) -> None:
        """Take the operator's decision that woke this held run (retry, skip or abort)."""
        assert self.hold is not None
        name = self.hold["step"] or "definition"
        messages = await self.host.persistence.read_inbox(self.run_id, WaitKind.HELD, name)
        if not messages:
            return  # woken otherwise (a cancel): the hold stays until the walk says
        decision = messages[0].payload
        self.consumed.extend(m.seq for m in messages)
        self.touch()
        action = decision.get("action")
        if action == "skip" and self.hold["path"] is not None:
            self.skip = (self.hold["path"], dict(decision.get("data") or {}))
        elif action == "abort":
            self.failure = {
                "status": "failed",
                "error": storable(f"aborted: {decision.get('reason')}"),
            }
        self.hold = None

    def _adopt(self) -> bool:
        """Move the run onto this engine's definition of its workflow (an ``auto_upgrade``, or
        a definition stored under its old fingerprint) if its position maps; else say why."""
        planned = mapping.plan(
            cursor.dump(self.nodes, self.comp, self.failure, self.hold),
            self.workflow.describe(),
            label=f"definition {self.workflow.version or self.workflow.id} of "
            f"{self.workflow.name!r}",
        )
        if not planned.ok:
            self.hold = {"step": None, "path": None}
            self.error = storable(
                f"run {self.run_id!r} cannot go on under definition "
                f"{self.workflow.version or self.workflow.id} of {self.workflow.name!r}: "
                + "; ".join(planned.reasons)
            )
            return False
        assert planned.cursor is not None
        moved = cursor.load(planned.cursor)
        self.nodes, self.comp = moved["n"], moved["c"]
        self.by_name = {node.name: node for node in self.workflow.nodes()}
        self.moved = True
        self.note(
            EventKind.RUN_MIGRATED,
            None,
            source=self.record.definition_id,
            target=self.workflow.id,
            version=self.workflow.version,
            automatic=True,
        )
        return True

    async def _held(self, step: str | None, path: str | None, error: str) -> Status:
        """Stop the run HELD for an operator, with its position, data and compensations kept."""
        self.hold = {"step": step, "path": path}
        self.note(EventKind.RUN_HELD, step, error=error)
        waits = [wait_key(WaitKind.HELD, step or "definition")]
        await self.checkpoint(Status.HELD, error=error, waiting_for=waits)
        return Status.HELD

    async def _walk(self) -> Status:
        while True:
            try:
                if self.failure is not None:
                    return await unwind(self)
                self.check_control()
                if self.workflow.concurrency is not None and (parked := await limits.admit(self)):
                    return parked
                await self.run_seq(self.workflow.steps, Scope())
                result = await results.output(self)
            except Suspend as suspension:
                waits = sorted(set(suspension.waits))
                self.note(EventKind.WAITING, None, waits=waits, until=iso(suspension.wake_at))
                wake_at = deadlines.wake(self, suspension.wake_at)
                ack = await self.checkpoint(Status.WAITING, waiting_for=waits, wake_at=wake_at)
                if ack.suspended:
                    return Status.WAITING
                continue
            except ShutdownRequested:
                await self.flush()
                return Status.RUNNING
            except PauseRequested:
                self.note(EventKind.PAUSED)
                await self.checkpoint(Status.PAUSED)
                return Status.PAUSED
            except CancelRequested:
                self.failure = deadlines.cancelled(self)
                continue
            except StepFailure as failure:
                self.failure = {"status": "failed", "error": storable(str(failure))}
                continue
            except Held as held:
                return await self._held(held.step, held.path, storable(f"{held}; held"))
            except asyncio.CancelledError:
                if self.control is not Control.CANCEL:
                    raise
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                self.failure = deadlines.cancelled(self)
                continue
            self.note(EventKind.RUN_COMPLETED)
            await self.checkpoint(Status.COMPLETED, result=result)
            return Status.COMPLETED


def iso(when: datetime | None) -> str | None:
    """ISO text of a time, or None."""
    return None if when is None else when.isoformat()
