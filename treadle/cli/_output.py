"""What the CLI prints: aligned text tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
from pydantic import BaseModel

from .._display import detail_text
from .._state import Event, State, Status
from .._wire import to_json


def when(moment: datetime | None) -> str:
    """A time for a table: UTC, to the second (``2026-05-01 12:00:03Z``); ``-`` for none."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, empty: str) -> str:
    """Plain aligned columns; the last column is not padded. ``empty`` is said when no rows."""
    if not rows:
        return empty
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def emit_json(value: Any) -> None:
    """Print ``value`` (a model of :mod:`treadle._wire`, a list of them, or plain JSON data) as
    indented JSON on stdout."""
    if isinstance(value, BaseModel) or (
        isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value)
    ):
        click.echo(to_json(value, indent=2))
    else:
        click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def version_of(state: State) -> str:
    """The definition a run is pinned to, for people: its version label, else its id."""
    return state.version or state.definition_id or "-"


def held_text(state: State) -> str | None:
    """What holds a HELD run and what to do about it (None for a run that is not held)."""
    if state.status is not Status.HELD:
        return None
    kind, _, name = (state.waiting_for or ["held:"])[0].partition(":")
    if kind == "held" and name and name != "definition":
        return f"step {name!r} failed for good: retry, skip or abort the run"
    return "its position does not exist in its definition: migrate it, then retry it; or abort it"


def runs_table(states: Sequence[State]) -> str:
    """The ``treadle runs`` table."""
    rows = [
        [
            s.id,
            s.workflow,
            version_of(s),
            s.status.value,
            ",".join(s.waiting_for) or "-",
            when(s.created_at),
            when(s.updated_at),
        ]
        for s in states
    ]
    return table(
        ["ID", "WORKFLOW", "VERSION", "STATUS", "WAITING FOR", "CREATED", "UPDATED"],
        rows,
        empty="no runs",
    )


def state_text(state: State) -> str:
    """The ``treadle status`` view: one field a line, then the data as indented JSON."""
    fields = [
        ("run", state.id),
        ("workflow", state.workflow),
        ("version", version_of(state)),
        ("status", state.status.value),
    ]
    held = held_text(state)
    if held:
        fields.append(("held", held))
    if state.waiting_for:
        fields.append(("waiting for", ", ".join(state.waiting_for)))
    if state.error:
        fields.append(("error", state.error))
    if state.parent_id:
        fields.append(("parent", state.parent_id))
    if state.forked_from:
        fields.append(("forked from", state.forked_from))
    if state.deadline is not None:
        fields.append(("deadline", when(state.deadline)))
    if state.priority:
        fields.append(("priority", str(state.priority)))
    for step, computed in state.params.items():
        fields.append((f"params {step}", json.dumps(computed, ensure_ascii=False, default=str)))
    if state.status is Status.COMPLETED and state.result is not None:
        fields.append(("result", json.dumps(state.result, ensure_ascii=False, default=str)))
    fields += [("created", when(state.created_at)), ("updated", when(state.updated_at))]
    width = max(len(name) for name, _ in fields)
    lines = [f"{name + ':':<{width + 1}}  {value}" for name, value in fields]
    data = json.dumps(state.data, indent=2, ensure_ascii=False, default=str)
    lines.append(f"{'data:':<{width + 1}}  " + data.replace("\n", "\n" + " " * (width + 3)))
    return "\n".join(lines)


def history_table(events: Sequence[Event]) -> str:
    """The ``treadle history`` table: time, what, which step, the details."""
    rows = []
    for e in events:
        at = e.at.astimezone(UTC)
        stamp = at.strftime("%Y-%m-%d %H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
        rows.append([stamp, e.kind, e.step or "-", detail_text(e.detail)])
    return table(["TIME", "EVENT", "STEP", "DETAIL"], rows, empty="no history")
