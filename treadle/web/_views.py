"""What the dashboard shows, as plain data: functions of a run's state, history and definition
(no HTTP, no HTML), laid out by the templates in ``templates/``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._display import detail_text, duration_text
from .._shape import waits_of as _waits_of
from .._state import Event, State, Status
from .._wire import Schedule
from ..persistence._records import InboxMessage
from ._auth import Identity
from ._computed import with_params
from ._diagram import Box, diagram, progress

MAX_EVENTS = 500
"""The timeline shows the latest events of a long history only (the API has all of them)."""

KIND_LABEL = {
    "step_completed": "step completed",
    "step_failed": "step failed",
    "branch_taken": "branch taken",
    "loop_iteration": "loop iteration",
    "loop_ended": "loop ended",
    "parallel_completed": "parallel completed",
    "signal_received": "signal received",
    "signal_consumed": "signal consumed",
    "approval_received": "decision received",
    "timer_fired": "timer fired",
    "child_started": "child started",
    "child_completed": "child completed",
    "compensation_failed": "compensation failed",
    "compensation_retry": "compensation retry",
    "pause_requested": "pause requested",
    "cancel_requested": "cancel requested",
    "run_completed": "completed",
    "run_failed": "failed",
    "run_cancelled": "cancelled",
    "run_held": "held",
    "run_retried": "retried",
    "step_skipped": "step skipped",
    "run_aborted": "aborted",
    "run_migrated": "migrated",
    "run_forked": "forked",
}
"""How the timeline names an event kind (kinds not listed read as they are)."""


def ago(moment: datetime, now: datetime) -> str:
    """``4.2s ago`` or ``in 3m``."""
    seconds = (now - moment).total_seconds()
    return f"{duration_text(seconds)} ago" if seconds >= 0 else f"in {duration_text(-seconds)}"


def pretty_json(value: Any) -> str:
    """JSON indented for a ``<pre>`` (the template escapes it)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


# The runs table --------------------------------------------------------------------------------


@dataclass
class RunRow:
    """A line of the runs table."""

    run: State
    waits: str
    updated_ago: str


def run_rows(runs: list[State], now: datetime) -> list[RunRow]:
    """The runs table: what each waits for (or its error) and when it last changed."""
    return [
        RunRow(s, (", ".join(s.waiting_for) or s.error or "")[:120], ago(s.updated_at, now))
        for s in runs
    ]


# One run -------------------------------------------------------------------------------------


@dataclass
class Reason:
    """One thing a waiting run waits for: ``kind`` signal, approval, timer, retry or run."""

    kind: str
    name: str
    who: str = ""
    quorum: int = 1


@dataclass
class Why:
    """Why the run is where it is: ``kind`` failed, cancelled, paused, held or waiting (``step``:
    the step a held run failed at, empty when its definition holds it)."""

    kind: str
    error: str | None = None
    reasons: list[Reason] = field(default_factory=list)
    until: str | None = None
    step: str = ""


@dataclass
class ApprovalAction:
    """An approval the run waits for; ``why_not`` says why this caller cannot decide it."""

    name: str
    who: str
    decide_as: str
    why_not: str = ""


@dataclass
class Actions:
    """What the caller may do to a run: decide, signal, pause or resume and cancel an
    unfinished one (``toggle`` empty for a held run); retry, skip and abort a held one
    (``held``: it is held, ``skippable``: at a step); fork any (from one of ``steps``)."""

    can_write: bool
    approvals: list[ApprovalAction]
    signals: list[str]
    toggle: str
    finished: bool = False
    held: bool = False
    skippable: bool = False
    steps: list[str] = field(default_factory=list)
    decide_as: str = "anonymous"


@dataclass
class Entry:
    """A line of the timeline."""

    event: Event
    label: str
    since_start: str
    took: str
    info: str
    error: str | None
    tone: str


@dataclass
class Message:
    """A signal sent to the run that no step has consumed yet."""

    name: str
    payload: str
    at: datetime


@dataclass
class RunView:
    """Everything the run page shows."""

    run: State
    took: str
    why: Why | None
    actions: Actions
    boxes: list[Box]
    children: list[State]
    inbox: list[Message]
    timeline: list[Entry]
    skipped: int
    data: str = ""
    #: The completed run's result as indented JSON (None: it has none).
    result: str | None = None


def _why(state: State, events: list[Event], approvals: dict[str, dict[str, Any]]) -> Why | None:
    if state.status is Status.FAILED:
        return Why("failed", state.error)
    if state.status is Status.CANCELLED:
        return Why("cancelled", state.error)
    if state.status is Status.PAUSED:
        return Why("paused")
    if state.status is Status.HELD:
        return Why("held", state.error, step=_held_step(state))
    if state.status is not Status.WAITING:
        return None
    until = next((e.detail.get("until") for e in reversed(events) if e.kind == "waiting"), None)
    reasons = []
    for wait in state.waiting_for:
        kind, _, name = wait.partition(":")
        spec = approvals.get(name, {}) if kind == "approval" else {}
        who = ", ".join(spec.get("approvers") or []) or "anyone"
        reasons.append(Reason(kind, name, who, int(spec.get("quorum") or 1)))
    return Why("waiting", reasons=reasons, until=until)


def _held_step(state: State) -> str:
    """The step a held run failed at ("" when its definition holds it)."""
    kind, _, name = (state.waiting_for or ["held:definition"])[0].partition(":")
    return name if kind == "held" and name != "definition" else ""


def _why_not(identity: Identity, approvers: list[str], open_mode: bool) -> str:
    if not approvers or identity.name in approvers:
        return ""
    names = ", ".join(approvers)
    if open_mode:
        return (
            f"Only {names} may decide, and without API tokens nobody is signed in: serve with "
            "tokens (--tokens-file) or decide with 'treadle approve RUN NAME --by WHO'."
        )
    return f"Only {names} may decide; you are signed in as {identity.name}."


def _actions(
    state: State,
    signals: set[str],
    approvals: dict[str, dict[str, Any]],
    identity: Identity,
    open_mode: bool,
    steps: list[str],
) -> Actions:
    if state.status.finished:
        return Actions(identity.can_write, [], [], "", finished=True, steps=steps)
    items = []
    for wait in state.waiting_for:
        kind, _, name = wait.partition(":")
        if kind != "approval":
            continue
        approvers = list(approvals.get(name, {}).get("approvers") or [])
        why_not = _why_not(identity, approvers, open_mode) if identity.can_write else ""
        items.append(
            ApprovalAction(name, ", ".join(approvers) or "anyone", identity.name or "anonymous",
                           why_not)
        )  # fmt: skip
    held = state.status is Status.HELD
    toggle = "" if held else "resume" if state.status is Status.PAUSED else "pause"
    return Actions(
        identity.can_write, items, sorted(signals), toggle, held=held,
        skippable=held and bool(_held_step(state)), steps=steps,
        decide_as=identity.name or "anonymous",
    )  # fmt: skip


def _entry(event: Event, start: datetime, following: Event | None) -> Entry:
    detail = event.detail
    took = ""
    if isinstance(detail.get("ms"), int | float):
        took = duration_text(float(detail["ms"]) / 1000)
    elif event.kind == "waiting" and following is not None:
        took = "waited " + duration_text((following.at - event.at).total_seconds())
    tone = ""
    if event.kind in ("run_failed", "run_aborted", "compensation_failed") or (
        event.kind == "step_failed" and detail.get("final")
    ):
        tone = "error"
    elif event.kind in ("step_failed", "run_held"):
        tone = "warn"
    elif event.kind in ("run_completed", "step_completed"):
        tone = "ok"
    error = detail.get("error")
    return Entry(
        event,
        KIND_LABEL.get(event.kind, event.kind),
        duration_text((event.at - start).total_seconds()),
        took,
        detail_text(detail, skip=("ms", "error", "final"))[:300],
        None if error is None else str(error),
        tone,
    )


def run_view(
    state: State,
    events: list[Event],
    shape: dict[str, Any],
    *,
    identity: Identity,
    open_mode: bool,
    children: list[State] | None = None,
    inbox: list[InboxMessage] | None = None,
) -> RunView:
    """The run page of ``state``, its history ``events`` and its definition ``shape``, for the
    caller ``identity`` (``open_mode``: no tokens are configured)."""
    shape = with_params(shape, state.params)  # approvers and the like as this run computed them
    signals, approvals = _waits_of(shape)
    started = events[0].at if events else state.created_at
    took = ""
    if state.status.finished and events:
        took = duration_text((events[-1].at - started).total_seconds())
    skipped = max(0, len(events) - MAX_EVENTS)
    timeline = [
        _entry(e, started, events[i + 1] if i + 1 < len(events) else None)
        for i, e in enumerate(events)
        if i >= skipped
    ]
    messages = [
        Message(m.name, json.dumps(m.payload, ensure_ascii=False, default=str), m.created_at)
        for m in sorted(inbox or [], key=lambda m: m.seq)
    ]
    return RunView(
        run=state,
        took=took,
        why=_why(state, events, approvals),
        actions=_actions(
            state,
            signals,
            approvals,
            identity,
            open_mode,
            [str(step["name"]) for step in shape.get("steps", [])],
        ),
        boxes=diagram(shape.get("steps", []), progress(state, events)),
        children=children or [],
        inbox=messages,
        timeline=timeline,
        skipped=skipped,
        data=pretty_json(state.data),
        result=None if state.result is None else pretty_json(state.result),
    )


def signal_names(shape: dict[str, Any]) -> list[str]:
    """The names of the signals a definition awaits."""
    return sorted(_waits_of(shape)[0])


# Schedules -----------------------------------------------------------------------------------


@dataclass
class ScheduleRow:
    """A line of the schedules table, with its next due times and how far away they are."""

    schedule: Schedule
    fires: list[tuple[datetime, str]]
    input: str | None


def schedule_rows(schedules: list[Schedule], now: datetime) -> list[ScheduleRow]:
    """The schedules table."""
    return [
        ScheduleRow(
            s,
            [(t, ago(t, now)) for t in s.next_fires],
            None if s.input is None else json.dumps(s.input, ensure_ascii=False),
        )
        for s in schedules
    ]
