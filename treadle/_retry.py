"""Retry policy: how many attempts a step gets and how long to wait between them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from ._duration import Duration, parse_duration
from ._errors import DataError, NonRetryableError


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and exponential backoff for a step.

    The wait before attempt k+1 is ``min(initial_wait * multiplier**(k-1), max_wait)``, with a
    deterministic jitter of at most ±10% so that many runs failing together do not retry in step.
    """

    #: An integer, or a function of the run's state evaluated once when the step starts.
    max_attempts: int | Callable[[Any], Any] = 3
    initial_wait: timedelta = timedelta(seconds=1)
    max_wait: timedelta = timedelta(seconds=30)
    multiplier: float = 2.0
    retry_on: Callable[[BaseException], bool] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not callable(self.max_attempts) and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be at least 1, not {self.multiplier}")
        object.__setattr__(self, "initial_wait", parse_duration(self.initial_wait))
        object.__setattr__(self, "max_wait", parse_duration(self.max_wait))

    def attempts(self, n: int | Callable[[Any], Any]) -> RetryPolicy:
        """A copy with ``max_attempts = n`` (or computed by ``n(state)`` when the step starts)."""
        return replace(self, max_attempts=n)

    def backoff(self, initial: Duration, max: Duration) -> RetryPolicy:
        """A copy with the given initial and maximum wait."""
        return replace(self, initial_wait=parse_duration(initial), max_wait=parse_duration(max))

    def should_retry(self, error: BaseException, attempt: int, limit: int | None = None) -> bool:
        """Whether a step that failed ``attempt`` (1-based) with ``error`` gets another attempt
        (``limit``: the attempts computed for this run, when ``max_attempts`` is a function)."""
        if limit is None:
            limit = self.max_attempts if isinstance(self.max_attempts, int) else 1
        if attempt >= limit:
            return False
        if isinstance(error, NonRetryableError | DataError):
            return False
        if self.retry_on is not None:
            return bool(self.retry_on(error))
        return isinstance(error, Exception)

    def wait_before(self, attempt: int, key: str = "") -> timedelta:
        """The wait before attempt ``attempt + 1``, jittered deterministically by ``key``."""
        base = self.initial_wait.total_seconds() * self.multiplier ** (attempt - 1)
        base = min(base, self.max_wait.total_seconds())
        digest = hashlib.blake2b(f"{key}:{attempt}".encode(), digest_size=2).digest()
        jitter = (int.from_bytes(digest, "big") / 65535.0 - 0.5) * 0.2
        return timedelta(seconds=base * (1 + jitter))


def new_retry_policy() -> RetryPolicy:
    """The default policy: 3 attempts, 1s doubling up to 30s (the seed's ``NewRetryPolicy``)."""
    return RetryPolicy()
