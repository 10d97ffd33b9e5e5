"""The waiting steps: signals, approvals, timers and child runs.

Each either completes from what has arrived (the inbox, the clock, the child's end) or raises
:class:`Suspend` naming what the run waits for, so that the run leaves memory until it comes.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Literal

from .._errors import (
    ApprovalRejected,
    DataError,
    SubWorkflowFailed,
    WaitTimeout,
    WorkflowNotFound,
)
from .._ids import child_id
from .._nodes import ApprovalStep, SignalStep, SleepStep, SubWorkflowStep
from .._state import EventKind, Status, WaitKind, wait_key
from . import cursor
from .control import Scope, StepFailure, Suspend
from .mapped import child_input, store
from .walk import Walk


def child_run_id(parent_id: str, path: str) -> str:
    """The deterministic id of the child run the sub-workflow step at ``path`` starts."""
    return child_id(parent_id, cursor.last_name(path), path)


def deadline(
    driver: Walk, path: str, kind: Literal["signal", "approval"], timeout: timedelta | None
) -> cursor.WaitEntry:
    """The wait's entry, recording its deadline (``dl``) the first time it is reached."""
    entry = cursor.wait_at(driver.nodes, path)
    if entry is None:
        due = driver.host.clock.now() + timeout if timeout is not None else None
        dl = due.timestamp() if due else None
        entry = {"k": "signal", "dl": dl} if kind == "signal" else {"k": "approval", "dl": dl}
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
    entry = deadline(driver, path, "signal", node.timeout)
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
    entry = deadline(driver, path, "approval", node.timeout)
    assert entry["k"] == "approval"
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
        if len(voters) >= node.quorum:
            driver.set_data(
                node.name, {"approved": True, "by": voters, "comment": entry.get("comment")}
            )
            return
    timed_out(driver, node, due_time(driver, entry["dl"]))


def run_sleep(driver: Walk, node: SleepStep, path: str) -> None:
    """``sleep``: a durable timer; the due time is recorded the first time."""
    entry = cursor.sleep_at(driver.nodes, path)
    if entry is None:
        due = driver.host.clock.now() + node.duration
        entry = {"k": "sleep", "at": due.timestamp()}
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
        await driver.flush()
        child_id = child_run_id(driver.run_id, path)
        try:
            data = await child_input(driver, node, scope)
            await host.start_child(child_id, node.workflow_name, data, driver.run_id)
        except (WorkflowNotFound, DataError) as exc:
            driver.note(EventKind.STEP_FAILED, node.name, error=str(exc), final=True)
            raise StepFailure(node.name, exc) from exc
        entry = {"k": "subworkflow", "child": child_id}
        driver.nodes[path] = entry
        driver.note(EventKind.CHILD_STARTED, node.name, child=child_id)
    child_id = entry["child"]
    child = await host.persistence.get_run(child_id)
    if child is None or not child.status.finished:
        raise Suspend([wait_key(WaitKind.RUN, child_id)], None)
    driver.consumed.extend(m.seq for m in await inbox(driver, WaitKind.RUN, child_id))
    if child.status is not Status.COMPLETED:
        error = SubWorkflowFailed(node.name, child_id, child.status.value, child.error)
        driver.note(EventKind.STEP_FAILED, node.name, error=str(error), final=True)
        raise StepFailure(node.name, error)
    store(driver, scope, node.name, json.loads(child.data))
    driver.note(EventKind.CHILD_COMPLETED, node.name, child=child_id)
