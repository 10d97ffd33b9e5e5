"""What one workflow's runs add up to over a time window: runs per status over time, versions,
durations, the slowest steps and the most common errors (the dashboard's overview page).

Counts are exact (grouped in SQL, through the ``runs_workflow`` index); durations and step
times come from a sample of the newest runs in the window (:data:`SAMPLE` of each), which is
what percentiles and "slowest" need and keeps the page fast at millions of runs.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ._records import to_datetime
from ._sql import Tx

SAMPLE = 5000
"""How many of the newest runs (and step completions) durations are taken from."""


@dataclass(frozen=True)
class StepTime:
    """How long one step's attempts that completed took, in milliseconds."""

    step: str
    count: int
    mean_ms: float
    p95_ms: float
    max_ms: float


@dataclass(frozen=True)
class VersionCount:
    """Runs of one definition in the window."""

    definition_id: str
    version: str | None
    runs: int
    last_started: datetime | None


@dataclass(frozen=True)
class WorkflowStats:
    """One workflow's runs created in ``[since, since + buckets * bucket)``."""

    workflow: str
    since: datetime
    bucket: timedelta
    buckets: int
    by_bucket: list[dict[str, int]]  # for each bucket in order: status value -> runs
    totals: dict[str, int]  # status value -> runs in the window
    versions: list[VersionCount]
    p50_s: float | None  # of finished runs, created to finished
    p95_s: float | None
    slowest_steps: list[StepTime]
    errors: list[tuple[str, int]] = field(default_factory=list)  # most common first

    @property
    def finished(self) -> int:
        """Runs in the window that have ended."""
        return sum(self.totals.get(s, 0) for s in ("completed", "failed", "cancelled"))

    @property
    def failure_rate(self) -> float | None:
        """Failed among ended runs (None when none has ended)."""
        return None if not self.finished else self.totals.get("failed", 0) / self.finished


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def workflow_stats(
    tx: Tx, workflow: str, since: datetime, bucket: timedelta, buckets: int
) -> WorkflowStats:
    """The :class:`WorkflowStats` of ``workflow`` (read in one transaction)."""
    width = bucket.total_seconds()
    args: dict[str, Any] = {"workflow": workflow, "since": since}
    by_bucket: list[dict[str, int]] = [{} for _ in range(buckets)]
    totals: Counter[str] = Counter()
    for row in tx.all("stats_by_bucket", width=width, **args):
        index, status, n = int(row["bucket"]), str(row["status"]), int(row["n"])
        if 0 <= index < buckets:
            by_bucket[index][status] = n
            totals[status] += n
    versions = sorted(
        (
            VersionCount(r["definition_id"], r["version"], int(r["n"]), to_datetime(r["last_at"]))
            for r in tx.all("stats_by_definition", **args)
        ),
        key=lambda v: (v.last_started is None, v.last_started),
        reverse=True,
    )
    durations = [float(r["seconds"]) for r in tx.all("stats_durations", limit=SAMPLE, **args)]
    return WorkflowStats(
        workflow=workflow,
        since=since,
        bucket=bucket,
        buckets=buckets,
        by_bucket=by_bucket,
        totals=dict(totals),
        versions=versions,
        p50_s=percentile(durations, 0.5),
        p95_s=percentile(durations, 0.95),
        slowest_steps=_step_times(tx.all("stats_steps", limit=SAMPLE, **args)),
        errors=[(str(r["error"]), int(r["n"])) for r in tx.all("stats_errors", limit=5, **args)],
    )


def _step_times(rows: Any, top: int = 5) -> list[StepTime]:
    times: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        detail = row["detail"]
        detail = json.loads(detail) if isinstance(detail, str) else detail
        ms = detail.get("ms") if isinstance(detail, dict) else None
        if row["step"] is not None and isinstance(ms, int | float):
            times[str(row["step"])].append(float(ms))
    found = [
        StepTime(step, len(ms), sum(ms) / len(ms), percentile(ms, 0.95) or 0.0, max(ms))
        for step, ms in times.items()
    ]
    return sorted(found, key=lambda s: s.p95_ms, reverse=True)[:top]
