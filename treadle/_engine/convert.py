"""Stored runs as callers see them, and new run ids."""

from __future__ import annotations

import json
import secrets
import time

from .._params import all_recorded
from .._state import State, Status, WaitKind, wait_key
from ..persistence._records import RunRecord


def to_state(record: RunRecord) -> State:
    """A detached snapshot of a stored run. A run that no engine holds while it could go on
    waits for ``worker:<definition id>``: an engine that has its definition."""
    waiting = list(record.waiting_for)
    if record.status in (Status.PENDING, Status.RUNNING) and record.owner is None:
        waiting = [wait_key(WaitKind.WORKER, record.definition_id)]
    return State(
        id=record.id,
        workflow=record.workflow,
        status=record.status,
        data=json.loads(record.data),
        created_at=record.created_at,
        updated_at=record.updated_at,
        error=record.error,
        waiting_for=waiting,
        parent_id=record.parent_id,
        definition_id=record.definition_id,
        version=record.version,
        forked_from=record.forked_from,
        deadline=record.deadline_at,
        result=None if record.result is None else json.loads(record.result),
        params=all_recorded(record.cursor),
        labels=dict(record.labels),
        priority=record.priority,
    )


def new_run_id() -> str:
    """A new run id: 32 hex digits, a millisecond timestamp then 80 random bits (like UUIDv7).

    Ids that grow with time keep the indexes on run ids (runs, history, inbox) appending at their
    end instead of touching a random page per new run.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"
