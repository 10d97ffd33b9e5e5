"""Stored runs as callers see them, and new run ids."""

from __future__ import annotations

import json
import secrets
import time

from .._state import State
from ..persistence._records import RunRecord


def to_state(record: RunRecord) -> State:
    """A detached snapshot of a stored run."""
    return State(
        id=record.id,
        workflow=record.workflow,
        status=record.status,
        data=json.loads(record.data),
        created_at=record.created_at,
        updated_at=record.updated_at,
        error=record.error,
        waiting_for=list(record.waiting_for),
        parent_id=record.parent_id,
    )


def new_run_id() -> str:
    """A new run id: 32 hex digits, a millisecond timestamp then 80 random bits (like UUIDv7).

    Ids that grow with time keep the indexes on run ids (runs, history, inbox) appending at their
    end instead of touching a random page per new run.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"
