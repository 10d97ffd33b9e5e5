"""The fluent builder: ``treadle.new("order").step(...).if_(...)...build()``.

Builders are persistent values: every method returns a new builder and leaves the one it was
called on as it was, so ``base = new("w").step("a", f)`` may go on as ``base.step("b", g)`` and
``base.step("c", h)``, two independent definitions. The steps are a linked chain, newest first,
that later builders share: adding a step costs the same at the thousandth step as at the first.
:meth:`Builder.build` turns the chain into a frozen :class:`~treadle._nodes.Workflow` of tuples.
Every misuse raises :class:`~treadle.DefinitionError` at once, or at ``build()`` at the latest,
with a message that names the step.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Self, cast

from ._blocks import IfBuilder, LoopBuilder
from ._chain import _Chain, _Options
from ._checks import (
    _aware,
    _callable,
    _duration_or_dynamic,
    _nodes,
    _on_parent_end,
    _positive_duration,
    _positive_int,
    _step_name,
    _wait_name,
)
from ._concurrency import check_concurrency
from ._duration import Duration, parse_duration
from ._errors import DefinitionError
from ._mapbuilder import MapBuilder
from ._nodes import (
    ActionStep,
    ApprovalStep,
    Condition,
    LoopStep,
    Node,
    ParallelStep,
    SignalStep,
    SleepStep,
    StepFunc,
    StepLike,
    SubWorkflowStep,
    WaitStrategy,
    Workflow,
    check_on_failure,
    check_workflow_name,
    validate,
)
from ._params import Dynamic, is_dynamic
from ._rates import RateLimit
from ._retry import RetryPolicy
from ._state import State
from ._typed import check_model

__all__ = [
    "ApprovalBuilder",
    "Builder",
    "IfBuilder",
    "LoopBuilder",
    "MapBuilder",
    "ParallelBuilder",
    "SignalBuilder",
    "StepLike",
    "new",
]


def new(
    name: str,
    *,
    version: str | None = None,
    on_failure: str = "compensate",
    auto_upgrade: bool = False,
    input: type[Any] | None = None,
) -> Builder:
    """Start building a workflow called ``name`` (an id: see :func:`treadle.check_id`).

    ``version`` labels the definition for people (the fingerprint ``Workflow.id`` tells
    definitions apart either way); ``on_failure`` is what a step that fails for good does to
    the run, ``"compensate"`` (the saga) or ``"hold"`` (stop HELD for an operator); with
    ``auto_upgrade`` an engine moves runs of older definitions of this name onto this one when
    their position maps (see "Changing a workflow while runs are in flight" in API.md);
    ``input`` (a pydantic model class or a dataclass type) is what ``Engine.start`` validates
    the run's data against and what steps read as ``ctx.input`` (see "Typed data and codecs").
    """
    name = check_workflow_name(name)
    if version is not None and (not isinstance(version, str) or not version.strip()):
        raise DefinitionError(f"workflow {name!r}: version must be a non-empty string or None")
    check_on_failure(f"workflow {name!r}", on_failure)
    model = check_model(f"workflow {name!r}", input)
    return Builder(name, None, _Options(version, on_failure, bool(auto_upgrade), model))


class Builder:
    """Builds a workflow step by step. A builder never changes: every method returns a new
    builder with the step added, so one partial chain may be continued in several ways."""

    __slots__ = ("_chain", "_name", "_opts")

    def __init__(
        self, name: str, chain: _Chain | None = None, opts: _Options | None = None
    ) -> None:
        self._name = name
        self._chain = chain
        self._opts = opts or _Options()

    @property
    def name(self) -> str:
        """The name of the workflow being built."""
        return self._name

    def _link(self, node: Node) -> _Chain:
        return _Chain(node, self._chain)

    def _then(self, node: Node) -> Builder:
        return Builder(self._name, self._link(node), self._opts)

    def step(
        self,
        name: str,
        fn: StepFunc,
        *,
        compensate: StepFunc | None = None,
        retry: RetryPolicy | None = None,
        timeout: Duration | None = None,
        on_failure: str | None = None,
        rate_limit: RateLimit | None = None,
    ) -> Builder:
        """Add an :class:`ActionStep` that calls ``fn(ctx, state)`` (``on_failure``: this
        step's own ``"compensate"`` or ``"hold"``, else the workflow's; ``rate_limit``: a
        :class:`RateLimit` that every attempt takes a call of first)."""
        name = _step_name(self._name, "action", name)
        return self._then(
            ActionStep(
                name,
                fn,
                compensate=compensate,
                retry=retry,
                timeout=timeout,
                on_failure=on_failure,
                rate_limit=rate_limit,
            )
        )

    def then(self) -> Builder:
        """Read as "and then": adds nothing."""
        return self

    def deadline(self, duration: Duration) -> Builder:
        """Cancel every run of this workflow (compensating) with ``DeadlineExceeded`` once
        ``duration`` has passed since it started, unless it has ended; ``start(deadline=...)``
        may set another per run, and a child run inherits what is left of its parent's."""
        owner = f"workflow {self._name!r}"
        limit = _positive_duration(owner, "the deadline", duration)
        return Builder(self._name, self._chain, dataclasses.replace(self._opts, deadline=limit))

    def output(self, fn: Callable[[State], Any]) -> Builder:
        """Declare what a completed run returns: ``fn(state)`` (JSON), evaluated when the run
        completes, stored as its result (``State.result``, ``engine.result``)."""
        _callable(f"workflow {self._name!r}", "output", fn)
        return Builder(self._name, self._chain, dataclasses.replace(self._opts, output=fn))

    def retention(self, keep: Duration) -> Self:
        """Keep this workflow's finished runs for ``keep`` (``"90d"``, ``"1y"``, a timedelta...)
        after they ended, then delete them (this wins over ``Engine(retention=...)``). Not part
        of the fingerprint: changing it moves no run onto another definition."""
        owner = f"workflow {self._name!r}: retention"
        try:
            kept = parse_duration(keep, calendar=True)
        except ValueError as exc:
            raise DefinitionError(f"{owner}: {exc}") from None
        if kept <= timedelta(0):
            raise DefinitionError(f"{owner} must be more than 0 (leave it out to keep runs)")
        return type(self)(self._name, self._chain, dataclasses.replace(self._opts, retention=kept))

    def concurrency(
        self, limit: int, key: Dynamic | None = None, *, on_conflict: str = "queue"
    ) -> Self:
        """Let at most ``limit`` runs of this workflow execute at once, across every engine on
        the database, per ``key`` (a function of the state returning a str, computed once when
        a run first executes; None: one limit for the workflow). A run beyond the limit waits
        (``on_conflict="queue"``), ends CANCELLED at once (``"skip"``), or asks the holders to
        cancel and waits behind them (``"cancel_running"``)."""
        rule = check_concurrency(self._name, limit, key, on_conflict)
        opts = dataclasses.replace(self._opts, concurrency=rule)
        return type(self)(self._name, self._chain, opts)

    def singleton(self, key: Dynamic | None = None, *, on_conflict: str = "skip") -> Self:
        """At most one run at a time (per ``key``): ``concurrency(1, key, on_conflict=...)``,
        skipping a run that finds one executing unless told otherwise."""
        return self.concurrency(1, key, on_conflict=on_conflict)

    def if_(self, name: str, cond: Condition) -> IfBuilder[Builder]:
        """Open a conditional; follow with ``then(...)``, ``else_if``/``else_`` and ``end()``."""
        name = _step_name(self._name, "if", name)
        _callable(f"if {name!r}", "condition", cond)
        return IfBuilder(self, name, cond)

    def loop(self, name: str) -> LoopBuilder[Builder]:
        """Open a loop; give it ``for_each``/``while_``/``break_when``/``max_iterations``, a
        ``do(...)`` body, then ``end()``."""
        name = _step_name(self._name, "loop", name)
        return LoopBuilder(self, LoopStep(name, ()))

    def parallel(self, name: str, *steps: StepLike) -> ParallelBuilder:
        """Add branches that run concurrently (each a step or a built workflow); wait for all."""
        name = _step_name(self._name, "parallel", name)
        owner = f"parallel {name!r}"
        if not steps:
            raise DefinitionError(f"{owner} has no branches: give it at least one step")
        return ParallelBuilder(
            self._name, self._link(ParallelStep(name, _nodes(owner, steps))), self._opts
        )

    def await_signal(self, name: str) -> SignalBuilder:
        """Wait for the signal ``name`` (an id); its data lands at ``state.data[name]``."""
        name = _wait_name(self._name, "signal", name)
        return SignalBuilder(self._name, self._link(SignalStep(name)), self._opts)

    def await_approval(self, name: str, approvers: Sequence[str] | Dynamic = ()) -> ApprovalBuilder:
        """Wait for approval ``name`` (an id) by one of ``approvers`` (anyone when empty; a
        function of the state computes them when the step starts)."""
        name = _wait_name(self._name, "approval", name)
        owner = f"approval {name!r}"
        if is_dynamic(approvers):
            dynamic = ApprovalStep(name, cast(Dynamic, approvers))
            return ApprovalBuilder(self._name, self._link(dynamic), self._opts)
        if isinstance(approvers, str) or not isinstance(approvers, Sequence):
            raise DefinitionError(f"{owner}: approvers must be a list of names, not {approvers!r}")
        for who in approvers:
            if not isinstance(who, str) or not who:
                raise DefinitionError(f"{owner}: approver {who!r} is not a non-empty string")
        node = ApprovalStep(name, tuple(dict.fromkeys(approvers)))
        return ApprovalBuilder(self._name, self._link(node), self._opts)

    def sub_workflow(
        self,
        name: str,
        workflow_name: str | Dynamic,
        input: Mapping[str, Any] | Dynamic | None = None,
        *,
        on_parent_end: str = "cancel",
    ) -> Builder:
        """Start a child run of ``workflow_name`` with ``input`` as its data, and wait for it
        (either may be a function of the state; inside a ``for_each`` or a parallel map,
        ``input`` may be ``fn(state, item)`` of the element); ``on_parent_end``: ``"cancel"`` the
        child or ``"abandon"`` it when this run ends first."""
        name = _step_name(self._name, "sub-workflow", name)
        owner = f"sub-workflow {name!r}"
        policy = _on_parent_end(owner, on_parent_end)
        try:
            if not is_dynamic(workflow_name):
                check_workflow_name(workflow_name)
        except DefinitionError as exc:
            raise DefinitionError(f"{owner}: {exc}") from None
        if is_dynamic(input):
            return self._then(SubWorkflowStep(name, workflow_name, input, policy))
        if input is not None and not isinstance(input, Mapping):
            raise DefinitionError(
                f"{owner}: input must be a dict, a function of the state or None, not {input!r}"
            )
        try:
            # A JSON round trip checks the input and detaches it from the caller's dict.
            frozen = None if input is None else json.loads(json.dumps(dict(input), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise DefinitionError(f"{owner}: input is not JSON-serialisable: {exc}") from None
        return self._then(SubWorkflowStep(name, workflow_name, frozen, policy))

    def sleep(self, name: str, duration: Duration | Dynamic) -> Builder:
        """Wait durably for ``duration`` (a timer that survives a restart; a function of the
        state computes it when the step starts)."""
        name = _step_name(self._name, "sleep", name)
        wait = _duration_or_dynamic(f"sleep {name!r}", duration)
        return self._then(SleepStep(name, wait))  # type: ignore[arg-type]

    def sleep_until(self, name: str, when: datetime | Dynamic) -> Builder:
        """Wait durably until ``when``: a timezone-aware datetime, or a function of the state
        that computes one when the step starts (a time already past does not wait)."""
        name = _step_name(self._name, "sleep", name)
        at = _aware(f"sleep_until {name!r}", when)
        return self._then(SleepStep(name, None, at))  # type: ignore[arg-type]

    def build(self) -> Workflow:
        """Check the definition and return it as a frozen :class:`Workflow`."""
        if self._chain is None:
            raise DefinitionError(f"workflow {self._name!r} has no steps")
        steps = self._chain.nodes()
        for node in steps:
            if (
                isinstance(node, ParallelStep)
                and node.strategy is WaitStrategy.COUNT
                and node.count is None
            ):
                raise DefinitionError(
                    f"parallel {node.name!r}: wait_for(WaitCount) needs wait_count(n)"
                )
        opts = self._opts
        workflow = Workflow(
            self._name,
            steps,
            version=opts.version,
            on_failure=opts.on_failure,
            auto_upgrade=opts.auto_upgrade,
            input=opts.input,
            deadline=opts.deadline,
            output=opts.output,
            retention=opts.retention,
            concurrency=opts.concurrency,
        )
        validate(workflow)
        return workflow


class _OptionBuilder(Builder):
    """A builder whose last step takes options: each option gives a builder whose last step is
    that step with the option set."""

    __slots__ = ()

    def _node(self) -> Node:
        assert self._chain is not None
        return self._chain.node

    def _with(self, **changes: Any) -> Self:
        assert self._chain is not None
        node = dataclasses.replace(self._node(), **changes)
        return type(self)(self._name, _Chain(node, self._chain.before), self._opts)


class ParallelBuilder(_OptionBuilder):
    """Options of a ``parallel`` step, and every :class:`Builder` method to go on."""

    __slots__ = ()

    def _parallel(self) -> ParallelStep:
        node = self._node()
        assert isinstance(node, ParallelStep)
        return node

    def wait_for(self, strategy: WaitStrategy | str) -> ParallelBuilder:
        """Complete on ``WaitAll`` (default), ``WaitAny`` or ``WaitCount`` (with ``wait_count``)."""
        node = self._parallel()
        try:
            chosen = WaitStrategy(strategy)
        except ValueError:
            raise DefinitionError(
                f"parallel {node.name!r}: {strategy!r} is not a wait strategy "
                f"(WaitAll, WaitAny or WaitCount)"
            ) from None
        count = node.count if chosen is WaitStrategy.COUNT else None
        return self._with(strategy=chosen, count=count)

    def wait_count(self, n: int) -> ParallelBuilder:
        """Complete when ``n`` branches complete (implies ``WaitCount``)."""
        node = self._parallel()
        owner = f"parallel {node.name!r}"
        n = _positive_int(owner, "wait_count", n)
        if n > len(node.branches):
            raise DefinitionError(
                f"{owner}: wait_count({n}) is more than its {len(node.branches)} branches"
            )
        return self._with(strategy=WaitStrategy.COUNT, count=n)

    def compensate_losers(self) -> ParallelBuilder:
        """Once the step succeeds (``WaitAny``/``WaitCount``), undo the completed steps of the
        branches that lost, in reverse order (their children are ended by ``on_parent_end``)."""
        return self._with(compensate_losers=True)


class SignalBuilder(_OptionBuilder):
    """Options of an ``await_signal`` step, and every :class:`Builder` method to go on."""

    __slots__ = ()

    def timeout(self, duration: Duration | Dynamic) -> SignalBuilder:
        """Fail the step with ``WaitTimeout`` if the signal has not come within ``duration``
        (a function of the state computes it when the step starts)."""
        return self._with(timeout=_duration_or_dynamic(f"signal {self._node().name!r}", duration))


class ApprovalBuilder(_OptionBuilder):
    """Options of an ``await_approval`` step, and every :class:`Builder` method to go on."""

    __slots__ = ()

    def timeout(self, duration: Duration | Dynamic) -> ApprovalBuilder:
        """Fail the step with ``WaitTimeout`` if no decision has come within ``duration``
        (a function of the state computes it when the step starts)."""
        owner = f"approval {self._node().name!r}"
        return self._with(timeout=_duration_or_dynamic(owner, duration))

    def quorum(self, n: int | Dynamic) -> ApprovalBuilder:
        """Require ``n`` distinct approvers to approve (a function of the state computes it
        when the step starts; more than the approvers there are then fails the step)."""
        node = self._node()
        assert isinstance(node, ApprovalStep)
        owner = f"approval {node.name!r}"
        if is_dynamic(n):
            return self._with(quorum=n)
        n = _positive_int(owner, "quorum", n)
        if isinstance(node.approvers, tuple) and node.approvers and n > len(node.approvers):
            raise DefinitionError(
                f"{owner}: quorum({n}) is more than its {len(node.approvers)} approvers"
            )
        return self._with(quorum=n)
