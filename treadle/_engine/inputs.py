"""The data a run starts with: validated against the workflow's input model where the model is.

A definition registered here has its model: ``start`` (and a sub-workflow's child run) checks
the data before anything is stored. A definition that is only stored (a start by name in a
process without the step code) has no Python model: its runs are stored with the data as given,
and the worker that has the model checks it when it first executes the run, failing the run
with the :class:`DataError` when it does not fit (see :func:`check_new_run`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from .._duration import parse_duration
from .._errors import DataError, RunExists
from .._interpreter import cursor
from .._nodes import Workflow
from .._state import EventKind, encode_data
from .._text import require_storable
from .._typed import as_json_data, json_form
from ..persistence import Persistence
from ..persistence._records import DefinitionRecord, RunRecord


def start_data(workflow: Workflow | DefinitionRecord, data: Any) -> tuple[dict[str, Any], str]:
    """The data a run of ``workflow`` starts with, from what ``start`` was given, and its JSON.

    With an input model (a registered definition built with ``input=``): ``data`` (a dict or
    an instance of the model) validated and dumped as JSON, or :class:`DataError` listing the
    bad fields. Without one: ``data`` as it is; a dataclass or pydantic model instance is
    taken as its JSON form (its fields as a dict). Either way checked for what no backend can
    store (:func:`treadle._text.require_storable`), before anything is stored.
    """
    where = f"start of {workflow.name!r}"
    model = workflow.input if isinstance(workflow, Workflow) else None
    if model is not None:
        data = as_json_data(model, {} if data is None else data, where)
    elif data is None:
        data = {}
    elif not isinstance(data, dict):
        with contextlib.suppress(TypeError):  # no JSON form: the error below says so
            data = json_form(data)
        if not isinstance(data, dict):
            raise DataError(
                f"{where}: run data must be a JSON object (dict), a dataclass or a pydantic "
                f"model, not {type(data).__name__}"
            )
    require_storable(data, f"data of the start of {workflow.name!r}")
    return data, encode_data(data, where)


def check_new_run(record: RunRecord, workflow: Workflow) -> None:
    """Before a run of ``workflow`` executes for the first time here: validate its data
    against the input model (it may have been started by name where the model is not), taking
    the model's dump as its data; data that does not fit makes the run fail at once, with the
    :class:`DataError`'s message as its error. Changes ``record`` in place (not stored until
    the run's first checkpoint)."""
    if workflow.input is None or record.cursor != cursor.NEW:
        return
    where = f"run {record.id!r}: data of the start of {workflow.name!r}"
    try:
        data = as_json_data(workflow.input, json.loads(record.data), where)
        record.data = encode_data(data, where)
    except DataError as exc:
        record.cursor = cursor.dump({}, [], {"status": "failed", "error": str(exc)})


async def check_same(
    persistence: Persistence, stored: RunRecord, workflow: str, digest: str
) -> None:
    """Raise :class:`RunExists` unless the stored run was started as ``workflow`` with data
    of ``digest`` (a run started without a digest is compared by workflow only)."""
    if stored.workflow != workflow:
        raise RunExists(stored.id, workflow, stored.workflow)
    for event in await persistence.history(stored.id):
        if event.kind == EventKind.CREATED:
            found = event.detail.get("input")
            if found is not None and found != digest:
                raise RunExists(stored.id, workflow, stored.workflow)
            return


def input_digest(data: dict[str, Any]) -> str:
    """The start data's fingerprint: SHA-256 of its canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=json_form
    )
    return hashlib.sha256(text.encode()).hexdigest()


def run_deadline(
    workflow: Workflow | DefinitionRecord, now: datetime, given: datetime | None
) -> datetime | None:
    """When a new run is cancelled unless it has ended: the earlier of ``given`` (a start's, or
    what is left of a parent's) and its workflow's own deadline from ``now``."""
    if isinstance(workflow, Workflow):
        own = workflow.deadline
    else:
        seconds = workflow.shape.get("deadline")
        own = None if seconds is None else timedelta(seconds=float(seconds))
    mine = None if own is None else now + own
    found = [t for t in (given, mine) if t is not None]
    return min(found) if found else None


def absolute_deadline(value: object, now: datetime) -> datetime | None:
    """A start's ``deadline`` as a time: a positive duration from ``now``, or an aware datetime;
    else :class:`DataError` saying what is accepted."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise DataError(
                f"deadline {value!r} has no timezone: give an aware datetime "
                "(datetime.now(UTC) + ...) or a duration such as '7d'"
            )
        return value
    try:
        duration = parse_duration(value)
    except ValueError as exc:
        raise DataError(
            f"deadline must be a duration ('7d', '90s', seconds) or an aware datetime: {exc}"
        ) from None
    if duration <= timedelta(0):
        raise DataError(f"deadline must be a positive duration, not {value!r}")
    return now + duration
