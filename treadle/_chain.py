"""What a builder holds: the options of ``new()`` and the chain of steps (see
:mod:`treadle._builder`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ._concurrency import Concurrency
from ._nodes import Node
from ._state import State


@dataclass(frozen=True)
class _Options:
    """What ``new()`` was given besides the name."""

    version: str | None = None
    on_failure: str = "compensate"
    auto_upgrade: bool = False
    input: type[Any] | None = None
    deadline: timedelta | None = None
    output: Callable[[State], Any] | None = None
    retention: timedelta | None = None
    concurrency: Concurrency | None = None


@dataclass(frozen=True)
class _Chain:
    """The steps of a builder, newest first: adding a step links a new head to the old chain,
    so builders that branch off one another share what they have in common and copy nothing."""

    node: Node
    before: _Chain | None

    def nodes(self) -> tuple[Node, ...]:
        """The steps, oldest first."""
        out: list[Node] = []
        link: _Chain | None = self
        while link is not None:
            out.append(link.node)
            link = link.before
        return tuple(reversed(out))
