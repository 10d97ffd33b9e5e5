"""Counters and timings of an engine, exported to Prometheus when it is installed.

Counting is on the hot path (once per step, per commit batch), so it is plain: ``Counter``
increments and fixed-bucket histograms on the event loop's thread, no locks and no objects per
observation. An exporter in another thread reads them through :meth:`Metrics.snapshot`, whose
copies of dicts and lists the GIL makes atomic.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass

STEP_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
"""Bucket bounds of the step duration histograms (seconds): steps from a dict update to a call
of several minutes."""

BATCH_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500)
"""Bucket bounds of the commit batch size histogram (transaction scripts per commit)."""

COMMIT_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
"""Bucket bounds of the commit latency histogram (seconds)."""


class Histogram:
    """Observations counted per bucket (``counts[i]``: at most ``bounds[i]``, the last one
    above every bound), with their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def copy(self) -> Histogram:
        """A copy that does not change any more."""
        copied = Histogram(self.bounds)
        copied.counts, copied.sum = list(self.counts), self.sum
        return copied

    def cumulative(self) -> list[tuple[str, float]]:
        """The buckets as Prometheus has them: ``(le, count at most le)``, ``+Inf`` last."""
        out, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(total)))
        return out


class CommitStats:
    """What a persistence's group commit did: batch sizes and commit latency (recorded on the
    event loop when a batch settles)."""

    def __init__(self) -> None:
        self.sizes = Histogram(BATCH_SIZES)
        self.seconds = Histogram(COMMIT_SECONDS)

    def record(self, size: int, seconds: float) -> None:
        """One batch of ``size`` scripts committed in ``seconds``."""
        self.sizes.observe(size)
        self.seconds.observe(seconds)


@dataclass(frozen=True)
class Snapshot:
    """The metrics at one moment, safe to read while the engine goes on."""

    runs_started: dict[str, int]
    runs_finished: dict[tuple[str, str], int]
    steps: dict[tuple[str, str], Histogram]
    retries: dict[tuple[str, str], int]
    claims: int
    lease_renewals: int
    lease_losses: int


class Metrics:
    """What an engine counts: runs started and finished by status, steps, retries, claims and
    leases."""

    def __init__(self) -> None:
        self.runs_started: Counter[str] = Counter()
        self.runs_finished: Counter[tuple[str, str]] = Counter()
        self.step_seconds: dict[tuple[str, str], Histogram] = {}
        self.retries: Counter[tuple[str, str]] = Counter()
        self.claims = 0
        self.lease_renewals = 0
        self.lease_losses = 0

    def started(self, workflow: str) -> None:
        """A run was created."""
        self.runs_started[workflow] += 1

    def finished(self, workflow: str, status: str) -> None:
        """A run ended with ``status``."""
        self.runs_finished[(workflow, status)] += 1

    def step_done(self, workflow: str, step: str, seconds: float) -> None:
        """A step completed after ``seconds``."""
        key = (workflow, step)
        histogram = self.step_seconds.get(key)
        if histogram is None:
            histogram = self.step_seconds[key] = Histogram(STEP_SECONDS)
        histogram.observe(seconds)

    def retried(self, workflow: str, step: str) -> None:
        """A step failed and will be retried."""
        self.retries[(workflow, step)] += 1

    def claimed(self, runs: int) -> None:
        """A claim round took ``runs`` runnable runs for this engine."""
        self.claims += runs

    def renewed(self, leases: int) -> None:
        """The heartbeat renewed ``leases`` leases of this engine."""
        self.lease_renewals += leases

    def lease_lost(self) -> None:
        """A run's lease was found taken over by another engine."""
        self.lease_losses += 1

    def snapshot(self) -> Snapshot:
        """A copy of everything, for an exporter (possibly in another thread)."""
        return Snapshot(
            runs_started=dict(self.runs_started),
            runs_finished=dict(self.runs_finished),
            steps={k: h.copy() for k, h in list(self.step_seconds.items())},
            retries=dict(self.retries),
            claims=self.claims,
            lease_renewals=self.lease_renewals,
            lease_losses=self.lease_losses,
        )
