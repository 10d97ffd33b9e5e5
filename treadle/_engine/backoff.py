"""How long a run waits before it is executed again after an unexpected error."""

from __future__ import annotations

#: The first delay, doubled after each further unexpected error of the same run, up to the last.
FIRST_DELAY = 0.1
MAX_DELAY = 30.0
#: How many runs' delays are remembered (the oldest are forgotten first).
REMEMBERED = 10_000


class Backoff:
    """Exponential delays per run: a run whose execution keeps stopping by an unexpected error
    (a database fault, a value it cannot store) is executed again ever less often, never in a
    tight loop; its next clean execution starts it afresh."""

    def __init__(self, first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> None:
        self.first = first
        self.cap = cap
        self._next: dict[str, float] = {}

    def failed(self, run_id: str) -> float:
        """The run's execution stopped by an unexpected error: how many seconds to wait before
        it is executed again."""
        delay = self._next.pop(run_id, self.first)
        self._next[run_id] = min(delay * 2, self.cap)
        if len(self._next) > REMEMBERED:
            del self._next[next(iter(self._next))]
        return delay

    def succeeded(self, run_id: str) -> None:
        """The run's execution ended without an unexpected error: forget its delay."""
        self._next.pop(run_id, None)

    def clear(self) -> None:
        """Forget every delay."""
        self._next.clear()
