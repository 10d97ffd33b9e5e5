"""``/metrics``: the engine's counters and the number of runs by status, for Prometheus."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from .._engine import Engine
from .._state import Status

#: Runs counted per status for the queue gauges (finished runs only grow, so they are counters
#: in ``treadle_runs_finished_total`` instead).
QUEUE_STATUSES = (Status.PENDING, Status.RUNNING, Status.WAITING, Status.PAUSED, Status.HELD)


async def count_runs(engine: Engine) -> dict[str, int]:
    """The number of unfinished runs per status."""
    counts = await engine.persistence.count_runs()
    return {s.value: int(counts.get(s.value, 0)) for s in QUEUE_STATUSES}


class EngineCollector(Collector):
    """A snapshot of an engine's metrics, ready to be exposed."""

    def __init__(self, engine: Engine, queue: dict[str, int]) -> None:
        self.engine = engine
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        """Every metric family."""
        m = self.engine.metrics
        started = CounterMetricFamily(
            "treadle_runs_started", "Runs created by this engine", labels=["workflow"]
        )
        for workflow, n in sorted(m.runs_started.items()):
            started.add_metric([workflow], n)
        yield started
        finished = CounterMetricFamily(
            "treadle_runs_finished",
            "Runs that ended, by final status",
            labels=["workflow", "status"],
        )
        for (workflow, status), n in sorted(m.runs_finished.items()):
            finished.add_metric([workflow, status], n)
        yield finished
        steps = SummaryMetricFamily(
            "treadle_step_duration_seconds",
            "Completed steps and their run time",
            labels=["workflow", "step"],
        )
        for key, n in sorted(m.steps.items()):
            steps.add_metric(list(key), count_value=n, sum_value=m.step_seconds.get(key, 0.0))
        yield steps
        retries = CounterMetricFamily(
            "treadle_step_retries",
            "Failed step attempts that will be retried",
            labels=["workflow", "step"],
        )
        for key, n in sorted(m.retries.items()):
            retries.add_metric(list(key), n)
        yield retries
        runs = GaugeMetricFamily(
            "treadle_runs", "Unfinished runs in the database, by status", labels=["status"]
        )
        for status, n in self.queue.items():
            runs.add_metric([status], n)
        yield runs
        yield GaugeMetricFamily(
            "treadle_queue_depth",
            "Runs ready to execute that no engine has taken yet",
            value=self.queue.get(Status.PENDING.value, 0),
        )


async def exposition(engine: Engine) -> tuple[bytes, str]:
    """The metrics text and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(engine, await count_runs(engine)))
    return generate_latest(registry), CONTENT_TYPE_LATEST
