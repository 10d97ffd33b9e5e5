"""The waiting steps: signals, approvals, timers and child runs.

Each either completes from what has arrived (the inbox, the clock, the child's end) or raises
:class:`Suspend` naming what the run waits for, so that the run leaves memory until it comes.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from .._errors import (
    ApprovalRejected,
    DataError,
    SubWorkflowFailed,
    WaitTimeout,
    WorkflowNotFound,
)
from .._ids import child_id
from .._nodes import ApprovalStep, SignalStep, SleepStep, SubWorkflowStep
from .._params import as_timedelta
from .._state import EventKind, Status, WaitKind, wait_key
from . import cursor
from .control import Scope, StepFailure, Suspend
from .params import compute
from .slots import store
from .walk import Walk


def child_run_id(parent_id: str, path: str) -> str:
    """The deterministic id of the child run the sub-workflow step at ``path`` starts."""
    return child_id(parent_id, cursor.last_name(path), path)


async def deadline(driver: Walk, node: SignalStep | ApprovalStep, path: str) -> cursor.WaitEntry:
    """The wait's entry, recording its deadline (``dl``) and its computed parameters (``p``)
    the first time it is reached."""
    entry = cursor.wait_at(driver.nodes, path)
    if entry is None:
        params = await compute(driver, node)
        timeout = node.timeout if isinstance(node.timeout, timedelta) else None
        timeout = as_timedelta(params["timeout"]) if "timeout" in params else timeout
        due = driver.host.clock.now() + timeout if timeout is not None else None
        dl = due.timestamp() if due else None
        entry = {"k": "signal", "dl": dl} if node.kind == "signal" else {"k": "approval", "dl": dl}
        if params:
            entry["p"] = params
        driver.nodes[path] = entry
        driver.touch()
    return entry


def due_time(driver: Walk, timestamp: float | None) -> datetime | None:
    """A stored timestamp as a datetime in the clock's zone (None stays None)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, driver.host.clock.now().tzinfo)


async def inbox(driver: Walk, kind: WaitKind, name: str) -> list[Any]:
    """The run's unconsumed messages for one wait, less those this walk already took."""
    messages = await driver.host.persistence.read_inbox(driver.run_id, kind, name)
    taken = set(driver.consumed)
    return [m for m in messages if m.seq not in taken]


def timed_out(driver: Walk, node: SignalStep | ApprovalStep, due: datetime | None) -> None:
    """Fail the wait with WaitTimeout if its deadline has passed, else suspend for it."""
    if due is not None and driver.host.clock.now() >= due:
        error = WaitTimeout(node.kind, node.name)
        driver.note(EventKind.STEP_FAILED, node.name, error=str(error), final=True)
        raise StepFailure(node.name, error)
    raise Suspend([wait_key(WaitKind(node.kind), node.name)], due)


async def run_signal(driver: Walk, node: SignalStep, path: str) -> None:
    """``await_signal``: take the oldest signal of that name into ``data[name]``."""
    clean = not driver.dirty
    entry = await deadline(driver, node, path)
    messages = await inbox(driver, WaitKind.SIGNAL, node.name)
    if messages:
        driver.consumed.append(messages[0].seq)
        driver.set_data(node.name, messages[0].payload)
        driver.note(EventKind.SIGNAL_CONSUMED, node.name)
        # The inbox keeps the message until the next checkpoint consumes it, so a recovery
        # takes the same one again: nothing here needs a checkpoint of its own.
        driver.replayable = clean
        return
    timed_out(driver, node, due_time(driver, entry["dl"]))


async def run_approval(driver: Walk, node: ApprovalStep, path: str) -> None:
    """``await_approval``: count distinct approvers up to the quorum; a rejection fails."""
    entry = await deadline(driver, node, path)
    assert entry["k"] == "approval"
    quorum = _quorum(driver, node, entry)
    voters = entry.setdefault("by", [])
    for message in await inbox(driver, WaitKind.APPROVAL, node.name):
        driver.consumed.append(message.seq)
        driver.touch()
        decision = message.payload
        by = decision.get("by")
        if not decision.get("approved"):
            reason = decision.get("reason")
            driver.set_data(
                node.name, {"approved": False, "by": [by] if by else [], "reason": reason}
            )
            driver.note(
                EventKind.STEP_FAILED, node.name, error="rejected", by=by, reason=reason, final=True
            )
            raise StepFailure(node.name, ApprovalRejected(node.name, by, reason))
        if by is None or by not in voters:
            voters.append(by)
        if decision.get("comment") is not None:
            entry["comment"] = decision["comment"]
        if len(voters) >= quorum:
            driver.set_data(
                node.name, {"approved": True, "by": voters, "comment": entry.get("comment")}
            )
            return
    timed_out(driver, node, due_time(driver, entry["dl"]))


def _quorum(driver: Walk, node: ApprovalStep, entry: cursor.ApprovalEntry) -> int:
    """The approval's quorum (recorded when computed); one larger than its approvers fails."""
    params = entry.get("p", {})
    quorum = int(params.get("quorum", node.quorum if isinstance(node.quorum, int) else 1))
    approvers = params.get("approvers", node.approvers)
    if isinstance(approvers, list | tuple) and approvers and quorum > len(approvers):
        error = DataError(
            f"step {node.name!r}: quorum {quorum} is more than its {len(approvers)} approvers "
            f"{list(approvers)!r}"
        )
        driver.note(EventKind.STEP_FAILED, node.name, error=str(error), final=True)
        raise StepFailure(node.name, error)
    return quorum


async def run_sleep(driver: Walk, node: SleepStep, path: str) -> None:
    """``sleep``/``sleep_until``: a durable timer; the due time is recorded the first time."""
    entry = cursor.sleep_at(driver.nodes, path)
    if entry is None:
        params = await compute(driver, node)
        if "until" in params:
            due = float(params["until"])
        elif isinstance(node.until, datetime):
            due = node.until.timestamp()
        else:
            wait = as_timedelta(params.get("duration")) or node.duration
            assert isinstance(wait, timedelta)
            due = (driver.host.clock.now() + wait).timestamp()
        entry = {"k": "sleep", "at": due}
        if params:
            entry["p"] = params
        driver.nodes[path] = entry
        driver.touch()
    at = due_time(driver, entry["at"])
    assert at is not None
    if driver.host.clock.now() < at:
        raise Suspend([wait_key(WaitKind.TIMER, node.name)], at)
    driver.note(EventKind.TIMER_FIRED, node.name)


async def run_subworkflow(driver: Walk, node: SubWorkflowStep, path: str, scope: Scope) -> None:
    """``sub_workflow``: start the child once (deterministic id), then wait for its end."""
    host = driver.host
    entry = cursor.child_at(driver.nodes, path)
    if entry is None:
        params = await compute(driver, node, scope.item)
        entry = {"k": "subworkflow", "child": child_run_id(driver.run_id, path)}
        if params:
            entry["p"] = params
            # Recorded before the child starts: a recovery starts it with the same values.
            driver.nodes[path] = entry
            driver.touch()
        await driver.flush()
        await _start_child(driver, node, entry)
        driver.nodes[path] = entry
        driver.note(EventKind.CHILD_STARTED, node.name, child=entry["child"])
    child_id = entry["child"]
    child = await host.persistence.get_run(child_id)
    if child is None and "p" in entry:  # a crash came between recording and starting
        await _start_child(driver, node, entry)
        driver.note(EventKind.CHILD_STARTED, node.name, child=child_id)
    if child is None or not child.status.finished:
        raise Suspend([wait_key(WaitKind.RUN, child_id)], None)
    driver.consumed.extend(m.seq for m in await inbox(driver, WaitKind.RUN, child_id))
    if child.status is not Status.COMPLETED:
        error = SubWorkflowFailed(node.name, child_id, child.status.value, child.error)
        driver.note(EventKind.STEP_FAILED, node.name, error=str(error), final=True)
        raise StepFailure(node.name, error)
    # A child that declares an output gives its result, else its whole data.
    store(
        driver, scope, node.name, json.loads(child.data if child.result is None else child.result)
    )
    driver.note(EventKind.CHILD_COMPLETED, node.name, child=child_id)


async def _start_child(driver: Walk, node: SubWorkflowStep, entry: cursor.ChildEntry) -> None:
    """Start (idempotently) the child of ``entry`` with its recorded or static parameters; it
    inherits what is left of this run's deadline."""
    params = entry.get("p", {})
    name = params.get("workflow", node.workflow_name)
    data = params.get("input", node.input)
    try:
        await driver.host.start_child(
            entry["child"], name, data, driver.run_id, driver.record.deadline_at
        )
    except (WorkflowNotFound, DataError) as exc:
        driver.note(EventKind.STEP_FAILED, node.name, error=str(exc), final=True)
        raise StepFailure(node.name, exc) from exc
    if node.on_parent_end != "cancel":
        entry["end"] = node.on_parent_end
