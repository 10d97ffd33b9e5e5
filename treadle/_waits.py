"""The waiting steps: signals, approvals, timers and child runs.

Each either completes from what has arrived (the inbox, the clock, the child's end) or raises
:class:`Suspend` naming what the run waits for, so that the run leaves memory until it comes.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._control import StepFailure, Suspend
from ._errors import (
    ApprovalRejected,
    DataError,
    SubWorkflowFailed,
    WaitTimeout,
    WorkflowNotFound,
)
from ._nodes import ApprovalStep, SignalStep, SleepStep, SubWorkflowStep
from ._state import Status

if TYPE_CHECKING:
    from ._interpreter import RunDriver


def deadline(driver: RunDriver, path: str, kind: str, timeout: timedelta | None) -> dict[str, Any]:
    """The wait's entry, recording its deadline (``dl``) the first time it is reached."""
    entry = driver.nodes.get(path)
    if entry is None:
        due = driver.engine.clock.now() + timeout if timeout is not None else None
        entry = {"k": kind, "dl": due.timestamp() if due else None}
        driver.nodes[path] = entry
        driver.touch()
    return dict(entry)


def due_time(driver: RunDriver, timestamp: float | None) -> datetime | None:
    """A stored timestamp as a datetime in the clock's zone (None stays None)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, driver.engine.clock.now().tzinfo)


async def inbox(driver: RunDriver, kind: str, name: str) -> list[Any]:
    """The run's unconsumed messages for one wait, less those this walk already took."""
    messages = await driver.engine.persistence.read_inbox(driver.run_id, kind, name)
    taken = set(driver.consumed)
    return [m for m in messages if m.seq not in taken]


def timed_out(driver: RunDriver, node: SignalStep | ApprovalStep, due: datetime | None) -> None:
    """Fail the wait with WaitTimeout if its deadline has passed, else suspend for it."""
    if due is not None and driver.engine.clock.now() >= due:
        error = WaitTimeout(node.kind, node.name)
        driver.note("step_failed", node.name, error=str(error), final=True)
        raise StepFailure(node.name, error)
    raise Suspend([f"{node.kind}:{node.name}"], due)


async def run_signal(driver: RunDriver, node: SignalStep, path: str) -> None:
    """``await_signal``: take the oldest signal of that name into ``data[name]``."""
    clean = not driver.dirty
    entry = deadline(driver, path, "signal", node.timeout)
    messages = await inbox(driver, "signal", node.name)
    if messages:
        driver.consumed.append(messages[0].seq)
        driver.set_data(node.name, messages[0].payload)
        driver.note("signal_consumed", node.name)
        # The inbox keeps the message until the next checkpoint consumes it, so a recovery
        # takes the same one again: nothing here needs a checkpoint of its own.
        driver.replayable = clean
        return
    timed_out(driver, node, due_time(driver, entry["dl"]))


async def run_approval(driver: RunDriver, node: ApprovalStep, path: str) -> None:
    """``await_approval``: count distinct approvers up to the quorum; a rejection fails."""
    deadline(driver, path, "approval", node.timeout)
    entry = driver.nodes[path]
    voters: list[Any] = entry.setdefault("by", [])
    for message in await inbox(driver, "approval", node.name):
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
                "step_failed", node.name, error="rejected", by=by, reason=reason, final=True
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


def run_sleep(driver: RunDriver, node: SleepStep, path: str) -> None:
    """``sleep``: a durable timer; the due time is recorded the first time."""
    entry = driver.nodes.get(path)
    if entry is None:
        due = driver.engine.clock.now() + node.duration
        entry = {"k": "sleep", "at": due.timestamp()}
        driver.nodes[path] = entry
        driver.touch()
    at = due_time(driver, entry["at"])
    assert at is not None
    if driver.engine.clock.now() < at:
        raise Suspend([f"timer:{node.name}"], at)
    driver.note("timer_fired", node.name)


async def run_subworkflow(driver: RunDriver, node: SubWorkflowStep, path: str) -> None:
    """``sub_workflow``: start the child once (deterministic id), then wait for its end."""
    engine = driver.engine
    entry = driver.nodes.get(path)
    if entry is None:
        await driver.flush()
        child_id = engine.child_run_id(driver.run_id, path)
        try:
            await engine.start_child(child_id, node.workflow_name, node.input, driver.run_id)
        except (WorkflowNotFound, DataError) as exc:
            driver.note("step_failed", node.name, error=str(exc), final=True)
            raise StepFailure(node.name, exc) from exc
        entry = {"k": "subworkflow", "child": child_id}
        driver.nodes[path] = entry
        driver.note("child_started", node.name, child=child_id)
    child_id = entry["child"]
    child = await engine.persistence.get_run(child_id)
    if child is None or not child.status.finished:
        raise Suspend([f"run:{child_id}"], None)
    driver.consumed.extend(m.seq for m in await inbox(driver, "run", child_id))
    if child.status is not Status.COMPLETED:
        error = SubWorkflowFailed(node.name, child_id, child.status.value, child.error)
        driver.note("step_failed", node.name, error=str(error), final=True)
        raise StepFailure(node.name, error)
    driver.set_data(node.name, json.loads(child.data))
    driver.note("child_completed", node.name, child=child_id)
