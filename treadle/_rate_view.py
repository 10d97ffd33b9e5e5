"""Rate limiters as a person reads them, shared by ``treadle rates`` and the dashboard."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._display import duration_text
from ._rates import show_seconds
from .persistence._rates import RateLimitState


@dataclass(frozen=True)
class RateRow:
    """One limiter: ``limit`` as ``"10 per 1s"``, ``next_free`` as ``"now"`` or ``"in 1.2s"``."""

    name: str
    limit: str
    burst: int
    available: int
    next_free: str
    waiting: int


def rate_rows(states: Sequence[RateLimitState]) -> list[RateRow]:
    """The rows of the limiters' table, by name."""
    rows = []
    for state in states:
        ahead = (state.next_free - state.now).total_seconds()
        rows.append(
            RateRow(
                state.name,
                f"{state.limit} per {show_seconds(state.per_seconds)}",
                state.burst,
                state.available,
                "now" if ahead <= 0 else f"in {duration_text(ahead)}",
                state.waiting,
            )
        )
    return rows
