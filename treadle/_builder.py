"""The fluent builder: ``treadle.new("order").step(...).if_(...)...build()``.

A :class:`Builder` collects steps in a private draft and adds to it in place: each method returns
a builder over the same draft, so a chain reads top to bottom. :meth:`Builder.build` takes a
frozen snapshot (a :class:`~treadle._nodes.Workflow` of tuples), so a workflow already built never
changes when its builder goes on. Every misuse raises :class:`~treadle.DefinitionError` at once,
or at ``build()`` at the latest, with a message that names the step.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from ._duration import Duration, parse_duration
from ._errors import DefinitionError
from ._nodes import (
    ActionStep,
    ApprovalStep,
    Branch,
    Condition,
    IfStep,
    LoopStep,
    Node,
    ParallelStep,
    SignalStep,
    SleepStep,
    Step,
    StepFunc,
    SubWorkflowStep,
    WaitStrategy,
    Workflow,
    as_node,
    validate,
)
from ._retry import RetryPolicy

__all__ = [
    "ApprovalBuilder",
    "Builder",
    "IfBuilder",
    "LoopBuilder",
    "ParallelBuilder",
    "SignalBuilder",
    "StepLike",
    "new",
]

StepLike: TypeAlias = Node | Step
"""What ``then``/``else_``/``do``/``parallel`` accept: a node, a built workflow, or a user step."""


def new(name: str) -> Builder:
    """Start building a workflow called ``name``."""
    if not _is_name(name):
        raise DefinitionError(f"a workflow name must be a non-empty string, not {name!r}")
    return Builder(_Draft(name))


def _is_name(name: object) -> bool:
    return isinstance(name, str) and bool(name.strip()) and not any(c in name for c in "/#")


class _Draft:
    """The mutable state that one chain of builders shares: the steps so far, the open block."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.steps: list[Node] = []
        self.open: IfBuilder | LoopBuilder | None = None

    def check_closed(self, doing: str) -> None:
        if self.open is not None:
            raise DefinitionError(
                f"workflow {self.name!r}: {self.open.describe_open()} is still open; "
                f"call end() on it before {doing}"
            )

    def check_name(self, kind: str, name: object) -> str:
        if not _is_name(name):
            raise DefinitionError(
                f"workflow {self.name!r}: a {kind} step name must be a non-empty string "
                f"without '/' or '#', not {name!r}"
            )
        assert isinstance(name, str)
        return name

    def add(self, node: Node) -> int:
        self.check_closed(f"adding step {node.name!r}")
        self.steps.append(node)
        return len(self.steps) - 1


def _nodes(owner: str, steps: Sequence[object]) -> tuple[Node, ...]:
    try:
        return tuple(as_node(s) for s in steps)
    except DefinitionError as exc:
        raise DefinitionError(f"{owner}: {exc}") from None


def _callable(owner: str, what: str, fn: object) -> None:
    if not callable(fn):
        raise DefinitionError(f"{owner}: {what} {fn!r} is not callable")


def _duration(owner: str, value: object) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise DefinitionError(f"{owner}: {exc}") from None


def _positive_int(owner: str, what: str, n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DefinitionError(f"{owner}: {what} must be an integer >= 1, not {n!r}")
    return n


class Builder:
    """Builds a workflow step by step; every method adds to it and returns a builder to go on."""

    def __init__(self, draft: _Draft) -> None:
        self._draft = draft

    def _go_on(self) -> Builder:
        return self if type(self) is Builder else Builder(self._draft)

    @property
    def name(self) -> str:
        """The name of the workflow being built."""
        return self._draft.name

    def step(
        self,
        name: str,
        fn: StepFunc,
        *,
        compensate: StepFunc | None = None,
        retry: RetryPolicy | None = None,
        timeout: Duration | None = None,
    ) -> Builder:
        """Add an :class:`ActionStep` that calls ``fn(ctx, state)``."""
        name = self._draft.check_name("action", name)
        node = ActionStep(name, fn, compensate=compensate, retry=retry, timeout=timeout)
        self._draft.add(node)
        return self._go_on()

    def then(self) -> Builder:
        """Read as "and then": adds nothing."""
        return self

    def if_(self, name: str, cond: Condition) -> IfBuilder:
        """Open a conditional; follow with ``then(...)``, ``else_if``/``else_`` and ``end()``."""
        name = self._draft.check_name("if", name)
        self._draft.check_closed(f"opening if {name!r}")
        _callable(f"if {name!r}", "condition", cond)
        block = IfBuilder(self._draft, self._go_on(), name, cond)
        self._draft.open = block
        return block

    def loop(self, name: str) -> LoopBuilder:
        """Open a loop; give it ``for_each``/``while_``/``break_when``/``max_iterations``, a
        ``do(...)`` body, then ``end()``."""
        name = self._draft.check_name("loop", name)
        self._draft.check_closed(f"opening loop {name!r}")
        block = LoopBuilder(self._draft, self._go_on(), name)
        self._draft.open = block
        return block

    def parallel(self, name: str, *steps: StepLike) -> ParallelBuilder:
        """Add branches that run concurrently (each a step or a built workflow); wait for all."""
        name = self._draft.check_name("parallel", name)
        owner = f"parallel {name!r}"
        if not steps:
            raise DefinitionError(f"{owner} has no branches: give it at least one step")
        index = self._draft.add(ParallelStep(name, _nodes(owner, steps)))
        return ParallelBuilder(self._draft, index)

    def await_signal(self, name: str) -> SignalBuilder:
        """Wait for the signal ``name``; its data lands at ``state.data[name]``."""
        name = self._draft.check_name("signal", name)
        return SignalBuilder(self._draft, self._draft.add(SignalStep(name)))

    def await_approval(self, name: str, approvers: Sequence[str] = ()) -> ApprovalBuilder:
        """Wait for approval ``name`` by one of ``approvers`` (anyone when empty)."""
        name = self._draft.check_name("approval", name)
        owner = f"approval {name!r}"
        if isinstance(approvers, str) or not isinstance(approvers, Sequence):
            raise DefinitionError(f"{owner}: approvers must be a list of names, not {approvers!r}")
        for who in approvers:
            if not isinstance(who, str) or not who:
                raise DefinitionError(f"{owner}: approver {who!r} is not a non-empty string")
        node = ApprovalStep(name, tuple(dict.fromkeys(approvers)))
        return ApprovalBuilder(self._draft, self._draft.add(node))

    def sub_workflow(
        self, name: str, workflow_name: str, input: Mapping[str, Any] | None = None
    ) -> Builder:
        """Start a child run of ``workflow_name`` with ``input`` as its data, and wait for it."""
        name = self._draft.check_name("sub-workflow", name)
        owner = f"sub-workflow {name!r}"
        if not isinstance(workflow_name, str) or not workflow_name.strip():
            raise DefinitionError(f"{owner}: workflow name {workflow_name!r} is not a name")
        if input is not None and not isinstance(input, Mapping):
            raise DefinitionError(f"{owner}: input must be a dict or None, not {input!r}")
        try:
            # A JSON round trip checks the input and detaches it from the caller's dict.
            frozen = None if input is None else json.loads(json.dumps(dict(input), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise DefinitionError(f"{owner}: input is not JSON-serialisable: {exc}") from None
        self._draft.add(SubWorkflowStep(name, workflow_name, frozen))
        return self._go_on()

    def sleep(self, name: str, duration: Duration) -> Builder:
        """Wait durably for ``duration`` (a timer that survives a restart)."""
        name = self._draft.check_name("sleep", name)
        self._draft.add(SleepStep(name, _duration(f"sleep {name!r}", duration)))
        return self._go_on()

    def build(self) -> Workflow:
        """Check the definition and return it as a frozen :class:`Workflow`."""
        draft = self._draft
        draft.check_closed("build()")
        if not draft.steps:
            raise DefinitionError(f"workflow {draft.name!r} has no steps")
        for node in draft.steps:
            if (
                isinstance(node, ParallelStep)
                and node.strategy is WaitStrategy.COUNT
                and node.count is None
            ):
                raise DefinitionError(
                    f"parallel {node.name!r}: wait_for(WaitCount) needs wait_count(n)"
                )
        workflow = Workflow(draft.name, tuple(draft.steps))
        validate(workflow)
        return workflow


class _OptionBuilder(Builder):
    """A builder whose last step takes options: it rewrites that frozen node in the draft."""

    def __init__(self, draft: _Draft, index: int) -> None:
        super().__init__(draft)
        self._index = index

    def _node(self) -> Node:
        return self._draft.steps[self._index]

    def _replace(self, **changes: Any) -> None:
        self._draft.steps[self._index] = dataclasses.replace(self._node(), **changes)


class ParallelBuilder(_OptionBuilder):
    """Options of a ``parallel`` step, and every :class:`Builder` method to go on."""

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
        self._replace(strategy=chosen, count=count)
        return self

    def wait_count(self, n: int) -> ParallelBuilder:
        """Complete when ``n`` branches complete (implies ``WaitCount``)."""
        node = self._parallel()
        owner = f"parallel {node.name!r}"
        n = _positive_int(owner, "wait_count", n)
        if n > len(node.branches):
            raise DefinitionError(
                f"{owner}: wait_count({n}) is more than its {len(node.branches)} branches"
            )
        self._replace(strategy=WaitStrategy.COUNT, count=n)
        return self


class SignalBuilder(_OptionBuilder):
    """Options of an ``await_signal`` step, and every :class:`Builder` method to go on."""

    def timeout(self, duration: Duration) -> SignalBuilder:
        """Fail the step with ``WaitTimeout`` if the signal has not come within ``duration``."""
        self._replace(timeout=_duration(f"signal {self._node().name!r}", duration))
        return self


class ApprovalBuilder(_OptionBuilder):
    """Options of an ``await_approval`` step, and every :class:`Builder` method to go on."""

    def timeout(self, duration: Duration) -> ApprovalBuilder:
        """Fail the step with ``WaitTimeout`` if no decision has come within ``duration``."""
        self._replace(timeout=_duration(f"approval {self._node().name!r}", duration))
        return self

    def quorum(self, n: int) -> ApprovalBuilder:
        """Require ``n`` distinct approvers to approve."""
        node = self._node()
        assert isinstance(node, ApprovalStep)
        owner = f"approval {node.name!r}"
        n = _positive_int(owner, "quorum", n)
        if node.approvers and n > len(node.approvers):
            raise DefinitionError(
                f"{owner}: quorum({n}) is more than its {len(node.approvers)} approvers"
            )
        self._replace(quorum=n)
        return self


class _Block:
    """An open ``if_`` or ``loop``: the draft stays closed to other steps until ``end()``."""

    kind = "block"

    def __init__(self, draft: _Draft, parent: Builder, name: str) -> None:
        self._draft = draft
        self._parent = parent
        self._name = name
        self._ended = False

    def describe_open(self) -> str:
        return f"{self.kind} {self._name!r}"

    def _fail(self, message: str) -> NoReturn:
        raise DefinitionError(f"{self.kind} {self._name!r}: {message}")

    def _check_open(self, method: str) -> None:
        if self._ended:
            self._fail(f"{method} after end()")

    def _close(self, node: Node) -> Builder:
        self._draft.open = None
        self._draft.add(node)
        self._ended = True
        return self._parent

    if not TYPE_CHECKING:

        def __getattr__(self, attr: str) -> NoReturn:
            # Runtime help only: mypy already reports ``.step`` on an IfBuilder.
            if not attr.startswith("_") and hasattr(Builder, attr):
                self._fail(f"call end() before {attr}()")
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")


class IfBuilder(_Block):
    """An open ``if_``: ``then(...)``, optional ``else_if(cond).then(...)``, ``else_(...)``,
    then ``end()``."""

    kind = "if"

    def __init__(self, draft: _Draft, parent: Builder, name: str, cond: Condition) -> None:
        super().__init__(draft, parent, name)
        self._arms: list[Branch] = []
        self._pending: Condition | None = cond
        self._has_else = False

    def then(self, *steps: StepLike) -> IfBuilder:
        """The steps of the arm whose condition was just given."""
        self._check_open("then()")
        if self._has_else:
            self._fail("nothing but end() may follow else_()")
        if self._pending is None:
            self._fail("then() given twice for the same arm; use else_if(cond) or else_()")
        self._arms.append(Branch(self._pending, _nodes(f"if {self._name!r}", steps)))
        self._pending = None
        return self

    def else_if(self, cond: Condition) -> IfBuilder:
        """Another arm, tried when the ones before do not hold; follow with ``then(...)``."""
        self._check_open("else_if()")
        if self._has_else:
            self._fail("nothing but end() may follow else_()")
        self._need_then("else_if()")
        _callable(f"if {self._name!r}", "else_if condition", cond)
        self._pending = cond
        return self

    def else_(self, *steps: StepLike) -> IfBuilder:
        """The steps to run when no condition holds."""
        self._check_open("else_()")
        if self._has_else:
            self._fail("else_() given twice")
        self._need_then("else_()")
        self._arms.append(Branch(None, _nodes(f"if {self._name!r}", steps)))
        self._has_else = True
        return self

    def end(self) -> Builder:
        """Close the conditional and go on with the workflow."""
        if self._ended:
            self._fail("end() called twice")
        self._need_then("end()")
        return self._close(IfStep(self._name, tuple(self._arms)))

    def _need_then(self, method: str) -> None:
        if self._pending is not None:
            what = "if_()" if not self._arms else "else_if()"
            self._fail(f"{what} must be followed by then(...) before {method}")


class LoopBuilder(_Block):
    """An open ``loop``: its options, a ``do(...)`` body, then ``end()``."""

    kind = "loop"

    def __init__(self, draft: _Draft, parent: Builder, name: str) -> None:
        super().__init__(draft, parent, name)
        self._node = LoopStep(name, ())

    def _set(self, option: str, value: Any) -> LoopBuilder:
        self._check_open(f"{option}()")
        if getattr(self._node, option) is not None:
            self._fail(f"{option}() given twice")
        self._node = dataclasses.replace(self._node, **{option: value})
        return self

    def for_each(self, key: str) -> LoopBuilder:
        """Iterate over the list at ``state.data[key]`` as it was when the loop began."""
        if not isinstance(key, str) or not key:
            self._fail(f"for_each key must be a non-empty string, not {key!r}")
        return self._set("for_each", key)

    def while_(self, cond: Condition) -> LoopBuilder:
        """Check ``cond(state)`` before each iteration; stop when it is false."""
        _callable(f"loop {self._name!r}", "while_ condition", cond)
        return self._set("while_", cond)

    def break_when(self, cond: Condition) -> LoopBuilder:
        """Check ``cond(state)`` after each iteration; stop when it is true."""
        _callable(f"loop {self._name!r}", "break_when condition", cond)
        return self._set("break_when", cond)

    def max_iterations(self, n: int) -> LoopBuilder:
        """End the loop after ``n`` iterations (a normal end)."""
        return self._set(
            "max_iterations", _positive_int(f"loop {self._name!r}", "max_iterations", n)
        )

    def do(self, *steps: StepLike) -> LoopBuilder:
        """The loop's body, run once per iteration."""
        self._check_open("do()")
        if self._node.body:
            self._fail("do() given twice; pass every step of the body to one do(...)")
        if not steps:
            self._fail("do() needs at least one step")
        self._node = dataclasses.replace(self._node, body=_nodes(f"loop {self._name!r}", steps))
        return self

    def end(self) -> Builder:
        """Close the loop and go on with the workflow."""
        if self._ended:
            self._fail("end() called twice")
        node = self._node
        if not node.body:
            self._fail("has no body: call do(...) before end()")
        if (node.for_each, node.while_, node.break_when, node.max_iterations) == (None,) * 4:
            self._fail("needs for_each, while_, break_when or max_iterations to end")
        return self._close(node)
