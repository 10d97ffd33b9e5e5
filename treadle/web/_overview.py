"""The dashboard's workflow pages: the list of workflows, and one workflow's overview — its
versions, runs per status over time (a stacked bar chart drawn as SVG on the server), failure
rate, p50/p95 duration, the slowest steps and the most common errors.

The numbers come from :meth:`Persistence.workflow_stats` (grouped in SQL); this module turns
them into what the templates lay out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._duration import parse_duration
from .._engine import Engine
from .._errors import WorkflowNotFound
from .._ids import check_id
from .._state import Status
from ..persistence._stats import WorkflowStats
from ._auth import Authenticator
from ._errors import ApiError

WINDOWS: dict[str, tuple[str, int]] = {"24h": ("1h", 24), "7d": ("6h", 28), "30d": ("1d", 30)}
"""The time windows a page offers: name -> (bucket width, number of buckets)."""

CHART_STATUSES = [s.value for s in Status]  # bottom to top in each bar

Render = Callable[..., Response]


@dataclass(frozen=True)
class Bar:
    """One status's part of one bucket's bar, in SVG units."""

    x: float
    y: float
    width: float
    height: float
    status: str
    count: int
    label: str


def window(name: str, now: datetime) -> tuple[datetime, timedelta, int]:
    """``since``, the bucket width and the number of buckets of window ``name``, aligned so
    that ``now`` falls in the last bucket."""
    if name not in WINDOWS:
        raise ApiError(400, "BadRequest", f"range must be one of {', '.join(WINDOWS)}")
    width_text, buckets = WINDOWS[name]
    width = parse_duration(width_text)
    step = width.total_seconds()
    last = datetime.fromtimestamp((now.timestamp() // step) * step, UTC)
    return last - width * (buckets - 1), width, buckets


def chart(stats: WorkflowStats, width: float = 720.0, height: float = 160.0) -> dict[str, Any]:
    """The stacked bars of runs per status in each bucket, scaled to ``width`` by ``height``."""
    tallest = max((sum(b.values()) for b in stats.by_bucket), default=0) or 1
    slot = width / stats.buckets
    bars: list[Bar] = []
    for index, counts in enumerate(stats.by_bucket):
        start = stats.since + stats.bucket * index
        top = height
        for status in CHART_STATUSES:
            n = counts.get(status, 0)
            if not n:
                continue
            h = height * n / tallest
            top -= h
            label = f"{start:%Y-%m-%d %H:%M} UTC: {n} {status}"
            bars.append(Bar(index * slot + 1, top, max(slot - 2, 1), h, status, n, label))
    ticks = [
        {"x": i * slot, "text": f"{stats.since + stats.bucket * i:%m-%d %H:%M}"}
        for i in range(0, stats.buckets, max(1, stats.buckets // 6))
    ]
    return {"width": width, "height": height, "bars": bars, "ticks": ticks, "max": tallest}


def seconds_text(value: float | None) -> str:
    """A duration for people: ``850 ms``, ``12.3 s``, ``4.0 min``, ``2.5 h``; ``—`` for None."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


class Overview:
    """The workflow pages over one engine."""

    def __init__(self, engine: Engine, auth: Authenticator, render: Render) -> None:
        self.engine = engine
        self.auth = auth
        self.render = render  # (request, template, **context) for fragments

    async def _names(self) -> list[str]:
        stored = {d.name for d in await self.engine.persistence.definitions()}
        return sorted(stored | set(self.engine.workflows))

    async def list_fragment(self, request: Request) -> Response:
        """GET /ui/workflows: every workflow registered here or stored by a worker."""
        self.auth.require(request, write=False)
        return self.render(request, "workflows.html", names=await self._names())

    async def fragment(self, request: Request) -> Response:
        """GET /ui/workflows/{name}?range=24h|7d|30d: one workflow's overview."""
        self.auth.require(request, write=False)
        name = check_id(request.path_params["name"], "workflow name")
        if name not in await self._names():
            raise WorkflowNotFound(name)
        now = datetime.now(UTC)
        chosen = request.query_params.get("range") or "7d"
        since, bucket, buckets = window(chosen, now)
        stats = await self.engine.persistence.workflow_stats(
            name, since=since, bucket=bucket, buckets=buckets
        )
        rate = stats.failure_rate
        return self.render(
            request,
            "workflow.html",
            stats=stats,
            chart=chart(stats),
            statuses=CHART_STATUSES,
            ranges=list(WINDOWS),
            chosen=chosen,
            failure=("—" if rate is None else f"{rate:.1%}"),
            p50=seconds_text(stats.p50_s),
            p95=seconds_text(stats.p95_s),
            step=WINDOWS[chosen][0],
            now=now,
        )

    def routes(self, page: Callable[..., Any]) -> list[Route]:
        """The routes; ``page`` renders a shell page (the dashboard's ``_page``)."""

        async def workflows_page(request: Request) -> Response:
            response: Response = page(request, "workflows_page.html", "Workflows", "workflows")
            return response

        async def workflow_page(request: Request) -> Response:
            name = request.path_params["name"]
            response: Response = page(
                request, "workflow_page.html", f"Workflow {name}", "workflows", workflow=name
            )
            return response

        return [
            Route("/workflows", workflows_page, methods=["GET"]),
            Route("/workflows/{name}", workflow_page, methods=["GET"]),
            Route("/ui/workflows", self.list_fragment, methods=["GET"]),
            Route("/ui/workflows/{name}", self.fragment, methods=["GET"]),
        ]
