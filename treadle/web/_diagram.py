"""The workflow's structure as nested boxes, marked with where a run is and the path it took.

:func:`progress` reads a run's history and state into marks per step name (step names are
unique within a definition); :func:`diagram` turns the definition shape with those marks into
boxes (plain data) that ``templates/diagram.html`` draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._display import duration_text
from .._state import Event, State, Status

_ICONS = {
    "action": "▸",
    "custom": "▸",
    "signal": "✉",
    "approval": "✔",
    "sleep": "⏱",
    "subworkflow": "↳",
}

_DONE_EVENTS = {
    "step_completed",
    "signal_consumed",
    "timer_fired",
    "child_completed",
    "loop_ended",
    "parallel_completed",
}


@dataclass
class Progress:
    """What a run did to each step: ``marks[name]`` is done, failed, current, retrying,
    compensated or visited; ``taken[if name]`` are the indexes of the arms it took."""

    marks: dict[str, str] = field(default_factory=dict)
    taken: dict[str, set[int]] = field(default_factory=dict)
    maps: dict[str, MapProgress] = field(default_factory=dict)
    live: bool = False


@dataclass
class MapProgress:
    """Where a parallel map is: its elements, and its iterations done, failed and running."""

    total: int = 0
    max: int = 1
    done: int = 0
    failed: int = 0
    ended: bool = False

    def running(self, live: bool) -> int:
        """How many iterations are under way (none once the map or the run has ended)."""
        if self.ended or not live:
            return 0
        return min(self.max, self.total - self.done - self.failed)

    def text(self, live: bool) -> str:
        """``37/100 done, 5 running, 1 failed``."""
        out = f"{self.done}/{self.total} done"
        running = self.running(live)
        if running:
            out += f", {running} running"
        if self.failed:
            out += f", {self.failed} failed"
        return out


def progress(state: State, events: list[Event]) -> Progress:
    """Read the marks of every step from the run's history and its current waits."""
    out = Progress()
    children: dict[str, str] = {}
    for event in events:
        step, kind = event.step, event.kind
        if step is None:
            continue
        if kind == "map_started":
            out.maps[step] = MapProgress(
                int(event.detail.get("items", 0)), int(event.detail.get("max", 1))
            )
        elif kind == "loop_iteration" and step in out.maps:
            if event.detail.get("failed"):
                out.maps[step].failed += 1
            else:
                out.maps[step].done += 1
        elif kind == "loop_ended" and step in out.maps:
            out.maps[step].ended = True
        if kind in _DONE_EVENTS:
            out.marks[step] = "done"
        elif kind == "step_failed":
            out.marks[step] = "failed" if event.detail.get("final") else "retrying"
        elif kind == "branch_taken":
            out.taken.setdefault(step, set()).add(int(event.detail.get("branch", -1)))
            out.marks.setdefault(step, "visited")
        elif kind == "compensated":
            out.marks[step] = "compensated"
        elif kind == "compensation_failed":
            out.marks[step] = "failed"
        elif kind == "child_started":
            children[str(event.detail.get("child"))] = step
            out.marks[step] = "visited"
        elif kind == "approval_received":
            decision = state.data.get(step)
            if isinstance(decision, dict) and decision.get("approved") is True:
                out.marks[step] = "done"
            else:
                out.marks.setdefault(step, "visited")
        else:
            out.marks.setdefault(step, "visited")
    out.live = state.status in (Status.WAITING, Status.PAUSED, Status.RUNNING)
    if out.live:
        for wait in state.waiting_for:
            kind, _, name = wait.partition(":")
            target = children.get(name, name) if kind == "run" else name
            out.marks[target] = "retrying" if kind == "retry" else "current"
    return out


def _status_of(node: dict[str, Any], prog: Progress) -> str:
    mark = prog.marks.get(node["name"])
    inner = [_status_of(c, prog) for c in _children(node)]
    if mark in ("failed", "current", "retrying", "compensated"):
        return mark
    for wanted in ("failed", "current", "retrying"):
        if wanted in inner:
            return wanted
    if mark == "done":
        return "done"
    if node.get("kind") == "workflow" and inner and all(s in ("done", "skipped") for s in inner):
        return "done"
    if node.get("kind") == "if" and mark is not None:
        taken = prog.taken.get(node["name"], set())
        arms = node.get("branches", [])
        chosen = [arms[i] for i in taken if 0 <= i < len(arms)]
        if chosen and all(_status_of(s, prog) == "done" for a in chosen for s in a["steps"]):
            return "done"
    if mark is not None or any(s != "pending" for s in inner):
        return "visited"
    return "pending"


def _children(node: dict[str, Any]) -> list[dict[str, Any]]:
    if node.get("kind") == "if":
        return [s for arm in node.get("branches", []) for s in arm.get("steps", [])]
    return list(node.get("steps", [])) + list(node.get("branches", []))


@dataclass
class Box:
    """One step drawn as a box: ``seqs`` holds the step sequences inside it (one for a
    workflow or a loop, one per arm of an ``if`` or branch of a ``parallel``)."""

    kind: str
    name: str
    state: str
    icon: str = ""
    title: str = ""
    meta: str = ""
    seqs: list[Arm] = field(default_factory=list)


@dataclass
class Arm:
    """A sequence of boxes inside a box, with its label and whether the run took it."""

    steps: list[Box]
    label: str = ""
    taken: str = ""


LEGEND = ("done", "current", "retrying", "failed", "compensated", "pending")
"""The states a box can show, in the order of the legend."""


def _leaf_detail(node: dict[str, Any]) -> str:
    kind = node.get("kind")
    if kind == "approval":
        who = ", ".join(node.get("approvers") or []) or "anyone"
        quorum = node.get("quorum") or 1
        return f"approval by {who}" + (f" (quorum {quorum})" if quorum > 1 else "")
    if kind == "signal":
        return "signal"
    if kind == "sleep":
        if node.get("until"):
            return f"until {node['until']}"
        return f"sleep {duration_text(float(node.get('timeout') or 0))}"
    if kind == "subworkflow":
        return f"runs {node.get('workflow') or '(computed)'}"
    extra = []
    if node.get("retry"):
        extra.append(f"{node['retry']} attempts")
    if node.get("compensate"):
        extra.append(f"undo: {node['compensate']}")
    return " · ".join(extra)


def _box(node: dict[str, Any], prog: Progress) -> Box:
    kind, name = str(node.get("kind")), str(node.get("name"))
    box = Box(kind, name, _status_of(node, prog))
    if kind == "workflow":
        box.title = name
        box.seqs = [Arm(diagram(node.get("steps", []), prog))]
    elif kind == "if":
        taken = prog.taken.get(name, set())
        box.title = f"◇ if {name}"
        for i, arm in enumerate(node.get("branches", [])):
            label = "else" if arm.get("else") else ("if" if i == 0 else "else if")
            mark = "taken" if i in taken else ("skipped" if taken else "")
            box.seqs.append(Arm(diagram(arm.get("steps", []), prog), label, mark))
    elif kind == "loop":
        how = (
            f"for each {node['for_each']}"
            if node.get("for_each")
            else "while"
            if node.get("has_while")
            else "repeat"
        )
        if node.get("max_iterations"):
            how += f" · max {node['max_iterations']}"
        box.title, box.meta = f"↻ loop {name}", how
        box.seqs = [Arm(diagram(node.get("steps", []), prog))]
    elif kind == "map":
        strategy = str(node.get("strategy"))
        how = f"for each {node.get('for_each')} · max {node.get('max')}"
        if strategy != "all":
            how += f" · wait {strategy}" + (f" {node.get('count')}" if node.get("count") else "")
        elif node.get("tolerate"):
            how += f" · tolerate {node.get('tolerate')}"
        where = prog.maps.get(name)
        if where is not None:
            how += f" · {where.text(prog.live)}"
        box.title, box.meta = f"⇉ map {name}", how
        box.seqs = [Arm(diagram(node.get("steps", []), prog))]
    elif kind == "parallel":
        strategy = str(node.get("strategy"))
        box.title = f"⇉ parallel {name}"
        box.meta = f"wait {strategy}" + (f" {node.get('needed')}" if strategy == "count" else "")
        box.seqs = [Arm([_box(branch, prog)]) for branch in node.get("branches", [])]
    else:
        box.icon, box.meta = _ICONS.get(kind, "▸"), _leaf_detail(node)
    return box


def diagram(steps: list[dict[str, Any]], prog: Progress) -> list[Box]:
    """The boxes of a sequence of steps (a definition's ``steps``), marked by ``prog``."""
    return [_box(step, prog) for step in steps]
