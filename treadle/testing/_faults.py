"""Making a step fail on chosen attempts without changing its code.

The kit registers a copy of each workflow whose step functions first ask the kit's faults
whether this attempt is to fail. The copy has the same shape, so the same ``Workflow.id``: the
wrappers carry the qualified names of the functions they wrap, which is all of the code that
the fingerprint covers.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .._calls import is_async_callable
from .._nodes import (
    ActionStep,
    CustomStep,
    IfStep,
    LoopStep,
    Node,
    ParallelStep,
    Step,
    StepFunc,
    Workflow,
    _callable_name,
    walk,
)
from .._state import Context, State


class InjectedFailure(Exception):
    """What a step made to fail by :meth:`TestKit.fail` raises unless another error was given.

    ``step`` and ``attempt`` say which attempt it failed.
    """

    def __init__(self, step: str, attempt: int) -> None:
        super().__init__(f"failure injected by the test kit: step {step!r}, attempt {attempt}")
        self.step = step
        self.attempt = attempt


ErrorSpec = Exception | type[Exception] | None
"""What a fault raises: an exception, an exception class (made with the failure's message), or
None for :class:`InjectedFailure`."""


@dataclass
class Fault:
    """A planned failure of one step, as :meth:`TestKit.fail` returns it.

    ``hits`` lists the ``(run id, attempt)`` of every attempt it failed, in order; the step's own
    function was not called for those. :meth:`cancel` lets the step run normally again.
    """

    step: str
    attempts: frozenset[int] | None
    """The attempts that fail (1-based); None: every attempt."""
    error: ErrorSpec = None
    run_id: str | None = None
    workflow: str | None = None
    active: bool = True
    hits: list[tuple[str, int]] = field(default_factory=list)

    def cancel(self) -> None:
        """Stop failing: the next attempts of the step run its function."""
        self.active = False

    def _applies(self, ctx: Context) -> bool:
        """Whether this fault fails the attempt that ``ctx`` describes."""
        return (
            self.active
            and ctx.step == self.step
            and (self.attempts is None or ctx.attempt in self.attempts)
            and self.run_id in (None, ctx.run_id)
            and self.workflow in (None, ctx.workflow)
        )

    def _exception(self, ctx: Context) -> Exception:
        """The exception that fails the attempt ``ctx``."""
        if isinstance(self.error, Exception):
            return self.error
        injected = InjectedFailure(ctx.step, ctx.attempt)
        if self.error is None:
            return injected
        return self.error(str(injected))


class Faults:
    """The faults of one kit, and the step names of the workflows it has wrapped."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()  # plain step functions ask from worker threads
        self._steps: dict[str, dict[str, str]] = {}  # workflow -> step name -> node kind

    def wrap(self, workflow: Workflow) -> Workflow:
        """A copy of ``workflow`` (same id) whose action and custom steps ask these faults first."""
        self._steps[workflow.name] = {node.name: node.kind for node in walk(workflow.steps)}
        wrapped = self._wrap(workflow)
        assert isinstance(wrapped, Workflow)
        return wrapped

    def add(
        self,
        step: str,
        on_attempt: int | Iterable[int] | None,
        error: ErrorSpec,
        run_id: str | None,
        workflow: str | None,
    ) -> Fault:
        """Plan a failure (checked: the step exists and runs code, the attempts are 1 or more)."""
        self._check_step(step, workflow)
        attempts = None if on_attempt is None else _attempts(on_attempt)
        if not (
            error is None
            or isinstance(error, Exception)
            or (isinstance(error, type) and issubclass(error, Exception))
        ):
            raise ValueError(
                f"kit.fail({step!r}): error must be an exception or an exception class, "
                f"not {error!r}"
            )
        fault = Fault(step, attempts, error, run_id, workflow)
        with self._lock:
            self._faults.append(fault)
        return fault

    def check(self, ctx: Context) -> None:
        """Raise the exception of the first active fault that applies to this attempt."""
        with self._lock:
            for fault in self._faults:
                if fault._applies(ctx):
                    fault.hits.append((ctx.run_id, ctx.attempt))
                    raise fault._exception(ctx)

    def _check_step(self, step: str, workflow: str | None) -> None:
        if workflow is not None and workflow not in self._steps:
            raise ValueError(
                f"kit.fail({step!r}, workflow={workflow!r}): the kit has no workflow of that "
                f"name (it has: {', '.join(sorted(self._steps)) or 'none'}); pass it to "
                "TestKit(...) or kit.register(...)"
            )
        names = [workflow] if workflow is not None else sorted(self._steps)
        kinds = {self._steps[w][step] for w in names if step in self._steps[w]}
        if not kinds:
            where = f"workflow {workflow!r}" if workflow else "the workflows of the kit"
            known = sorted({s for w in names for s in self._steps[w]})
            raise ValueError(
                f"kit.fail({step!r}): no step of that name in {where} (steps: "
                f"{', '.join(known) or 'none'}); register the workflow with TestKit(...) or "
                "kit.register(...), not with kit.engine.register(...)"
            )
        if not kinds & {ActionStep.kind, CustomStep.kind}:
            raise ValueError(
                f"kit.fail({step!r}): that step is a {' or '.join(sorted(kinds))} step, which "
                "runs no code of yours; only steps made with .step(), treadle.step() or a "
                "custom Step can be made to fail"
            )

    def _wrap(self, node: Node) -> Node:
        if isinstance(node, ActionStep):
            return dataclasses.replace(node, action=self._failing(node.action))
        if isinstance(node, CustomStep):
            return dataclasses.replace(node, target=_FailingStep(node.target, self))
        if isinstance(node, Workflow):  # replace() keeps the id
            return dataclasses.replace(node, steps=self._wrap_all(node.steps))
        if isinstance(node, IfStep):
            branches = tuple(
                dataclasses.replace(b, steps=self._wrap_all(b.steps)) for b in node.branches
            )
            return dataclasses.replace(node, branches=branches)
        if isinstance(node, LoopStep):
            return dataclasses.replace(node, body=self._wrap_all(node.body))
        if isinstance(node, ParallelStep):
            return dataclasses.replace(node, branches=self._wrap_all(node.branches))
        return node

    def _wrap_all(self, nodes: tuple[Node, ...]) -> tuple[Node, ...]:
        return tuple(self._wrap(n) for n in nodes)

    def _failing(self, fn: StepFunc) -> StepFunc:
        """``fn`` behind a check of the faults, async if ``fn`` is (so it runs where it ran)."""
        wrapper: Callable[[Context, State], Any]
        if is_async_callable(fn):

            async def wrapper(ctx: Context, state: State) -> Any:
                self.check(ctx)
                return await fn(ctx, state)

        else:

            def wrapper(ctx: Context, state: State) -> Any:
                self.check(ctx)
                return fn(ctx, state)

        functools.update_wrapper(wrapper, fn)
        # The fingerprint covers the function's qualified name (see _nodes.describe), which a
        # partial or a callable object does not have: name the wrapper as describe names them.
        wrapper.__qualname__ = _callable_name(fn) or ""
        return wrapper


class _FailingStep:
    """A user's :class:`Step` behind a check of the faults."""

    def __init__(self, target: Step, faults: Faults) -> None:
        self.name = target.name
        self.target = target
        self._faults = faults

    async def execute(self, ctx: Context, state: State) -> None:
        self._faults.check(ctx)
        await self.target.execute(ctx, state)


def _attempts(on_attempt: int | Iterable[int]) -> frozenset[int]:
    values = [on_attempt] if isinstance(on_attempt, int) else list(on_attempt)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(
            f"on_attempt must be an attempt number (1 is the first), several, or None for "
            f"every attempt; not {on_attempt!r}"
        )
    return frozenset(values)
