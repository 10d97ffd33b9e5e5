"""treadle: a durable workflow engine for Python.

Build a workflow with :func:`new`, register it with an :class:`Engine` on a persistence
(:class:`SQLitePersistence` by default in files, :class:`PostgresPersistence` to scale out), and
start runs (from threads without an event loop, through the blocking :class:`SyncEngine`). Every
completed step is a checkpoint: kill the process at any moment and the runs go on from where they
were when an engine starts again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._builder import (
    ApprovalBuilder,
    Builder,
    IfBuilder,
    LoopBuilder,
    MapBuilder,
    ParallelBuilder,
    SignalBuilder,
    new,
)
from ._clock import Clock, FakeClock, RealClock
from ._codec import Codec
from ._duration import Duration, parse_duration
from ._engine import (
    Client,
    Engine,
    MigrationPlan,
    PruneReport,
    RunControl,
    SyncClient,
    SyncEngine,
)
from ._engine.bulk import BulkResult
from ._errors import (
    ApprovalRejected,
    CodecError,
    DataError,
    DeadlineExceeded,
    DefinitionError,
    DefinitionMismatch,
    EngineNotOpen,
    InvalidId,
    InvalidTransition,
    LeaseLost,
    NonRetryableError,
    NotAnApprover,
    PersistenceError,
    RunExists,
    RunNotFound,
    SchemaVersionError,
    StepTimeout,
    SubWorkflowFailed,
    TreadleError,
    UnknownApproval,
    UnknownSignal,
    WaitTimeout,
    WorkflowNotFound,
    WrongEventLoop,
)
from ._ids import check_id
from ._logging import RunContextFilter, configure_logging
from ._nodes import (
    ActionStep,
    Condition,
    Step,
    StepFunc,
    StepLike,
    WaitAll,
    WaitAny,
    WaitCount,
    WaitStrategy,
    Workflow,
    step,
)
from ._rates import RateLimit
from ._retry import RetryPolicy, new_retry_policy
from ._search import RunFilter, RunPage
from ._state import Context, Event, State, Status
from .persistence import MemoryPersistence, Persistence, SQLitePersistence, persistence_from_url
from .persistence._rates import RateLimitState
from .persistence._records import LimitUse

if TYPE_CHECKING:
    from .cron import Cron, CronError, Schedule, ScheduleExists, ScheduleNotFound, next_fire
    from .persistence._postgres import PostgresPersistence


_CRON = ("Cron", "CronError", "Schedule", "ScheduleExists", "ScheduleNotFound", "next_fire")


def __getattr__(name: str) -> Any:
    # Cron and PostgreSQL load on first use, so that importing treadle stays light.
    if name == "PostgresPersistence":
        from .persistence._postgres import PostgresPersistence

        return PostgresPersistence
    if name in _CRON:
        from . import cron

        return getattr(cron, name)
    raise AttributeError(f"module 'treadle' has no attribute {name!r}")


__all__ = [
    "ActionStep",
    "ApprovalBuilder",
    "ApprovalRejected",
    "Builder",
    "BulkResult",
    "Client",
    "Clock",
    "Codec",
    "CodecError",
    "Condition",
    "Context",
    "Cron",
    "CronError",
    "DataError",
    "DeadlineExceeded",
    "DefinitionError",
    "DefinitionMismatch",
    "Duration",
    "Engine",
    "EngineNotOpen",
    "Event",
    "FakeClock",
    "IfBuilder",
    "InvalidId",
    "InvalidTransition",
    "LeaseLost",
    "LimitUse",
    "LoopBuilder",
    "MapBuilder",
    "MemoryPersistence",
    "MigrationPlan",
    "NonRetryableError",
    "NotAnApprover",
    "ParallelBuilder",
    "Persistence",
    "PersistenceError",
    "PostgresPersistence",
    "PruneReport",
    "RateLimit",
    "RateLimitState",
    "RealClock",
    "RetryPolicy",
    "RunContextFilter",
    "RunControl",
    "RunExists",
    "RunFilter",
    "RunNotFound",
    "RunPage",
    "SQLitePersistence",
    "Schedule",
    "ScheduleExists",
    "ScheduleNotFound",
    "SchemaVersionError",
    "SignalBuilder",
    "State",
    "Status",
    "Step",
    "StepFunc",
    "StepLike",
    "StepTimeout",
    "SubWorkflowFailed",
    "SyncClient",
    "SyncEngine",
    "TreadleError",
    "UnknownApproval",
    "UnknownSignal",
    "WaitAll",
    "WaitAny",
    "WaitCount",
    "WaitStrategy",
    "WaitTimeout",
    "Workflow",
    "WorkflowNotFound",
    "WrongEventLoop",
    "check_id",
    "configure_logging",
    "new",
    "new_retry_policy",
    "next_fire",
    "parse_duration",
    "persistence_from_url",
    "step",
]
