"""What a run is: its status, its data, its history events, what it waits for, and the context
a step sees."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

from ._errors import DataError, DefinitionError
from ._labels import MAX_LABELS, check_label
from ._typed import bad_path, json_form, validate


class Status(str, Enum):
    """The life cycle of a run.

    PENDING: queued for an engine (new, or woken, resumed or cancelled while no engine of this
    process could take it); RUNNING: an engine executes it; WAITING: for a signal, an approval,
    a timer, a retry backoff or a child run; PAUSED; HELD: stopped for an operator, with its
    position, data and compensations kept (a step failed for good under ``on_failure="hold"``,
    or its position does not exist in the definition it was to continue on): retry, skip,
    abort, cancel or migrate it; and the finished COMPLETED, FAILED and CANCELLED.
    """

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    PAUSED = "paused"
    HELD = "held"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Whether the run has ended for good."""
        return self in FINISHED

    def __str__(self) -> str:
        return self.value


FINISHED = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


class EventKind(StrEnum):
    """The kinds of history events; the values are what is stored (``Event.kind``)."""

    CREATED = "created"
    DEBOUNCED = "debounced"
    WAITING = "waiting"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    BRANCH_TAKEN = "branch_taken"
    LOOP_ITERATION = "loop_iteration"
    LOOP_ENDED = "loop_ended"
    MAP_STARTED = "map_started"
    PARALLEL_COMPLETED = "parallel_completed"
    SIGNAL_RECEIVED = "signal_received"
    SIGNAL_CONSUMED = "signal_consumed"
    APPROVAL_RECEIVED = "approval_received"
    TIMER_FIRED = "timer_fired"
    CHILD_STARTED = "child_started"
    CHILD_COMPLETED = "child_completed"
    PAUSE_REQUESTED = "pause_requested"
    PAUSED = "paused"
    RESUMED = "resumed"
    CANCEL_REQUESTED = "cancel_requested"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_RETRY = "compensation_retry"
    COMPENSATION_FAILED = "compensation_failed"
    DATA_CONFLICT = "data_conflict"
    PARAMS_COMPUTED = "params_computed"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    SIGNALS_DROPPED = "signals_dropped"
    RUN_HELD = "run_held"
    RUN_RETRIED = "run_retried"
    STEP_SKIPPED = "step_skipped"
    RUN_ABORTED = "run_aborted"
    RUN_MIGRATED = "run_migrated"
    RUN_FORKED = "run_forked"
    SLOT_ACQUIRED = "slot_acquired"
    SLOT_QUEUED = "slot_queued"
    SLOT_REFUSED = "slot_refused"
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_CANCELLED = "run_cancelled"


class WaitKind(StrEnum):
    """What a waiting run waits for: the first part of each ``State.waiting_for`` key."""

    SIGNAL = "signal"
    APPROVAL = "approval"
    TIMER = "timer"
    RETRY = "retry"
    RUN = "run"  # the end of a child run (the name is its id)
    HELD = "held"  # an operator's decision on a held run (the name is the step, or "definition")
    WORKER = "worker"  # an engine that has the run's definition (the name is its id)
    RATE = "rate"  # a call of a rate limiter (the name is the limiter's)
    DEBOUNCE = "debounce"  # a debounced start's window (the name: "<key> until <ISO time>")
    LIMIT = "limit"  # a slot of a concurrency limit (the name is its key)


def wait_key(kind: WaitKind, name: str) -> str:
    """The key of one wait as stored in ``waiting_for``: ``"signal:payment"``."""
    return f"{kind}:{name}"


def parse_wait_key(key: str) -> tuple[WaitKind, str]:
    """The kind and name of a wait key; :class:`ValueError` for a key that is not one."""
    kind, sep, name = key.partition(":")
    if not sep:
        raise ValueError(f"not a wait key (kind:name): {key!r}")
    return WaitKind(kind), name


def encode_data(data: object, where: str) -> str:
    """Serialise run data, or raise :class:`DataError` saying what is wrong and where.

    Values that JSON lacks take their JSON form (:func:`treadle._typed.json_form`: ISO 8601
    text for datetimes, text for ``Decimal`` and ``UUID``, dicts for dataclasses and pydantic
    models...); a value without one (bytes, NaN, an arbitrary object) is a :class:`DataError`
    naming its path in the data."""
    return _dumps(data, where, json_form)


def as_stored(data: dict[str, Any], where: str) -> tuple[dict[str, Any], str]:
    """``data`` as it is stored, and its JSON text (as :func:`encode_data`): ``data`` itself
    when it is plain JSON, else read back from the text, so that a ``datetime`` a step left is
    the ISO text that later steps and conditions see, before and after a recovery alike."""
    formed: list[bool] = []

    def noted(value: Any) -> Any:
        formed.append(True)
        return json_form(value)

    text = _dumps(data, where, noted)
    return (json.loads(text) if formed else data), text


def _dumps(data: object, where: str, default: Callable[[Any], Any]) -> str:
    if not isinstance(data, dict):
        raise DataError(
            f"{where}: run data must be a JSON object (dict), not {type(data).__name__}"
        )
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False, default=default)
    except (TypeError, ValueError) as exc:
        path = bad_path(data)
        at = "" if path is None else f" at {path}"
        raise DataError(f"{where}: run data is not JSON-serialisable{at}: {exc}") from None


@dataclass
class State:
    """A run as a step or a caller sees it. ``Engine.status`` returns a detached snapshot."""

    id: str
    workflow: str
    status: Status
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    error: str | None = None
    waiting_for: list[str] = field(default_factory=list)
    parent_id: str | None = None
    #: The fingerprint of the definition the run is pinned to (``Workflow.id``).
    definition_id: str = ""
    #: That definition's label (``treadle.new(name, version=...)``), if it has one.
    version: str | None = None
    #: The run this one was forked from (:meth:`Engine.fork`), if any.
    forked_from: str | None = None
    #: When the run is cancelled with ``DeadlineExceeded`` unless it has ended, if ever.
    deadline: datetime | None = None
    #: What the completed run returned (its workflow's ``output``); None before, or without one.
    result: Any = None
    #: The parameters computed from the run's data for the steps it is at, by step name
    #: (``{"manager-ok": {"approvers": ["carol"]}}``), as recorded when each step started.
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The run's labels (``start(labels=...)``, ``ctx.label``): text keys and values.
    labels: dict[str, str] = field(default_factory=dict)
    #: Higher is claimed first, FIFO within one (``start(priority=...)``; children inherit it).
    priority: int = 0


@dataclass(frozen=True)
class Event:
    """One entry of a run's history."""

    run_id: str
    at: datetime
    kind: str
    step: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """Where a step is: its run, its name, its attempt and its loop position.

    ``input`` is the run's data validated as the workflow's input model (see the property)."""

    run_id: str
    workflow: str
    step: str
    attempt: int = 1
    item: Any = None
    index: int | None = None
    iteration: int | None = None
    idempotency_key: str = ""
    #: The step's parameters computed from the run's data, as recorded (``{"attempts": 5}``
    #: for ``RetryPolicy().attempts(fn)``; empty when it has none).
    params: dict[str, Any] = field(default_factory=dict)
    #: The workflow's input model (``treadle.new(name, input=Model)``), if it has one.
    input_model: type[Any] | None = field(default=None, repr=False, compare=False)
    #: The state the step is given (``ctx.input`` reads its data when it is read).
    _state: State | None = field(default=None, repr=False, compare=False)
    #: Where :meth:`label` puts the labels the step sets (None: not in a step).
    _labels: dict[str, str] | None = field(default=None, repr=False, compare=False)

    def label(self, key: str, value: str) -> None:
        """Label the run (``key`` an id of at most 64 characters, ``value`` 1 to 200 printable
        characters; a key set again takes the new value). Kept when the step completes, with
        its checkpoint: a step that fails, or whose process dies before its checkpoint, leaves
        no label. :class:`InvalidId` / :class:`DataError` for a bad key / value."""
        key, value = check_label(key, value)
        if self._labels is None:
            raise DefinitionError(f"step {self.step!r}: labels can be set by steps only")
        known = {} if self._state is None else self._state.labels
        if len({**known, **self._labels, key: value}) > MAX_LABELS:
            raise DataError(f"step {self.step!r}: a run can have at most {MAX_LABELS} labels")
        self._labels[key] = value

    @property
    def input(self) -> Any:
        """The run's data as the step sees it now (``state.data``: the writes of earlier steps
        and of this step so far included), validated as the workflow's input model: a fresh
        instance each time it is read, with ISO text turned back into ``datetime`` and the like
        where the model says so. Keys the model does not declare are left out (pydantic's
        default). :class:`DataError` naming the fields when the data no longer fits the model;
        :class:`DefinitionError` for a workflow built without ``input=``."""
        if self.input_model is None:
            raise DefinitionError(
                f"workflow {self.workflow!r} has no input model: build it with "
                f"treadle.new({self.workflow!r}, input=Model) to read ctx.input"
            )
        data = {} if self._state is None else self._state.data
        return validate(self.input_model, data, f"ctx.input of step {self.step!r}")
