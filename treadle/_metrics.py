"""Counters and timings of an engine, exported to Prometheus when it is installed."""

from __future__ import annotations

from collections import Counter


class Metrics:
    """What an engine counts: runs started and finished by status, steps, retries."""

    def __init__(self) -> None:
        self.runs_started: Counter[str] = Counter()
        self.runs_finished: Counter[tuple[str, str]] = Counter()
        self.steps: Counter[tuple[str, str]] = Counter()
        self.step_seconds: dict[tuple[str, str], float] = {}
        self.retries: Counter[tuple[str, str]] = Counter()

    def started(self, workflow: str) -> None:
        """A run was created."""
        self.runs_started[workflow] += 1

    def finished(self, workflow: str, status: str) -> None:
        """A run ended with ``status``."""
        self.runs_finished[(workflow, status)] += 1

    def step_done(self, workflow: str, step: str, seconds: float) -> None:
        """A step completed after ``seconds``."""
        self.steps[(workflow, step)] += 1
        key = (workflow, step)
        self.step_seconds[key] = self.step_seconds.get(key, 0.0) + seconds

    def retried(self, workflow: str, step: str) -> None:
        """A step failed and will be retried."""
        self.retries[(workflow, step)] += 1
