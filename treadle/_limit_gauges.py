"""The Prometheus gauges of concurrency limits, per key in use (see :mod:`._prometheus`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric

from .persistence._records import LimitUse

METRICS = (
    "treadle_concurrency_limit",
    "treadle_concurrency_in_use",
    "treadle_concurrency_queued",
)


def limit_gauges(uses: Sequence[LimitUse]) -> Iterator[Metric]:
    """The limit, the slots in use and the queued runs of every key that a run holds or
    waits for (a key with neither has no sample)."""
    families = (
        ("treadle_concurrency_limit", "Runs that may hold a slot of the key at once", "limit"),
        ("treadle_concurrency_in_use", "Runs holding a slot of the key", "holders"),
        ("treadle_concurrency_queued", "Runs waiting for a slot of the key", "queued"),
    )
    for name, documentation, what in families:
        family = GaugeMetricFamily(name, documentation, labels=["key"])
        for use in uses:
            value = getattr(use, what)
            family.add_metric([use.key], value if isinstance(value, int) else len(value))
        yield family
