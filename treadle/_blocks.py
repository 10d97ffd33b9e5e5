"""The open blocks of the fluent builder: ``if_(...)...end()`` and ``loop(...)...end()``.

Each is a value like the builders (every method returns a new one); ``end()`` hands the block
to the builder it was opened on, which returns the builder with the block added. They know the
builder only as a :class:`~treadle._mapbuilder.Parent` (what ``end()`` needs), so this module
does not import the builder.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Generic, NoReturn

from ._checks import _callable, _nodes, _positive_int
from ._errors import DefinitionError
from ._mapbuilder import B, MapBuilder, Parent, check_max, check_tolerate
from ._nodes import Branch, Condition, IfStep, LoopStep, MapStep, StepLike

__all__ = ["IfBuilder", "LoopBuilder"]


class _Block(Generic[B]):
    """An open ``if_`` or ``loop``: a value like the builders; ``end()`` adds it to the builder
    it was opened on and returns the result."""

    __slots__ = ("_name", "_parent")
    kind = "block"

    def __init__(self, parent: Parent[B], name: str) -> None:
        self._parent = parent
        self._name = name

    def _fail(self, message: str) -> NoReturn:
        raise DefinitionError(f"{self.kind} {self._name!r}: {message}")

    if not TYPE_CHECKING:

        def __getattr__(self, attr: str) -> NoReturn:
            # Runtime help only: mypy already reports ``.step`` on an IfBuilder.
            if not attr.startswith("_") and hasattr(type(self._parent), attr):
                self._fail(f"call end() before {attr}()")
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")


class IfBuilder(_Block[B]):
    """An open ``if_``: ``then(...)``, optional ``else_if(cond).then(...)``, ``else_(...)``,
    then ``end()``."""

    __slots__ = ("_arms", "_has_else", "_pending")
    kind = "if"

    def __init__(
        self,
        parent: Parent[B],
        name: str,
        pending: Condition | None,
        arms: tuple[Branch, ...] = (),
        has_else: bool = False,
    ) -> None:
        super().__init__(parent, name)
        self._pending = pending
        self._arms = arms
        self._has_else = has_else

    def _with(self, pending: Condition | None, arm: Branch | None, has_else: bool) -> IfBuilder[B]:
        arms = self._arms if arm is None else (*self._arms, arm)
        return IfBuilder(self._parent, self._name, pending, arms, has_else)

    def then(self, *steps: StepLike) -> IfBuilder[B]:
        """The steps of the arm whose condition was just given."""
        if self._has_else:
            self._fail("nothing but end() may follow else_()")
        if self._pending is None:
            self._fail("then() given twice for the same arm; use else_if(cond) or else_()")
        arm = Branch(self._pending, _nodes(f"if {self._name!r}", steps))
        return self._with(None, arm, False)

    def else_if(self, cond: Condition) -> IfBuilder[B]:
        """Another arm, tried when the ones before do not hold; follow with ``then(...)``."""
        if self._has_else:
            self._fail("nothing but end() may follow else_()")
        self._need_then("else_if()")
        _callable(f"if {self._name!r}", "else_if condition", cond)
        return self._with(cond, None, False)

    def else_(self, *steps: StepLike) -> IfBuilder[B]:
        """The steps to run when no condition holds."""
        if self._has_else:
            self._fail("else_() given twice")
        self._need_then("else_()")
        return self._with(None, Branch(None, _nodes(f"if {self._name!r}", steps)), True)

    def end(self) -> B:
        """Close the conditional: the builder it was opened on, with the conditional added."""
        self._need_then("end()")
        return self._parent._then(IfStep(self._name, self._arms))

    def _need_then(self, method: str) -> None:
        if self._pending is not None:
            what = "if_()" if not self._arms else "else_if()"
            self._fail(f"{what} must be followed by then(...) before {method}")


class LoopBuilder(_Block[B]):
    """An open ``loop``: its options, a ``do(...)`` body, then ``end()``."""

    __slots__ = ("_node",)
    kind = "loop"

    def __init__(self, parent: Parent[B], node: LoopStep) -> None:
        super().__init__(parent, node.name)
        self._node = node

    def _set(self, option: str, value: Any) -> LoopBuilder[B]:
        if getattr(self._node, option) is not None:
            self._fail(f"{option}() given twice")
        return LoopBuilder(self._parent, dataclasses.replace(self._node, **{option: value}))

    def for_each(self, key: str) -> LoopBuilder[B]:
        """Iterate over the list at ``state.data[key]`` as it was when the loop began."""
        if not isinstance(key, str) or not key:
            self._fail(f"for_each key must be a non-empty string, not {key!r}")
        return self._set("for_each", key)

    def while_(self, cond: Condition) -> LoopBuilder[B]:
        """Check ``cond(state)`` before each iteration; stop when it is false."""
        _callable(f"loop {self._name!r}", "while_ condition", cond)
        return self._set("while_", cond)

    def break_when(self, cond: Condition) -> LoopBuilder[B]:
        """Check ``cond(state)`` after each iteration; stop when it is true."""
        _callable(f"loop {self._name!r}", "break_when condition", cond)
        return self._set("break_when", cond)

    def max_iterations(self, n: int) -> LoopBuilder[B]:
        """End the loop after ``n`` iterations (a normal end)."""
        return self._set(
            "max_iterations", _positive_int(f"loop {self._name!r}", "max_iterations", n)
        )

    def parallel(self, max: int = 10, *, tolerate: int | float | None = None) -> MapBuilder[B]:
        """Run the iterations of this ``for_each`` concurrently, at most ``max`` at a time (a
        parallel map, see "Parallel map" in API.md); ``tolerate``: how many may fail."""
        node, owner = self._node, f"map {self._name!r}"
        if (node.while_, node.break_when, node.max_iterations) != (None, None, None):
            self._fail(
                "a parallel loop runs once per for_each element: drop while_, "
                "break_when and max_iterations"
            )
        mapped = MapStep(
            node.name,
            node.body,
            node.for_each or "",
            max=check_max(owner, max),
            tolerate=check_tolerate(owner, tolerate),
        )
        return MapBuilder(self._parent, mapped)

    def do(self, *steps: StepLike) -> LoopBuilder[B]:
        """The loop's body, run once per iteration."""
        if self._node.body:
            self._fail("do() given twice; pass every step of the body to one do(...)")
        if not steps:
            self._fail("do() needs at least one step")
        body = _nodes(f"loop {self._name!r}", steps)
        return LoopBuilder(self._parent, dataclasses.replace(self._node, body=body))

    def end(self) -> B:
        """Close the loop: the builder it was opened on, with the loop added."""
        node = self._node
        if not node.body:
            self._fail("has no body: call do(...) before end()")
        if (node.for_each, node.while_, node.break_when, node.max_iterations) == (None,) * 4:
            self._fail("needs for_each, while_, break_when or max_iterations to end")
        return self._parent._then(node)
