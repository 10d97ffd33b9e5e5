"""The JSON shapes of treadle, written once: what the HTTP API reads and returns, what the CLI's
``--json`` prints, and the schema components of the OpenAPI document.

Request models forbid unknown fields (a typo such as ``"comemnt"`` is an error, not a no-op)
and are strict (``5`` is not a string). Response models are built from the engine's own
objects with ``of(...)``; enums in the schema come from the code (:class:`Status`, the node
kinds, the cron policies), never from a copy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, get_args

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from ._engine.bulk import BulkResult as _BulkResult
from ._engine.operator import MigrationPlan as _MigrationPlan
from ._limit_wire import Limit as Limit  # re-exported: the API's shapes are all here
from ._limit_wire import LimitList as LimitList
from ._nodes import Node as _Node
from ._nodes import Workflow as _Workflow
from ._rates import show_seconds
from ._state import Event as _Event
from ._state import State, Status
from .cron import Schedule as _Schedule
from .cron import next_fires
from .cron._cron import CATCH_UP, OVERLAP
from .cron._operations import Backfill as _Backfill
from .persistence._rates import RateLimitState as _RateLimitState

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$"
"""Ids a caller chooses (runs, schedules): letters, digits and ``._:@-``, at most 200."""

REF = "#/components/schemas/"
"""Where the OpenAPI document keeps the schemas of these models."""

NODE_KINDS = tuple(cls.kind for cls in get_args(_Node))
"""The ``kind`` of every step a definition can hold."""


Timestamp = Annotated[
    datetime,
    PlainSerializer(datetime.isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]
"""An aware datetime, as ISO 8601 with its offset (``2026-05-01T12:00:03.5+00:00``)."""


def _one_of(values: tuple[str, ...], description: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "enum": list(values), "description": description})


CatchUp = Annotated[str, _one_of(CATCH_UP, "missed due times: one run for them, none, or all")]
Overlap = Annotated[str, _one_of(OVERLAP, "while the last run is unfinished")]


def upcoming(schedule: _Schedule, count: int) -> list[datetime]:
    """The next ``count`` due times of an enabled schedule, from its stored next run."""
    if not schedule.enabled or count < 1:
        return []
    start = schedule.next_run
    try:
        if start is None:
            return next_fires(schedule.expression, datetime.now(UTC), count, schedule.timezone)
        return [start, *next_fires(schedule.expression, start, count - 1, schedule.timezone)]
    except ValueError:
        return []


def seconds(value: timedelta | None) -> float | None:
    """A duration as JSON: seconds, or None."""
    return None if value is None else value.total_seconds()


# Requests -----------------------------------------------------------------------------------


class Request(BaseModel):
    """A request body: strict types, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


_DURATION = Field(None, description="a duration: seconds, or text such as '6h' or '1h30m'")


class StartRun(Request):
    """``POST /api/runs``: start a run (idempotent with ``run_id``)."""

    workflow: str = Field(min_length=1, max_length=1000)
    data: dict[str, Any] | None = None
    run_id: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="an id of your own: starting again with it starts nothing",
    )
    deadline: str | float | None = Field(
        None,
        description="cancel the run (DeadlineExceeded) unless it has ended within this duration "
        "(seconds, or text such as '7d')",
    )
    labels: dict[str, str] | None = Field(None, description="the run's labels, for search")
    priority: int = Field(
        0, ge=-1000, le=1000, description="higher is claimed first; FIFO within one priority"
    )
    debounce_key: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="starts of the workflow with this key within 'debounce' make one run",
    )
    debounce: str | float | None = Field(
        None, description="the run begins this long after the last start with its key"
    )
    debounce_max: str | float | None = Field(
        None, description="but no later than this long after the first"
    )


class SendSignal(Request):
    """``POST /api/runs/{id}/signal/{name}``."""

    data: Any = Field(None, description="any JSON; stored at data[<signal name>]")


class Approve(Request):
    """``POST /api/runs/{id}/approve/{name}``: decided as the token's identity."""

    comment: str | None = Field(None, max_length=10_000)


class Reject(Request):
    """``POST /api/runs/{id}/reject/{name}``: decided as the token's identity."""

    reason: str | None = Field(None, max_length=10_000)


class SkipStep(Request):
    """``POST /api/runs/{id}/skip``: mark the failed step of a held run done."""

    data: dict[str, Any] | None = Field(
        None, description="merged into the run's data (its top-level keys replaced)"
    )


class AbortRun(Request):
    """``POST /api/runs/{id}/abort``: compensate a held run and end it FAILED."""

    reason: str = Field(min_length=1, max_length=10_000)


class MigrateRun(Request):
    """``POST /api/runs/{id}/migrate``: move a run onto another definition of its workflow."""

    to: str | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="a version label or definition id; absent: the newest registered",
    )
    rename: dict[str, str] | None = Field(None, description="old step name -> new step name")
    dry_run: bool = Field(False, description="only say whether it can move")


class Filter(Request):
    """Which runs (:class:`treadle.RunFilter`): every field given must match."""

    workflow: str | None = Field(None, pattern=ID_PATTERN)
    status: Status | None = None
    version: str | None = Field(None, min_length=1, max_length=1000)
    labels: dict[str, str] | None = Field(None, description="the run has every one of them")
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    error_contains: str | None = Field(None, min_length=1, max_length=1000)

    def fields(self) -> dict[str, Any]:
        """The fields given, as :class:`treadle.RunFilter` takes them."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class BulkAction(Request):
    """``POST /api/runs/bulk/{action}``: act on every run the filter (or ``run_ids``) matches."""

    filter: Filter = Field(default_factory=lambda: Filter.model_validate({}))
    run_ids: list[Annotated[str, Field(pattern=ID_PATTERN)]] | None = Field(
        None, max_length=1000, description="only these runs (a dashboard's selection)"
    )
    dry_run: bool = Field(False, description="only list the runs it would act on")
    reason: str | None = Field(None, min_length=1, max_length=10_000, description="abort: why")
    to: str | None = Field(None, min_length=1, max_length=1000, description="migrate: onto")
    rename: dict[str, str] | None = Field(None, description="migrate: old step -> new step")


class ForkRun(Request):
    """``POST /api/runs/{id}/fork``: start a new run that keeps the steps before ``from_step``."""

    from_step: str | None = Field(
        None, min_length=1, max_length=1000, description="a top-level step; absent: the start"
    )
    data: dict[str, Any] | None = Field(None, description="absent: the original run's data")
    version: str | None = Field(
        None, min_length=1, max_length=1000, description="absent: the newest registered"
    )


class NewSchedule(Request):
    """``POST /api/schedules``: the arguments of :meth:`treadle.Cron.add`."""

    id: str = Field(pattern=ID_PATTERN)
    workflow: str = Field(min_length=1, max_length=1000)
    expression: str = Field(
        min_length=1,
        max_length=1000,
        description="five-field cron, @daily and friends, or @every <duration>",
    )
    input: dict[str, Any] | None = None
    timezone: str | None = Field(None, max_length=100, description="IANA zone; UTC if absent")
    catch_up: CatchUp | None = None
    catch_up_window: str | float | None = _DURATION
    overlap: Overlap | None = None
    jitter: str | float | None = _DURATION
    pause_on_failure: bool | None = Field(None, description="disable itself when its run fails")
    priority: int | None = Field(
        None, ge=-1000, le=1000, description="the priority of the runs it starts"
    )

    def options(self) -> dict[str, Any]:
        """The Cron policy options that were given."""
        given = {
            "catch_up": self.catch_up,
            "catch_up_window": self.catch_up_window,
            "overlap": self.overlap,
            "jitter": self.jitter,
            "pause_on_failure": self.pause_on_failure,
            "priority": self.priority,
        }
        return {key: value for key, value in given.items() if value is not None}


class TriggerSchedule(Request):
    """``POST /api/schedules/{id}/trigger``: :meth:`treadle.Cron.trigger`."""

    key: str | None = Field(
        None, pattern=ID_PATTERN, description="a retried trigger with the same key starts nothing"
    )


class BackfillSchedule(Request):
    """``POST /api/schedules/{id}/backfill``: :meth:`treadle.Cron.backfill` over [from, to)."""

    start: datetime = Field(alias="from", description="first due time included (ISO 8601)")
    end: datetime = Field(alias="to", description="due times before this (ISO 8601)")


# Responses ----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    """What went wrong: a stable type name and a message for people."""

    type: str
    message: str


class Error(BaseModel):
    """Every error of the API: ``{"error": {"type", "message"}}``."""

    error: ErrorDetail


class Identity(BaseModel):
    """``GET /api/whoami``: who the caller's token stands for."""

    name: str | None
    can_write: bool
    auth_required: bool


class Run(BaseModel):
    """A run as the API and ``treadle status --json`` show it."""

    id: str
    workflow: str
    status: Status
    data: dict[str, Any]
    created_at: Timestamp
    updated_at: Timestamp
    error: str | None
    waiting_for: list[str] = Field(
        description="e.g. signal:payment, approval:manager, timer:cool, retry:step, run:<child>"
    )
    parent_id: str | None
    definition_id: str = Field(description="fingerprint of the definition the run is pinned to")
    version: str | None = Field(description="that definition's version label, if it has one")
    forked_from: str | None = Field(description="the run this one was forked from")
    deadline: Timestamp | None = Field(
        None, description="when the run is cancelled with DeadlineExceeded unless it has ended"
    )
    result: Any = Field(None, description="what the completed run returned (its output)")
    params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="parameters computed from the run's data for the steps it is at, by step",
    )
    labels: dict[str, str] = Field(description="the run's labels (key -> text), for search")
    priority: int = Field(0, description="higher is claimed first; FIFO within one priority")

    @classmethod
    def of(cls, state: State) -> Run:
        """The shape of a run's state."""
        return cls.model_validate(state, from_attributes=True)


class MigrationPlan(BaseModel):
    """Whether a run can move (or moved) onto another definition, and why not."""

    run_id: str
    status: Status
    source: str = Field(description="the definition id the run is on")
    source_version: str | None
    target: str = Field(description="the definition id it is to move to")
    target_version: str | None
    ok: bool = Field(description="whether it can move")
    reasons: list[str] = Field(description="why it cannot (empty when ok)")
    moved: bool = Field(description="whether it was moved (false for a dry run)")

    @classmethod
    def of(cls, plan: _MigrationPlan) -> MigrationPlan:
        """The shape of a migration plan."""
        return cls.model_validate(plan, from_attributes=True)


class Forked(BaseModel):
    """``POST /api/runs/{id}/fork``: the new run."""

    run_id: str


class DeletedRuns(BaseModel):
    """``DELETE /api/runs/{id}`` (and ``treadle delete --json``): the runs deleted, the one
    asked for first, then its descendants."""

    deleted: list[str]


class RunList(BaseModel):
    """``GET /api/runs``."""

    runs: list[Run]
    next_cursor: str | None = Field(
        default=None, description="pass as ?cursor= for the next page (null: the last page)"
    )


class BulkOutcome(BaseModel):
    """What a bulk action did (``POST /api/runs/bulk/{action}``, ``treadle bulk --json``)."""

    action: str
    dry_run: bool
    applied: list[str] = Field(description="the runs acted on (dry run: to act on), newest first")
    skipped: dict[str, str] = Field(description="run id -> why the action did not apply")

    @classmethod
    def of(cls, result: _BulkResult) -> BulkOutcome:
        """The shape of a bulk action's result."""
        return cls.model_validate(result, from_attributes=True)


class Event(BaseModel):
    """One entry of a run's history."""

    at: Timestamp
    kind: str
    step: str | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, event: _Event) -> Event:
        """The shape of a history event."""
        return cls.model_validate(event, from_attributes=True)


class History(BaseModel):
    """``GET /api/runs/{id}/history``."""

    events: list[Event]


class Node(BaseModel):
    """A step of a definition (:meth:`treadle.Workflow.describe`): its name, its kind, and its
    children in ``steps`` or ``branches``; other fields depend on the kind."""

    model_config = ConfigDict(extra="allow")

    name: str
    kind: Annotated[str, _one_of(NODE_KINDS, "the kind of step")]
    steps: list[Node] | None = None
    branches: list[dict[str, Any]] | None = None


class Workflow(BaseModel):
    """A registered workflow with its definition."""

    name: str
    id: str = Field(description="fingerprint of the definition")
    definition: Node

    @classmethod
    def of(cls, workflow: _Workflow) -> Workflow:
        """The shape of a registered workflow."""
        definition = Node.model_validate(workflow.describe())
        return cls(name=workflow.name, id=workflow.id, definition=definition)


class WorkflowList(BaseModel):
    """``GET /api/workflows``."""

    workflows: list[Workflow]


class Schedule(BaseModel):
    """A schedule as the API and ``treadle cron list --json`` show it."""

    id: str
    workflow: str
    expression: str
    timezone: str
    input: dict[str, Any] | None
    enabled: bool
    next_run: Timestamp | None
    last_run: Timestamp | None
    next_fires: list[Timestamp] = Field(description="the next due times (none while disabled)")
    last_run_id: str | None
    last_run_status: Status | None
    catch_up: CatchUp
    overlap: Overlap
    jitter: float | None = Field(description="seconds")
    catch_up_window: float | None = Field(description="seconds")
    pause_on_failure: bool = False
    paused_reason: str | None = Field(None, description="why it paused itself (then disabled)")
    priority: int = Field(0, description="the priority of the runs it starts")

    @classmethod
    def of(cls, schedule: _Schedule, previews: int = 3) -> Schedule:
        """The shape of a schedule with its next ``previews`` due times."""
        return cls(
            id=schedule.id,
            workflow=schedule.workflow,
            expression=schedule.expression,
            timezone=schedule.timezone,
            input=schedule.input,
            enabled=schedule.enabled,
            next_run=schedule.next_run,
            last_run=schedule.last_run,
            next_fires=upcoming(schedule, previews),
            last_run_id=schedule.last_run_id,
            last_run_status=schedule.last_run_status,
            catch_up=schedule.catch_up,
            overlap=schedule.overlap,
            jitter=seconds(schedule.jitter),
            catch_up_window=seconds(schedule.catch_up_window),
            pause_on_failure=schedule.pause_on_failure,
            paused_reason=schedule.paused_reason,
            priority=schedule.priority,
        )


class ScheduleList(BaseModel):
    """``GET /api/schedules``."""

    schedules: list[Schedule]


class Triggered(BaseModel):
    """``POST /api/schedules/{id}/trigger``: the run started (or found, for a repeated key)."""

    schedule_id: str
    run_id: str


class Backfilled(BaseModel):
    """``POST /api/schedules/{id}/backfill``: every due time of the range with its run."""

    schedule_id: str
    due_times: list[Timestamp]
    run_ids: list[str]
    started: int = Field(description="runs started now (the others existed already)")

    @classmethod
    def of(cls, done: _Backfill) -> Backfilled:
        """The shape of what a backfill did."""
        return cls(
            schedule_id=done.schedule_id,
            due_times=done.due_times,
            run_ids=done.run_ids,
            started=done.started,
        )


class RateLimit(BaseModel):
    """A rate limiter as ``GET /api/rate-limits`` and ``treadle rates --json`` show it."""

    name: str
    limit: int = Field(description="calls per period")
    per: str = Field(description="the period, as people write it (1s, 1m)")
    per_seconds: float
    burst: int = Field(description="calls that may go at once after a quiet spell")
    available: int = Field(description="calls that may go at once now")
    next_free: Timestamp = Field(description="when the next call may go (now, if at once)")
    waiting: int = Field(description="runs parked until their reserved call")

    @classmethod
    def of(cls, state: _RateLimitState) -> RateLimit:
        """The shape of a limiter's state."""
        return cls(
            name=state.name,
            limit=state.limit,
            per=show_seconds(state.per_seconds),
            per_seconds=state.per_seconds,
            burst=state.burst,
            available=state.available,
            next_free=state.next_free,
            waiting=state.waiting,
        )


class RateLimitList(BaseModel):
    """``GET /api/rate-limits``."""

    rate_limits: list[RateLimit]

    @classmethod
    def of(cls, states: Sequence[_RateLimitState]) -> RateLimitList:
        """The shape of every limiter's state."""
        return cls(rate_limits=[RateLimit.of(s) for s in states])


REQUESTS: tuple[type[BaseModel], ...] = (
    StartRun,
    SendSignal,
    Approve,
    Reject,
    SkipStep,
    AbortRun,
    MigrateRun,
    ForkRun,
    NewSchedule,
    TriggerSchedule,
    BackfillSchedule,
    BulkAction,
)
RESPONSES: tuple[type[BaseModel], ...] = (
    Error,
    Node,
    Identity,
    Run,
    RunList,
    BulkOutcome,
    MigrationPlan,
    Forked,
    DeletedRuns,
    History,
    WorkflowList,
    ScheduleList,
    Triggered,
    Backfilled,
    RateLimitList,
    LimitList,
)


def to_json(value: BaseModel | Sequence[BaseModel], *, indent: int | None = None) -> str:
    """A model (or a list of them) as JSON text; fields left unset (a leaf step's ``steps``)
    stay out."""
    if isinstance(value, BaseModel):
        return value.model_dump_json(indent=indent, exclude_unset=True)
    items = [v.model_dump(mode="json", exclude_unset=True) for v in value]
    return json.dumps(items, indent=indent, ensure_ascii=False)
