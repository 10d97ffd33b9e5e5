"""The step tree: immutable nodes that the builder produces and the interpreter walks.

Every node has a ``name`` unique among the steps of its workflow definition, nested workflows
and their steps included (the root workflow's own name is not a step name); the interpreter keys
its checkpoints by the path of names from the root and finds a step by its name on recovery.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Protocol, TypeAlias, runtime_checkable

from ._concurrency import Concurrency
from ._duration import Duration, parse_duration
from ._errors import DefinitionError, InvalidId
from ._ids import check_id
from ._params import Dynamic, is_dynamic
from ._rates import RateLimit, check_consistent, rate_limits
from ._retry import RetryPolicy
from ._state import Context, State
from ._typed import model_name

StepFunc = Callable[[Context, State], Any]
"""A step function: ``fn(ctx, state)``, plain or ``async``; a non-None result is stored."""

Condition = Callable[[State], "bool | Awaitable[bool]"]
"""A condition of ``if_``/``while_``/``break_when``: ``cond(state) -> bool`` (may be async)."""


@runtime_checkable
class Step(Protocol):
    """A user's own step: anything with a name and an ``execute`` coroutine, run as one unit
    (one checkpoint). treadle's nodes other than :class:`ActionStep` (a built
    :class:`Workflow`, an ``if_``, a loop...) do not satisfy it: only the engine runs them."""

    name: str

    async def execute(self, ctx: Context, state: State) -> None:
        """Run the step; change the run's data through ``state.data``."""


class WaitStrategy(Enum):
    """When a ``parallel`` step is complete."""

    ALL = "all"
    ANY = "any"
    COUNT = "count"


WaitAll = WaitStrategy.ALL
WaitAny = WaitStrategy.ANY
WaitCount = WaitStrategy.COUNT


ON_PARENT_END = ("cancel", "abandon")
"""What becomes of a child run when its parent ends first (fails, is cancelled, passes its
deadline, or the ``parallel`` branch waiting on it loses): ``"cancel"`` it (the default) or
``"abandon"`` it (it runs on, unowned)."""

ON_FAILURE = ("compensate", "hold")
"""What a step that fails for good does to its run: ``"compensate"`` (undo the completed steps
and end FAILED, the saga) or ``"hold"`` (stop the run HELD for an operator, nothing undone)."""


def check_on_failure(owner: str, value: object) -> None:
    """Raise :class:`DefinitionError` unless ``value`` is one of :data:`ON_FAILURE`."""
    if value not in ON_FAILURE:
        raise DefinitionError(f"{owner}: on_failure must be 'compensate' or 'hold', not {value!r}")


@dataclass(frozen=True)
class ActionStep:
    """A step that calls a function; the unit of work, retry and compensation.

    ``on_failure`` (``"compensate"`` or ``"hold"``) overrides the workflow's for this step.
    ``rate_limit``: every attempt first takes a call of this :class:`RateLimit` (waiting,
    parked, until it may).
    """

    name: str
    action: StepFunc
    compensate: StepFunc | None = None
    retry: RetryPolicy | None = None
    timeout: Duration | None = None
    on_failure: str | None = None
    rate_limit: RateLimit | None = None

    kind = "action"

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not callable(self.action):
            raise DefinitionError(f"step {self.name!r}: action {self.action!r} is not callable")
        if self.compensate is not None and not callable(self.compensate):
            raise DefinitionError(f"step {self.name!r}: compensate is not callable")
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise DefinitionError(f"step {self.name!r}: retry must be a RetryPolicy")
        if self.timeout is not None:
            try:
                object.__setattr__(self, "timeout", parse_duration(self.timeout))
            except ValueError as exc:
                raise DefinitionError(f"step {self.name!r}: {exc}") from None
        if self.on_failure is not None:
            check_on_failure(f"step {self.name!r}", self.on_failure)
        if self.rate_limit is not None and not isinstance(self.rate_limit, RateLimit):
            raise DefinitionError(
                f"step {self.name!r}: rate_limit must be a treadle.RateLimit, "
                f"not {self.rate_limit!r}"
            )

    @property
    def timeout_seconds(self) -> float | None:
        """The per-attempt timeout in seconds, or None."""
        return self.timeout.total_seconds() if isinstance(self.timeout, timedelta) else None

    async def execute(self, ctx: Context, state: State) -> None:
        """Call the action once (no retry); useful to unit-test a step on its own."""
        from ._calls import call_step

        result = await call_step(self.action, ctx, state, None)
        if result is not None:
            state.data[self.name] = result


def step(
    name: str,
    fn: StepFunc,
    *,
    compensate: StepFunc | None = None,
    retry: RetryPolicy | None = None,
    timeout: Duration | None = None,
    on_failure: str | None = None,
    rate_limit: RateLimit | None = None,
) -> ActionStep:
    """Make an :class:`ActionStep` for ``then``/``else_``/``do``/``parallel``."""
    return ActionStep(
        name,
        fn,
        compensate=compensate,
        retry=retry,
        timeout=timeout,
        on_failure=on_failure,
        rate_limit=rate_limit,
    )


@dataclass(frozen=True)
class CustomStep:
    """A user object that satisfies :class:`Step`, run as one unit."""

    name: str
    target: Step
    kind = "custom"


@dataclass(frozen=True)
class Branch:
    """One arm of an ``if_``: a condition (None for ``else_``) and its steps."""

    cond: Condition | None
    steps: tuple[Node, ...]


@dataclass(frozen=True)
class IfStep:
    """``if_``/``else_if``/``else_``: the first arm whose condition holds runs."""

    name: str
    branches: tuple[Branch, ...]
    kind = "if"


@dataclass(frozen=True)
class LoopStep:
    """A loop over a list (``for_each``) or while a condition holds."""

    name: str
    body: tuple[Node, ...]
    for_each: str | None = None
    while_: Condition | None = None
    break_when: Condition | None = None
    max_iterations: int | None = None
    kind = "loop"


@dataclass(frozen=True)
class ParallelStep:
    """Branches that run concurrently; complete when the wait strategy is met."""

    name: str
    branches: tuple[Node, ...]
    strategy: WaitStrategy = WaitStrategy.ALL
    count: int | None = None
    #: Undo the completed steps of the branches that lost, once the parallel step succeeds.
    compensate_losers: bool = False
    kind = "parallel"

    @property
    def needed(self) -> int:
        """How many branches must complete."""
        if self.strategy is WaitStrategy.ALL:
            return len(self.branches)
        if self.strategy is WaitStrategy.ANY:
            return 1
        return self.count or len(self.branches)


@dataclass(frozen=True)
class MapStep:
    """A parallel map (``loop(...).for_each(key).parallel(max=n)``): the body runs once per
    element of the list at ``data[over]``, at most ``max`` at a time, until the wait strategy
    is met; under ``WaitAll``, up to ``tolerate`` failed iterations (a count, or a fraction of
    the elements) do not fail it. The results go to ``data[name]``, a list."""

    name: str
    body: tuple[Node, ...]
    over: str
    max: int = 10
    strategy: WaitStrategy = WaitStrategy.ALL
    count: int | None = None
    tolerate: int | float | None = None
    kind = "map"

    def needed(self, total: int) -> int:
        """How many of ``total`` iterations must complete."""
        if self.strategy is WaitStrategy.ANY:
            return 1
        if self.strategy is WaitStrategy.COUNT:
            return self.count or total
        return total - self.tolerated(total)

    def tolerated(self, total: int) -> int:
        """How many of ``total`` iterations may fail."""
        if self.strategy is not WaitStrategy.ALL:
            return total - self.needed(total)
        if isinstance(self.tolerate, float):
            return math.floor(self.tolerate * total)
        return min(self.tolerate or 0, total)


@dataclass(frozen=True)
class SignalStep:
    """Wait for a signal; its data lands at ``state.data[name]``."""

    name: str
    timeout: timedelta | Dynamic | None = None
    kind = "signal"


@dataclass(frozen=True)
class ApprovalStep:
    """Wait for ``quorum`` distinct approvers (or one rejection)."""

    name: str
    approvers: tuple[str, ...] | Dynamic
    quorum: int | Dynamic = 1
    timeout: timedelta | Dynamic | None = None
    kind = "approval"


@dataclass(frozen=True)
class SubWorkflowStep:
    """Start a child run of another workflow and wait for it; ``on_parent_end`` (see
    :data:`ON_PARENT_END`) says what becomes of the child if the parent ends first."""

    name: str
    workflow_name: str | Dynamic
    input: Any = None
    on_parent_end: str = "cancel"
    kind = "subworkflow"


@dataclass(frozen=True)
class SleepStep:
    """A durable timer: for ``duration``, or until the absolute time ``until``."""

    name: str
    duration: timedelta | Dynamic | None
    until: datetime | Dynamic | None = None
    kind = "sleep"


@dataclass(frozen=True)
class Workflow:
    """A built workflow: a named sequence of steps, itself usable as a step of another one
    (a :data:`StepLike`, not a :class:`Step`: it has no ``execute``; the engine runs it).

    ``id`` is the fingerprint of the definition's shape: names, kinds and every option that
    changes what happens at a position (timeouts, retries, ``on_failure``, the ``version``
    label), not code. ``version`` is a label for people (``treadle.new("order",
    version="2026-12")``); ``on_failure`` is what a step that fails for good does (see
    :data:`ON_FAILURE`; a step's own setting wins); ``auto_upgrade`` lets an engine move runs of
    older definitions of this name onto this one when their position maps (not part of the
    fingerprint: it is how runs are deployed, not what they do). ``input`` is the model that
    starts validate the run's data against (``treadle.new(name, input=Model)``); its
    qualified name is part of the shape, and of the fingerprint, only when it is set.
    ``retention`` is how long its finished runs are kept (``.retention("1y")``; None: as the
    engine says); like ``auto_upgrade`` it is not part of the shape or the fingerprint, and
    neither is ``concurrency`` (see :mod:`treadle._concurrency`).
    """

    name: str
    steps: tuple[Node, ...]
    id: str = field(default="", compare=False)
    version: str | None = None
    on_failure: str = "compensate"
    auto_upgrade: bool = field(default=False, compare=False)
    input: type[Any] | None = field(default=None, compare=False)
    #: How long a run may take before it is cancelled with ``DeadlineExceeded``.
    deadline: timedelta | None = None
    #: What a completed run returns (``State.result``): ``output(state)``, or None.
    output: Callable[[State], Any] | None = field(default=None, compare=False)
    retention: timedelta | None = field(default=None, compare=False)
    #: The concurrency limit of its runs (``.concurrency(...)``; not part of the fingerprint).
    concurrency: Concurrency | None = field(default=None, compare=False)
    kind = "workflow"

    def __post_init__(self) -> None:
        check_on_failure(f"workflow {self.name!r}", self.on_failure)
        if not self.id:
            object.__setattr__(self, "id", fingerprint(self))

    @property
    def legacy_id(self) -> str:
        """The fingerprint that treadle gave this definition before fingerprints covered
        timeouts, retry backoffs, ``on_failure`` and labels: runs stored under it are this
        definition's runs."""
        return fingerprint(self, legacy=True)

    def nodes(self) -> Iterator[Node]:
        """Every node below this workflow, depth first, in definition order."""
        yield from walk(self.steps)

    def describe(self) -> dict[str, Any]:
        """The definition's shape as JSON (for storage, diagrams and fingerprints)."""
        return describe(self)


Node = (
    ActionStep
    | CustomStep
    | IfStep
    | LoopStep
    | ParallelStep
    | SignalStep
    | ApprovalStep
    | SubWorkflowStep
    | SleepStep
    | Workflow
    | MapStep
)


StepLike: TypeAlias = Node | Step
"""What ``then``/``else_``/``do``/``parallel`` accept: any node (an :class:`ActionStep`, a built
:class:`Workflow`...) or a user object satisfying :class:`Step`; ``isinstance(x, StepLike)``
tells."""


def children(node: Node) -> tuple[Node, ...]:
    """The direct children of a node."""
    if isinstance(node, Workflow):
        return node.steps
    if isinstance(node, IfStep):
        return tuple(s for b in node.branches for s in b.steps)
    if isinstance(node, LoopStep | MapStep):
        return node.body
    if isinstance(node, ParallelStep):
        return node.branches
    return ()


def walk(nodes: tuple[Node, ...]) -> Iterator[Node]:
    """Every node in ``nodes`` and below, depth first."""
    for node in nodes:
        yield node
        yield from walk(children(node))


def as_node(obj: object) -> Node:
    """Accept a step given to the builder: a node, or a user object satisfying :class:`Step`."""
    if isinstance(obj, Node):
        return obj
    if isinstance(obj, Step) and isinstance(getattr(obj, "name", None), str):
        return CustomStep(obj.name, obj)
    raise DefinitionError(
        f"{obj!r} is not a step: use treadle.step(name, fn), ActionStep, a built workflow, "
        f"or an object with a 'name' and an async 'execute(ctx, state)'"
    )


def is_step_name(name: object) -> bool:
    """Whether ``name`` may name a step: a non-empty string without ``/`` or ``#`` (they are
    the separators of checkpoint paths)."""
    return isinstance(name, str) and bool(name.strip()) and not any(c in name for c in "/#")


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise DefinitionError(f"a step name must be a non-empty string, not {name!r}")
    if not is_step_name(name):
        raise DefinitionError(f"step name {name!r} may not contain '/' or '#'")


def check_workflow_name(name: object) -> str:
    """Return ``name`` if it may name a workflow (an id); else raise :class:`DefinitionError`
    naming it and the rule."""
    try:
        return check_id(name, "workflow name")
    except InvalidId as exc:
        raise DefinitionError(str(exc)) from None


def validate(workflow: Workflow) -> None:
    """Check what the builder cannot check node by node: names, and that step names are unique.

    Step names are unique among all the steps below ``workflow`` (a nested workflow's name is a
    step name too, and so are its steps'); ``workflow``'s own name is not a step name. Workflow,
    signal and approval names are ids (:func:`treadle.check_id`).
    """
    check_workflow_name(workflow.name)
    seen: set[str] = set()
    for node in workflow.nodes():
        _check_name(node.name)
        if node.name in seen:
            raise DefinitionError(
                f"workflow {workflow.name!r}: step name {node.name!r} is used twice; "
                f"names must be unique among the steps of a definition"
            )
        seen.add(node.name)
        try:
            if isinstance(node, SignalStep | ApprovalStep):
                check_id(node.name, f"{node.kind} name")
            elif isinstance(node, Workflow):
                check_id(node.name, "workflow name")
            elif isinstance(node, SubWorkflowStep) and isinstance(node.workflow_name, str):
                check_id(node.workflow_name, "workflow name")
        except InvalidId as exc:
            owner = f"workflow {workflow.name!r}: step {node.name!r}"
            raise DefinitionError(f"{owner}: {exc}") from None
    check_consistent(rate_limits(workflow))


def _callable_name(fn: object) -> str | None:
    if fn is None:
        return None
    return getattr(fn, "__qualname__", type(fn).__name__)


def describe(node: Node, *, legacy: bool = False) -> dict[str, Any]:
    """The shape of a node and its children, as JSON-ready data (``legacy``: as treadle wrote it
    before the shape covered timeouts, retry backoffs, ``on_failure`` and labels)."""
    out: dict[str, Any] = {"name": node.name, "kind": node.kind}
    computed = sorted(dynamic_params(node))
    if computed:  # absent otherwise: fingerprints stay as they were
        out["dynamic"] = computed
    if isinstance(node, ActionStep):
        out["fn"] = _callable_name(node.action)
        out["compensate"] = _callable_name(node.compensate)
        if node.retry is not None:
            out["retry"] = _static(node.retry.max_attempts)
        if not legacy:
            if node.retry is not None:
                out["backoff"] = [
                    node.retry.initial_wait.total_seconds(),
                    node.retry.max_wait.total_seconds(),
                    node.retry.multiplier,
                ]
                out["retry_on"] = _callable_name(node.retry.retry_on)
            out["timeout"] = node.timeout_seconds
            if node.on_failure is not None:
                out["on_failure"] = node.on_failure
            if node.rate_limit is not None:  # absent otherwise: fingerprints stay as they were
                out["rate_limit"] = node.rate_limit.name
    elif isinstance(node, IfStep):
        out["branches"] = [
            {"else": b.cond is None, "steps": [describe(s, legacy=legacy) for s in b.steps]}
            for b in node.branches
        ]
    elif isinstance(node, LoopStep):
        out.update(
            for_each=node.for_each,
            has_while=node.while_ is not None,
            has_break=node.break_when is not None,
            max_iterations=node.max_iterations,
            steps=[describe(s, legacy=legacy) for s in node.body],
        )
    elif isinstance(node, MapStep):
        out.update(
            for_each=node.over,
            max=node.max,
            strategy=node.strategy.value,
            count=node.count,
            tolerate=node.tolerate,
            steps=[describe(s, legacy=legacy) for s in node.body],
        )
    elif isinstance(node, ParallelStep):
        out.update(
            strategy=node.strategy.value,
            needed=node.needed,
            branches=[describe(s, legacy=legacy) for s in node.branches],
        )
        if node.compensate_losers:
            out["compensate_losers"] = True
    elif isinstance(node, SignalStep | ApprovalStep | SleepStep):
        timeout = node.duration if isinstance(node, SleepStep) else node.timeout
        out["timeout"] = timeout.total_seconds() if isinstance(timeout, timedelta) else None
        if isinstance(node, ApprovalStep):
            approvers = node.approvers
            out.update(
                approvers=list(approvers) if isinstance(approvers, tuple) else [],
                quorum=_static(node.quorum),
            )
        if isinstance(node, SleepStep) and node.until is not None:
            out["until"] = node.until.isoformat() if isinstance(node.until, datetime) else None
    elif isinstance(node, SubWorkflowStep):
        out["workflow"] = _static(node.workflow_name)
        if node.on_parent_end != "cancel":
            out["on_parent_end"] = node.on_parent_end
    elif isinstance(node, Workflow):
        if not legacy:
            out.update(version=node.version, on_failure=node.on_failure)
            if node.input is not None:  # absent otherwise: fingerprints stay as they were
                out["input"] = model_name(node.input)
            if node.deadline is not None:
                out["deadline"] = node.deadline.total_seconds()
            if node.output is not None:
                out["output"] = _callable_name(node.output)
        out["steps"] = [describe(s, legacy=legacy) for s in node.steps]
    return out


def dynamic_params(node: Node) -> dict[str, Dynamic]:
    """The parameters of ``node`` given as functions of the state, by their recorded name."""
    fields: dict[str, object] = {}
    if isinstance(node, SignalStep):
        fields = {"timeout": node.timeout}
    elif isinstance(node, ApprovalStep):
        fields = {"approvers": node.approvers, "quorum": node.quorum, "timeout": node.timeout}
    elif isinstance(node, SleepStep):
        fields = {"duration": node.duration, "until": node.until}
    elif isinstance(node, SubWorkflowStep):
        fields = {"workflow": node.workflow_name, "input": node.input}
    elif isinstance(node, ActionStep) and node.retry is not None:
        fields = {"attempts": node.retry.max_attempts}
    return {name: value for name, value in fields.items() if is_dynamic(value)}  # type: ignore[misc]


def _static(value: object) -> Any:
    """A parameter as the shape shows it: its value, or None when it is computed per run."""
    return None if is_dynamic(value) else value


def fingerprint(workflow: Workflow, *, legacy: bool = False) -> str:
    """A short stable hash of a workflow's shape (``legacy``: of its legacy shape)."""
    text = json.dumps(describe(workflow, legacy=legacy), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
