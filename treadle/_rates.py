"""Rate limits: named limiters that steps of any workflow share, across every engine on one
database (``treadle.RateLimit("psp", 10, per="1s")``, ``.step("charge", charge,
rate_limit=psp)``).

A limiter is a GCRA ("generic cell rate algorithm") reservation: its state is one row, the
theoretical arrival time (``tat``) of the next call at the steady rate. Each attempt of a
rate-limited step reserves the next free time in one short transaction, so waiters are served in
the order they reserved, and each waits for its own time instead of all retrying at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from ._duration import Duration, parse_duration
from ._errors import DefinitionError, InvalidId
from ._ids import check_id


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` calls per ``per`` of the steps that name this limiter, wherever they
    run. ``burst`` (default 1) is how many calls may go at once after a quiet spell: with 1,
    calls are spaced at least ``per / limit`` apart, so any window of ``per`` holds at most
    ``limit`` calls; with ``burst=b``, at most ``limit + b - 1``.

    ``name`` is an id (:func:`treadle.check_id`); ``limit`` and ``burst`` are ints >= 1,
    ``per`` a duration > 0. Anything else raises :class:`DefinitionError` naming the value.
    """

    name: str
    limit: int
    per: Duration = "1s"
    burst: int | None = None

    def __post_init__(self) -> None:
        try:
            check_id(self.name, "rate limit name")
        except InvalidId as exc:
            raise DefinitionError(str(exc)) from None
        owner = f"rate limit {self.name!r}"
        if not _count(self.limit):
            raise DefinitionError(f"{owner}: limit must be an int >= 1, not {self.limit!r}")
        try:
            per = parse_duration(self.per)
        except ValueError as exc:
            raise DefinitionError(f"{owner}: per: {exc}") from None
        if per <= timedelta(0):
            raise DefinitionError(f"{owner}: per must be a duration > 0, not {self.per!r}")
        object.__setattr__(self, "per", per)
        if self.burst is not None and not _count(self.burst):
            raise DefinitionError(f"{owner}: burst must be an int >= 1, not {self.burst!r}")

    @property
    def per_seconds(self) -> float:
        """``per`` in seconds."""
        assert isinstance(self.per, timedelta)
        return self.per.total_seconds()

    @property
    def interval(self) -> float:
        """Seconds between calls at the steady rate (``per / limit``)."""
        return self.per_seconds / self.limit

    @property
    def capacity(self) -> int:
        """How many calls may go at once (``burst``, default 1)."""
        return self.burst or 1

    def describe(self) -> str:
        """``"psp (10 per 1s)"``: how people read the limiter (logs, status, dashboard)."""
        return f"{self.name} ({self.limit} per {show_seconds(self.per_seconds)})"


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def show_seconds(seconds: float) -> str:
    """A ``per`` as people write it: ``1s``, ``500ms``, ``1m``, ``1h``, ``1.5s``."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    if seconds < 1 and (seconds * 1000).is_integer():
        return f"{int(seconds * 1000)}ms"
    return f"{seconds:g}s"


def check_consistent(limits: Iterable[tuple[str, RateLimit]]) -> None:
    """Raise :class:`DefinitionError` when two steps (``(owner, limit)`` pairs) name one
    limiter with different settings: a limiter has one limit, whoever uses it."""
    seen: dict[str, tuple[str, RateLimit]] = {}
    for owner, limit in limits:
        first = seen.setdefault(limit.name, (owner, limit))
        if first[1] != limit:
            raise DefinitionError(
                f"rate limit {limit.name!r} is defined twice with different settings: "
                f"{first[1].describe()} at {first[0]}, {limit.describe()} at {owner}; "
                f"define it once and use that object"
            )


class _Definition(Protocol):
    """What :func:`rate_limits` reads of a workflow (a :class:`~treadle.Workflow`)."""

    @property
    def name(self) -> str:
        """The workflow's name."""
        ...

    def nodes(self) -> Iterator[object]:
        """Every node below it."""
        ...


def rate_limits(workflow: _Definition) -> list[tuple[str, RateLimit]]:
    """The rate limits that steps of ``workflow`` take, each with where (for messages)."""
    found = []
    for node in workflow.nodes():
        limit = getattr(node, "rate_limit", None)
        if isinstance(limit, RateLimit):
            found.append((f"step {getattr(node, 'name', '?')!r} of {workflow.name!r}", limit))
    return found
