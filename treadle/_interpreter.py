"""The interpreter: walks a workflow's step tree for one run, checkpointing as it goes.

Where a run is lives in its *cursor*, a JSON document written with every checkpoint:

- ``n``: node entries keyed by path. A path is the chain of step names from the root, with
  ``#i`` after a loop for its iteration (``ship-items#2/ship``). A sequence's position is kept
  under its prefix followed by ``@`` (``@`` for the root) as ``{"i": next index, "n": last
  name}``. When a composite step completes, every entry below it is dropped, so the cursor stays
  as small as the deepest position, however long the run.
- ``c``: the compensation stack: ``[path, step name, index, item]`` of every completed step that
  has a ``compensate`` function, in completion order.
- ``f``: set once the run has failed or been cancelled and is compensating.

Recovery is a fresh walk from the root: completed parts are skipped by their entries, recorded
branch and loop decisions are reused, and the first step not completed runs (again).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._calls import call_condition, call_step
from ._control import (
    CancelRequested,
    PauseRequested,
    Scope,
    ShutdownRequested,
    StepFailure,
    Suspend,
    encode_data,
)
from ._errors import (
    DataError,
    DefinitionMismatch,
    StepTimeout,
)
from ._logging import current_run, current_step
from ._nodes import (
    ActionStep,
    ApprovalStep,
    CustomStep,
    IfStep,
    LoopStep,
    Node,
    ParallelStep,
    SignalStep,
    SleepStep,
    Workflow,
)
from ._recovery import check_definition
from ._state import Context, State, Status
from ._tracing import step_span
from ._waits import run_approval, run_signal, run_sleep, run_subworkflow
from .persistence._records import Checkpoint, CheckpointAck, NewEvent, RunRecord

if TYPE_CHECKING:
    from ._engine import Engine

log = logging.getLogger("treadle")

_MISSING = object()


class RunDriver:
    """Executes one run while this engine holds its lease."""

    def __init__(self, engine: Engine, record: RunRecord, workflow: Workflow) -> None:
        self.engine = engine
        self.record = record
        self.workflow = workflow
        self.run_id = record.id
        self.token = record.token
        self.control: str | None = record.control
        self.data_json = record.data
        self.data: dict[str, Any] = json.loads(record.data)
        cursor = json.loads(record.cursor)
        self.nodes: dict[str, Any] = cursor["n"]
        self.comp: list[list[Any]] = cursor["c"]
        self.failure: dict[str, Any] | None = cursor.get("f")
        self.events: list[NewEvent] = []
        self.consumed: list[int] = []
        self.dirty = False
        #: Whether everything since the last checkpoint can be derived again from what is stored
        #: (a consumed inbox message): then the next step need not wait for a checkpoint.
        self.replayable = False
        #: The OpenTelemetry tracer of this stretch of execution (None: not tracing).
        self.tracer: Any = None
        self.task: asyncio.Task[None] | None = None
        self.status = record.status
        self.error: str | None = record.error
        self.by_name = {node.name: node for node in workflow.nodes()}

    # Checkpoints ---------------------------------------------------------------------------

    def note(self, kind: str, step: str | None = None, **detail: Any) -> None:
        """Record a history event with the next checkpoint."""
        self.events.append(NewEvent(kind, step, detail, self.engine.clock.now()))
        self.touch()

    def touch(self) -> None:
        """Mark progress that must be checkpointed before the next step's side effects."""
        self.dirty = True
        self.replayable = False

    def _cursor_json(self) -> str:
        return json.dumps({"n": self.nodes, "c": self.comp, "f": self.failure})

    async def checkpoint(
        self,
        status: Status = Status.RUNNING,
        *,
        error: str | None = None,
        waiting_for: list[str] | None = None,
        wake_at: datetime | None = None,
    ) -> CheckpointAck:
        """Write everything since the last checkpoint, atomically."""
        events, self.events = self.events, []
        consumed, self.consumed = self.consumed, []
        self.dirty = self.replayable = False
        checkpoint = Checkpoint(
            run_id=self.run_id,
            token=self.token,
            status=status,
            data=self.data_json,
            cursor=self._cursor_json(),
            now=self.engine.clock.now(),
            error=error,
            waiting_for=waiting_for or [],
            wake_at=wake_at,
            events=events,
            consumed=consumed,
            parent_id=self.record.parent_id,
        )
        ack = await self.engine.persistence.save_checkpoint(checkpoint)
        self.error = error
        if ack.control and self.control != "cancel":
            self.control = ack.control
        self.status = status
        return ack

    async def flush(self) -> None:
        """Make what happened so far durable before user code has side effects.

        Progress that a recovery derives again the same way (see ``replayable``) is left for
        the step's own checkpoint: a crash in between runs the step again, as it would anyway.
        """
        if (self.dirty and not self.replayable) or self.status is not Status.RUNNING:
            await self.checkpoint()

    def set_data(self, key: str, value: Any) -> None:
        """Store a value in the run's data (a wait's result)."""
        self.data[key] = value
        self.data_json = encode_data(self.data, f"step {key!r}")
        self.touch()

    def _merge(self, private: dict[str, Any], private_json: str, base_json: str) -> None:
        if self.data_json is base_json:
            self.data, self.data_json = private, private_json
            return
        # Another parallel branch changed the data meanwhile: apply this step's own changes.
        base = json.loads(base_json)
        for key in base.keys() | private.keys():
            new = private.get(key, _MISSING)
            if base.get(key, _MISSING) != new:
                if new is _MISSING:
                    self.data.pop(key, None)
                else:
                    self.data[key] = new
        self.data_json = encode_data(self.data, "parallel merge")

    def snapshot(self) -> State:
        """The run as this driver last wrote it (a detached copy)."""
        return State(
            id=self.run_id,
            workflow=self.workflow.name,
            status=self.status,
            data=json.loads(self.data_json),
            created_at=self.record.created_at,
            updated_at=self.engine.clock.now(),
            error=self.error,
            parent_id=self.record.parent_id,
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
        )

    def _drop(self, path: str) -> None:
        below = (path + "/", path + "#")
        for key in [k for k in self.nodes if k == path or k.startswith(below)]:
            del self.nodes[key]
        self.dirty = True

    def check_control(self) -> None:
        """Stop before the next step if a pause or cancel was requested."""
        if self.control == "cancel":
            raise CancelRequested()
        if self.control == "pause":
            raise PauseRequested()
        if self.control == "shutdown":
            raise ShutdownRequested()

    # The walk ------------------------------------------------------------------------------

    async def run_seq(self, steps: tuple[Node, ...], scope: Scope) -> None:
        """Run a sequence from its recorded position."""
        key = scope.prefix + "@"
        position = self.nodes.get(key)
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
        path = scope.prefix + node.name
        if isinstance(node, ActionStep | CustomStep):
            await self._action(node, path, scope)
        elif isinstance(node, Workflow):
            await self.run_seq(node.steps, scope.inside(path))
        elif isinstance(node, IfStep):
            await self._if(node, path, scope)
        elif isinstance(node, LoopStep):
            await self._loop(node, path, scope)
        elif isinstance(node, ParallelStep):
            await self._parallel(node, path, scope)
        elif isinstance(node, SignalStep):
            await run_signal(self, node, path)
        elif isinstance(node, ApprovalStep):
            await run_approval(self, node, path)
        elif isinstance(node, SleepStep):
            run_sleep(self, node, path)
        else:
            await run_subworkflow(self, node, path)
        self._drop(path)

    async def _action(self, node: ActionStep | CustomStep, path: str, scope: Scope) -> None:
        engine = self.engine
        entry = self.nodes.get(path)
        attempt = 1 + (entry["a"] if entry else 0)
        if entry and "r" in entry:
            retry_at = datetime.fromtimestamp(entry["r"], engine.clock.now().tzinfo)
            if engine.clock.now() < retry_at:
                raise Suspend([f"retry:{node.name}"], retry_at)
        await self.flush()
        ctx = Context(
            run_id=self.run_id,
            workflow=self.workflow.name,
            step=node.name,
            attempt=attempt,
            item=scope.item,
            index=scope.index,
            iteration=scope.iteration,
            idempotency_key=f"{self.run_id}/{path}",
        )
        base_json = self.data_json
        state = self.view()
        state.data = json.loads(base_json)
        started = time.perf_counter()
        step_token = current_step.set(node.name)
        try:
            with step_span(self.tracer, self.run_id, self.workflow.name, node.name, attempt):
                if isinstance(node, CustomStep):
                    await node.target.execute(ctx, state)
                else:
                    result = await call_step(
                        node.action, ctx, state, node.timeout_seconds, engine.threads
                    )
                    if result is not None:
                        state.data[node.name] = result
            new_json = encode_data(state.data, f"step {node.name!r}")
        except TimeoutError as exc:
            timeout = node.timeout_seconds if isinstance(node, ActionStep) else None
            error: Exception = StepTimeout(node.name, timeout) if timeout else exc
            self._failed(node, path, attempt, error)
        except Exception as exc:
            self._failed(node, path, attempt, exc)
        finally:
            current_step.reset(step_token)
        took = round((time.perf_counter() - started) * 1000, 3)
        self._merge(state.data, new_json, base_json)
        if isinstance(node, ActionStep) and node.compensate is not None:
            self.comp.append([path, node.name, scope.index, scope.item])
        self.note("step_completed", node.name, attempt=attempt, ms=took)
        engine.metrics.step_done(self.workflow.name, node.name, took / 1000)

    def _failed(
        self, node: ActionStep | CustomStep, path: str, attempt: int, error: Exception
    ) -> None:
        policy = node.retry if isinstance(node, ActionStep) else None
        text = f"{type(error).__name__}: {error}"
        if policy is not None and policy.should_retry(error, attempt):
            wait = policy.wait_before(attempt, f"{self.run_id}/{path}")
            retry_at = self.engine.clock.now() + wait
            self.nodes[path] = {"k": node.kind, "a": attempt, "r": retry_at.timestamp()}
            self.note(
                "step_failed",
                node.name,
                attempt=attempt,
                error=text,
                retry_in=round(wait.total_seconds(), 3),
            )
            self.engine.metrics.retried(self.workflow.name, node.name)
            raise Suspend([f"retry:{node.name}"], retry_at)
        self.note("step_failed", node.name, attempt=attempt, error=text, final=True)
        raise StepFailure(node.name, error) from error

    async def _cond(self, node: Node, cond: Callable[[State], Any]) -> bool:
        try:
            return await call_condition(cond, self.view())
        except Exception as exc:
            self.note("step_failed", node.name, error=f"condition raised {exc!r}", final=True)
            raise StepFailure(node.name, exc) from exc

    async def _if(self, node: IfStep, path: str, scope: Scope) -> None:
        entry = self.nodes.get(path)
        if entry is None:
            chosen = -1
            for index, branch in enumerate(node.branches):
                if branch.cond is None or await self._cond(node, branch.cond):
                    chosen = index
                    break
            self.nodes[path] = {"k": "if", "b": chosen}
            is_else = chosen >= 0 and node.branches[chosen].cond is None
            self.note("branch_taken", node.name, branch=chosen, otherwise=is_else)
        else:
            chosen = entry["b"]
        if chosen >= 0:
            await self.run_seq(node.branches[chosen].steps, scope.inside(path))

    async def _loop(self, node: LoopStep, path: str, scope: Scope) -> None:
        entry = self.nodes.get(path)
        if entry is None:
            items = None
            if node.for_each is not None:
                items = self.data.get(node.for_each)
                if not isinstance(items, list):
                    error = DataError(
                        f"loop {node.name!r}: data[{node.for_each!r}] must be a list, "
                        f"not {type(items).__name__}"
                    )
                    self.note("step_failed", node.name, error=str(error), final=True)
                    raise StepFailure(node.name, error)
            entry = {"k": "loop", "i": 0, "items": items, "in": False}
            self.nodes[path] = entry
            self.touch()
        items = entry["items"]
        while True:
            i = entry["i"]
            if not entry["in"]:
                reason = None
                if items is not None and i >= len(items):
                    reason = "items done"
                elif node.max_iterations is not None and i >= node.max_iterations:
                    reason = "max_iterations"
                elif node.while_ is not None and not await self._cond(node, node.while_):
                    reason = "while_ false"
                if reason is not None:
                    self.note("loop_ended", node.name, iterations=i, reason=reason)
                    return
                entry["in"] = True
                self.touch()
            if items is not None:
                inner = Scope(f"{path}#{i}/", items[i], i, i)
            else:
                inner = Scope(f"{path}#{i}/", scope.item, scope.index, i)
            await self.run_seq(node.body, inner)
            self._drop(f"{path}#{i}")
            stop = node.break_when is not None and await self._cond(node, node.break_when)
            entry = {"k": "loop", "i": i + 1, "items": items, "in": False}
            self.nodes[path] = entry
            self.note("loop_iteration", node.name, iteration=i)
            if stop:
                self.note("loop_ended", node.name, iterations=i + 1, reason="break_when")
                return

    async def _parallel(self, node: ParallelStep, path: str, scope: Scope) -> None:
        entry = self.nodes.get(path)
        if entry is None:
            entry = {"k": "parallel", "done": [], "failed": []}
            self.nodes[path] = entry
        needed, total = node.needed, len(node.branches)
        if len(entry["done"]) >= needed:
            return
        inner = scope.inside(path)
        settled = set(entry["done"]) | set(entry["failed"])
        tasks: dict[asyncio.Task[None], Node] = {}
        for branch in node.branches:
            if branch.name not in settled:
                tasks[asyncio.create_task(self._branch(branch, inner, tasks))] = branch
        held: list[BaseException] = []
        failure: StepFailure | None = None
        try:
            while tasks and len(entry["done"]) < needed:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    branch = tasks.pop(task)
                    exc = task.exception()
                    if exc is None:
                        entry["done"].append(branch.name)
                        self.touch()
                    elif isinstance(exc, StepFailure):
                        entry["failed"].append(branch.name)
                        self.touch()
                        failure = failure or exc
                        if total - len(entry["failed"]) < needed:
                            raise exc
                    elif isinstance(exc, Suspend | PauseRequested | ShutdownRequested):
                        held.append(exc)
                    else:
                        raise exc
                if tasks and self.dirty and len(entry["done"]) < needed:
                    # A branch ended while others still run: make its completed steps durable
                    # now, or a crash before the parallel ends would run them again.
                    await self.flush()
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        if len(entry["done"]) >= needed:
            self.note("parallel_completed", node.name, done=list(entry["done"]))
            return
        pauses = [h for h in held if isinstance(h, PauseRequested | ShutdownRequested)]
        if pauses:
            raise pauses[0]
        suspensions = [h for h in held if isinstance(h, Suspend)]
        if suspensions:
            raise Suspend.merge(suspensions)
        raise failure or StepFailure(node.name, RuntimeError("no branch could complete"))

    async def _branch(
        self, branch: Node, scope: Scope, tasks: dict[asyncio.Task[None], Node]
    ) -> None:
        me = asyncio.current_task()
        while True:
            try:
                await self.run_node(branch, scope)
                return
            except Suspend as suspension:
                others = any(not t.done() for t in tasks if t is not me)
                if not (suspension.timer_only and others) or suspension.wake_at is None:
                    raise
                # Siblings are still working: wait for this short timer in memory.
                await self.engine.clock.sleep_until(suspension.wake_at)

    # Whole runs ----------------------------------------------------------------------------

    async def drive(self) -> Status:
        """Run until the run completes, fails, is cancelled, pauses or waits."""
        current_run.set(self.run_id)
        try:
            check_definition(self)
        except DefinitionMismatch as exc:
            self.note("run_failed", error=str(exc))
            await self.checkpoint(Status.FAILED, error=str(exc))
            return Status.FAILED
        while True:
            try:
                if self.failure is not None:
                    return await self._unwind()
                self.check_control()
                await self.run_seq(self.workflow.steps, Scope())
            except Suspend as suspension:
                waits = sorted(set(suspension.waits))
                self.note("waiting", None, waits=waits, until=iso(suspension.wake_at))
                ack = await self.checkpoint(
                    Status.WAITING, waiting_for=waits, wake_at=suspension.wake_at
                )
                if ack.suspended:
                    return Status.WAITING
                continue
            except ShutdownRequested:
                await self.flush()
                return Status.RUNNING
            except PauseRequested:
                self.note("paused")
                await self.checkpoint(Status.PAUSED)
                return Status.PAUSED
            except CancelRequested:
                self.failure = {"status": "cancelled", "error": "cancelled"}
                continue
            except StepFailure as failure:
                self.failure = {"status": "failed", "error": str(failure)}
                continue
            except asyncio.CancelledError:
                if self.control != "cancel":
                    raise
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                self.failure = {"status": "cancelled", "error": "cancelled"}
                continue
            self.note("run_completed")
            await self.checkpoint(Status.COMPLETED)
            return Status.COMPLETED

    async def _unwind(self) -> Status:
        """Compensate completed steps in reverse order, then end FAILED or CANCELLED."""
        assert self.failure is not None
        status = Status(self.failure["status"])
        if status is Status.CANCELLED:
            await self.engine.cancel_children(self.run_id)
        if self.comp:
            self.note("compensating", steps=[c[1] for c in reversed(self.comp)])
            await self.flush()
        problems: list[str] = self.failure.setdefault("problems", [])
        while self.comp:
            path, name, index, item = self.comp[-1]
            node = self.by_name[name]
            assert isinstance(node, ActionStep) and node.compensate is not None
            error = await self._compensate(node, path, index, item)
            self.comp.pop()
            if error is None:
                self.note("compensated", name)
            else:
                problems.append(f"compensation of {name!r} failed: {error}")
                self.note("compensation_failed", name, error=error)
            await self.checkpoint()
        message = self.failure["error"]
        if problems:
            message += "; " + "; ".join(problems)
        self.note("run_cancelled" if status is Status.CANCELLED else "run_failed", error=message)
        await self.checkpoint(status, error=message)
        return status

    async def _compensate(self, node: ActionStep, path: str, index: Any, item: Any) -> str | None:
        assert node.compensate is not None
        policy = node.retry
        attempt = 1
        while True:
            ctx = Context(
                run_id=self.run_id,
                workflow=self.workflow.name,
                step=node.name,
                attempt=attempt,
                item=item,
                index=index,
                iteration=index,
                idempotency_key=f"{self.run_id}/{path}/compensate",
            )
            state = self.view()
            state.data = json.loads(self.data_json)
            try:
                await call_step(
                    node.compensate, ctx, state, node.timeout_seconds, self.engine.threads
                )
                new_json = encode_data(state.data, f"compensation of {node.name!r}")
                self._merge(state.data, new_json, self.data_json)
                return None
            except Exception as exc:
                text = f"{type(exc).__name__}: {exc}"
                if policy is None or not policy.should_retry(exc, attempt):
                    return text
                self.note("compensation_retry", node.name, attempt=attempt, error=text)
                await asyncio.sleep(policy.wait_before(attempt, path).total_seconds())
                attempt += 1


def iso(when: datetime | None) -> str | None:
    """ISO text of a time, or None."""
    return None if when is None else when.isoformat()

