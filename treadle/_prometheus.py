"""Prometheus exposition of an engine's metrics: the one place the metric names are made, for
``/metrics`` of ``treadle serve`` and of ``treadle worker --metrics-port`` alike.

Needs ``prometheus-client`` (``pip install treadle[web]``). The counters come from the engine's
:class:`~treadle._metrics.Metrics` (what this process did); the gauges of the queue come from
the database (what every process sees), read by :meth:`Exporter.refresh`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ._engine import Engine
from ._metrics import CommitStats, Histogram
from ._state import Status, WaitKind
from .persistence._base import utcnow
from .persistence._rates import RateLimitState
from .persistence._records import LimitUse

#: Runs counted per status for the queue gauges (finished runs only grow, so they are counters
#: in ``treadle_runs_finished_total`` instead).
QUEUE_STATUSES = (Status.PENDING, Status.RUNNING, Status.WAITING, Status.PAUSED, Status.HELD)

#: The kinds of ``treadle_runs_waiting`` always exported (others appear when runs wait so);
#: a wait for a child run is kind ``child``.
WAIT_KINDS = ("signal", "approval", "timer", "child")

METRICS = (
    "treadle_runs_started_total",
    "treadle_runs_completed_total",
    "treadle_runs_failed_total",
    "treadle_runs_finished_total",
    "treadle_step_duration_seconds",
    "treadle_step_retries_total",
    "treadle_claims_total",
    "treadle_lease_renewals_total",
    "treadle_lease_losses_total",
    "treadle_commit_batch_size",
    "treadle_commit_seconds",
    "treadle_runs",
    "treadle_queue_depth",
    "treadle_runs_waiting",
    "treadle_oldest_runnable_age_seconds",
    "treadle_rate_limit_available",
    "treadle_rate_limit_next_free_seconds",
    "treadle_rate_limit_waiting",
    "treadle_concurrency_limit",
    "treadle_concurrency_in_use",
    "treadle_concurrency_queued",
)
"""Every metric exported (histograms add ``_bucket``, ``_sum`` and ``_count`` samples)."""


@dataclass
class Queue:
    """The gauges read from the database at the last refresh."""

    runs: dict[str, int] = field(default_factory=dict)
    waiting: dict[str, int] = field(default_factory=dict)
    oldest_age: float = 0.0
    rates: list[RateLimitState] = field(default_factory=list)
    limits: list[LimitUse] = field(default_factory=list)


class Exporter(Collector):
    """The metrics of one engine, as a Prometheus collector."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.queue = Queue()

    async def refresh(self) -> None:
        """Read the queue's gauges from the database (two grouped, indexed reads, and the
        concurrency keys in use)."""
        persistence = self.engine.persistence
        counts = await persistence.count_runs()
        stats = await persistence.queue_stats()
        waiting = {kind: 0 for kind in WAIT_KINDS}
        for kind, n in stats.waiting.items():
            waiting["child" if kind == WaitKind.RUN else kind] = n
        since = stats.runnable_since
        self.queue = Queue(
            runs={s.value: int(counts.get(s.value, 0)) for s in QUEUE_STATUSES},
            waiting=waiting,
            oldest_age=0.0 if since is None else max(0.0, (utcnow() - since).total_seconds()),
            rates=await persistence.rate_limits(),
            limits=await persistence.limits(),
        )

    def registry(self) -> CollectorRegistry:
        """A registry holding only this collector."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return registry

    async def exposition(self) -> tuple[bytes, str]:
        """Refresh, then the metrics text and its content type."""
        await self.refresh()
        return generate_latest(self.registry()), CONTENT_TYPE_LATEST

    def collect(self) -> Iterator[Metric]:
        """Every metric family (safe to call from another thread than the engine's)."""
        m = self.engine.metrics.snapshot()
        yield _counter(
            "treadle_runs_started",
            "Runs created by this engine",
            ["workflow"],
            [((wf,), n) for wf, n in m.runs_started.items()],
        )
        for status in (Status.COMPLETED, Status.FAILED):
            yield _counter(
                f"treadle_runs_{status.value}",
                f"Runs executed here that ended {status.value}",
                ["workflow"],
                (((wf,), n) for (wf, st), n in m.runs_finished.items() if st == status.value),
            )
        yield _counter(
            "treadle_runs_finished",
            "Runs that ended here, by final status",
            ["workflow", "status"],
            m.runs_finished.items(),
        )
        steps = HistogramMetricFamily(
            "treadle_step_duration_seconds",
            "Completed step attempts and their run time",
            labels=["workflow", "step"],
        )
        for key, histogram in sorted(m.steps.items()):
            steps.add_metric(list(key), histogram.cumulative(), histogram.sum)
        yield steps
        yield _counter(
            "treadle_step_retries",
            "Failed step attempts that will be retried",
            ["workflow", "step"],
            m.retries.items(),
        )
        yield _counter("treadle_claims", "Runnable runs this engine claimed", [], [((), m.claims)])
        yield _counter(
            "treadle_lease_renewals",
            "Leases renewed by this engine's heartbeat",
            [],
            [((), m.lease_renewals)],
        )
        yield _counter(
            "treadle_lease_losses",
            "Runs whose lease another engine took over while running here",
            [],
            [((), m.lease_losses)],
        )
        stats = getattr(self.engine.persistence, "commit_stats", None)
        if isinstance(stats, CommitStats):
            yield _histogram(
                "treadle_commit_batch_size", "Transaction scripts per group commit", stats.sizes
            )
            yield _histogram("treadle_commit_seconds", "Time of one group commit", stats.seconds)
        yield from self._gauges()

    def _gauges(self) -> Iterator[Metric]:
        queue = self.queue
        runs = GaugeMetricFamily(
            "treadle_runs", "Unfinished runs in the database, by status", labels=["status"]
        )
        for status, n in queue.runs.items():
            runs.add_metric([status], n)
        yield runs
        yield GaugeMetricFamily(
            "treadle_queue_depth",
            "Runs ready to execute that no engine has taken yet",
            value=queue.runs.get(Status.PENDING.value, 0),
        )
        waiting = GaugeMetricFamily(
            "treadle_runs_waiting", "WAITING runs by what they wait for", labels=["kind"]
        )
        for kind, n in sorted(queue.waiting.items()):
            waiting.add_metric([kind], n)
        yield waiting
        yield GaugeMetricFamily(
            "treadle_oldest_runnable_age_seconds",
            "How long the oldest runnable run has waited for an engine (queue lag)",
            value=queue.oldest_age,
        )
        yield from _limit_gauges(queue.limits)
        yield from _rate_gauges(queue.rates)


def _limit_gauges(uses: list[LimitUse]) -> Iterator[Metric]:
    """Per concurrency key that a run holds or waits for (a key with neither has no sample)."""
    families: tuple[tuple[str, str, Callable[[LimitUse], float]], ...] = (
        ("limit", "Runs that may hold a slot of the key at once", lambda u: u.limit),
        ("in_use", "Runs holding a slot of the key", lambda u: len(u.holders)),
        ("queued", "Runs waiting for a slot of the key", lambda u: len(u.queued)),
    )
    for suffix, documentation, value in families:
        family = GaugeMetricFamily(f"treadle_concurrency_{suffix}", documentation, labels=["key"])
        for use in uses:
            family.add_metric([use.key], value(use))
        yield family


def _rate_gauges(states: list[RateLimitState]) -> Iterator[Metric]:
    families: tuple[tuple[str, str, Callable[[RateLimitState], float]], ...] = (
        ("available", "Calls a rate limiter lets go at once now", lambda r: r.available),
        (
            "next_free_seconds",
            "Seconds until a rate limiter's next free call (0: one may go now)",
            lambda r: max(0.0, (r.next_free - r.now).total_seconds()),
        ),
        ("waiting", "Runs parked until their reserved call of a rate limiter", lambda r: r.waiting),
    )
    for suffix, documentation, value in families:
        family = GaugeMetricFamily(f"treadle_rate_limit_{suffix}", documentation, labels=["name"])
        for state in states:
            family.add_metric([state.name], value(state))
        yield family


def _counter(
    name: str,
    documentation: str,
    labels: list[str],
    samples: Iterable[tuple[tuple[str, ...], int]],
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for values, n in sorted(samples):
        family.add_metric(list(values), n)
    return family


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    copied = histogram.copy()
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], copied.cumulative(), copied.sum)
    return family


async def exposition(engine: Engine) -> tuple[bytes, str]:
    """The metrics text of ``engine`` and its content type (the queue read now)."""
    return await Exporter(engine).exposition()
