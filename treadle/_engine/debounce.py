"""Debounced starts: starts of one workflow with one debounce key within a window collapse into
one run, which begins once no start has come for the window (a trailing window)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .._duration import Duration, parse_duration
from .._ids import check_id
from .._interpreter import NEW_CURSOR
from .._nodes import Workflow
from .._state import EventKind, Status
from ..persistence._records import DefinitionRecord, NewEvent, RunRecord
from .executor import Executor
from .inputs import run_deadline


@dataclass(frozen=True)
class Debounce:
    """A start's debounce: its key, its window and the longest a run may be put off."""

    key: str
    window: timedelta
    longest: timedelta | None = None


def debounce_of(
    key: str | None,
    window: Duration | None,
    longest: Duration | None,
    run_id: str | None,
) -> Debounce | None:
    """The debounce of a start's arguments (None without any); a :class:`ValueError` saying
    what is missing or wrong otherwise."""
    if key is None and window is None and longest is None:
        return None
    if key is None:
        raise ValueError(
            "debounce needs a debounce_key: the starts that collapse into one run are those "
            "with the same key"
        )
    if window is None:
        raise ValueError(
            f"debounce_key {key!r} needs debounce: a duration, how long after the last start "
            "the run begins (e.g. debounce='30s')"
        )
    check_id(key, "debounce key")
    if run_id is not None:
        raise ValueError(
            "a debounced start cannot name its run_id: it returns the id of the run it "
            "collapses into"
        )
    span = parse_duration(window)
    if span <= timedelta(0):
        raise ValueError(f"debounce must be longer than 0, not {window!r}")
    most = None if longest is None else parse_duration(longest)
    if most is not None and most < span:
        raise ValueError(
            f"debounce_max ({longest!r}) must be at least debounce ({window!r}): it bounds "
            "how long the starts may put the run off"
        )
    return Debounce(check_id(key, "debounce key"), span, most)


async def start_debounced(
    executor: Executor,
    workflow: Workflow | DefinitionRecord,
    data_json: str,
    run_id: str,
    debounce: Debounce,
    *,
    input_digest: str,
    trace: str | None,
    deadline: datetime | None,
    labels: dict[str, str],
    priority: int,
) -> str:
    """Store a debounced start (see :meth:`Persistence.start_debounced`); the run's id."""
    persistence = executor.persistence
    if isinstance(workflow, Workflow):  # others check signals on the stored definition
        await executor.registry.save(persistence, workflow)
    now = executor.clock.now()
    record = RunRecord(
        id=run_id,
        workflow=workflow.name,
        definition_id=workflow.id,
        data=data_json,
        cursor=NEW_CURSOR,
        created_at=now,
        updated_at=now,
        token=1,
        status=Status.WAITING,
        version=workflow.version,
        trace=trace,
        deadline_at=run_deadline(workflow, now, deadline),
        labels=labels,
        priority=priority,
        debounce_key=debounce.key,
    )
    about = {
        "workflow": workflow.name,
        "definition": workflow.id,
        "input": input_digest,
        "debounce": debounce.key,
    }
    event = NewEvent(EventKind.CREATED, None, about)
    stored, created = await persistence.start_debounced(
        record, event, debounce.window, debounce.longest
    )
    if created:
        executor.metrics.started(workflow.name)
    return stored.id
