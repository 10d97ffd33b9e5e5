"""The builder of a parallel map: ``loop(name).for_each(key).parallel(max=n)...do(...).end()``.

The map opens as a loop because it reads as one in the chain ("loop over the lines, five at a
time, doing ..."); ``parallel(...)`` on an open loop turns it into a :class:`MapBuilder`, whose
options are those of a ``parallel`` step (``wait_for``, ``wait_count``) plus ``tolerate``.
Like every builder it is a value: each method returns a new one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Generic, NoReturn, Protocol, TypeVar

from ._errors import DefinitionError
from ._nodes import MapStep, Node, StepLike, WaitStrategy, as_node

B = TypeVar("B", covariant=True)


class Parent(Protocol[B]):
    """The builder a map was opened on: ``end()`` hands it the map."""

    def _then(self, node: Node) -> B: ...


def check_max(owner: str, n: object) -> int:
    """The concurrency limit of a map: an integer >= 1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DefinitionError(f"{owner}: max must be an integer >= 1, not {n!r}")
    return n


def check_tolerate(owner: str, value: object) -> int | float | None:
    """How many iterations may fail: None, a count >= 0, or a fraction from 0.0 to 1.0."""
    if value is None:
        return None
    if isinstance(value, float) and 0.0 <= value <= 1.0:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise DefinitionError(
        f"{owner}: tolerate must be a count of failed iterations (an integer >= 0) or a "
        f"fraction of them (a float from 0.0 to 1.0), not {value!r}"
    )


class MapBuilder(Generic[B]):
    """An open parallel map: its options, a ``do(...)`` body, then ``end()``."""

    __slots__ = ("_node", "_parent")

    def __init__(self, parent: Parent[B], node: MapStep) -> None:
        self._parent = parent
        self._node = node

    def _fail(self, message: str) -> NoReturn:
        raise DefinitionError(f"map {self._node.name!r}: {message}")

    def _with(self, **changes: object) -> MapBuilder[B]:
        return MapBuilder(self._parent, dataclasses.replace(self._node, **changes))  # type: ignore[arg-type]

    def for_each(self, key: str) -> MapBuilder[B]:
        """Map over the list at ``state.data[key]``."""
        if not isinstance(key, str) or not key:
            self._fail(f"for_each key must be a non-empty string, not {key!r}")
        if self._node.over:
            self._fail("for_each() given twice")
        return self._with(over=key)

    def wait_for(self, strategy: WaitStrategy | str) -> MapBuilder[B]:
        """Complete on ``WaitAll`` (default: every iteration), ``WaitAny`` (the first one) or
        ``WaitCount`` (with ``wait_count``); iterations still running then are cancelled."""
        try:
            chosen = WaitStrategy(strategy)
        except ValueError:
            self._fail(f"{strategy!r} is not a wait strategy (WaitAll, WaitAny or WaitCount)")
        count = self._node.count if chosen is WaitStrategy.COUNT else None
        return self._with(strategy=chosen, count=count)

    def wait_count(self, n: int) -> MapBuilder[B]:
        """Complete when ``n`` iterations complete (implies ``WaitCount``)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            self._fail(f"wait_count must be an integer >= 1, not {n!r}")
        return self._with(strategy=WaitStrategy.COUNT, count=n)

    def tolerate(self, failures: int | float) -> MapBuilder[B]:
        """Let up to ``failures`` iterations fail (a count, or a fraction of the elements)
        without failing the map; their results are None."""
        return self._with(tolerate=check_tolerate(f"map {self._node.name!r}", failures))

    def do(self, *steps: StepLike) -> MapBuilder[B]:
        """The body, run once per element (with ``ctx.item`` and ``ctx.index``)."""
        if self._node.body:
            self._fail("do() given twice; pass every step of the body to one do(...)")
        if not steps:
            self._fail("do() needs at least one step")
        return self._with(body=_nodes(f"map {self._node.name!r}", steps))

    def end(self) -> B:
        """Close the map: the builder it was opened on, with the map added."""
        node = self._node
        if not node.body:
            self._fail("has no body: call do(...) before end()")
        if not node.over:
            self._fail("a parallel loop needs for_each(key): the list it maps over")
        if node.strategy is WaitStrategy.COUNT and node.count is None:
            self._fail("wait_for(WaitCount) needs wait_count(n)")
        if node.tolerate is not None and node.strategy is not WaitStrategy.ALL:
            self._fail(
                "tolerate applies to WaitAll; WaitAny and WaitCount fail only when too few "
                "iterations are left to meet them"
            )
        return self._parent._then(node)


def _nodes(owner: str, steps: Sequence[object]) -> tuple[Node, ...]:
    try:
        return tuple(as_node(s) for s in steps)
    except DefinitionError as exc:
        raise DefinitionError(f"{owner}: {exc}") from None
