"""The dashboard: pages are shells, and their live parts are HTML fragments under ``/ui`` that
the page fetches with the signed-in token (so they follow the API's read rules) and refreshes.
Actions call the JSON API itself, so they follow exactly its permission rules.

The handlers fetch through the engine, :mod:`._views` turns that into plain data, and the
Jinja2 templates in ``templates/`` lay it out, autoescaped."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from .._engine import Engine
from .._errors import RunNotFound
from .._rate_view import rate_rows
from .._state import Status
from ..persistence._records import InboxMessage
from ._auth import Authenticator
from ._diagram import LEGEND
from ._json import query_limit
from ._limits import LimitsPage
from ._overview import Overview
from ._schedules import Schedules
from ._search import dashboard_params, paging, query_filter
from ._views import run_rows, run_view, schedule_rows, signal_names

TEMPLATES = Path(__file__).parent / "templates"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["path"] = lambda value: quote(str(value), safe="")
    env.filters["utc"] = lambda value: value.astimezone(UTC)
    return env


class Pages:
    """The dashboard's pages and fragments over one engine."""

    def __init__(self, engine: Engine, auth: Authenticator, schedules: Schedules) -> None:
        self.engine = engine
        self.auth = auth
        self.schedules = schedules
        self.templates = Jinja2Templates(env=_environment())
        self.overview = Overview(engine, auth, self._render)
        self.limits = LimitsPage(engine, auth, self._render)

    def _render(self, request: Request, name: str, **context: Any) -> Response:
        return self.templates.TemplateResponse(request, name, context)

    def _page(
        self, request: Request, name: str, title: str, active: str, **context: Any
    ) -> Response:
        return self._render(
            request, name, title=title, active=active, open_mode=self.auth.open, **context
        )

    # Shells ----------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        """GET /: the runs page."""
        return RedirectResponse("/runs", status_code=307)

    async def runs_page(self, request: Request) -> Response:
        """GET /runs: runs with filters, refreshed live."""
        params = request.query_params
        query = urlencode({k: v for k, v in params.items() if v})
        return self._page(
            request, "runs_page.html", "Runs", "runs", params=params, statuses=list(Status),
            query=query,
        )  # fmt: skip

    async def run_page(self, request: Request) -> Response:
        """GET /runs/{run_id}: one run, refreshed live until it has finished."""
        run_id = request.path_params["run_id"]
        return self._page(request, "run_page.html", f"Run {run_id}", "runs", run_id=run_id)

    async def schedules_page(self, request: Request) -> Response:
        """GET /schedules: schedules with their next fire times."""
        return self._page(request, "schedules_page.html", "Schedules", "schedules")

    async def rate_limits_page(self, request: Request) -> Response:
        """GET /rate-limits: every rate limiter, its use now and the runs waiting for it."""
        return self._page(request, "rate_limits_page.html", "Rate limits", "rates")

    # Fragments -------------------------------------------------------------------------------

    async def runs_fragment(self, request: Request) -> Response:
        """GET /ui/runs: the runs table."""
        self.auth.require(request, write=False)
        params = request.query_params
        q = (params.get("q") or "").strip()
        flt = query_filter(dashboard_params(params))
        cursor = params.get("cursor") or None
        page = await self.engine.find_runs(
            flt, cursor=cursor, limit=query_limit(request, default=50) if not q else 1000
        )
        runs = page.runs
        if q:
            runs = [r for r in runs if q in r.id]
            if not runs:
                try:
                    runs = [await self.engine.status(q)]
                except RunNotFound:
                    runs = []
        now = datetime.now(UTC)
        return self._render(
            request, "runs.html", rows=run_rows(runs, now), now=now,
            workflows=sorted(self.engine.workflows),
            paging=paging(params, page.next_cursor if not q else None),
        )  # fmt: skip

    async def run_fragment(self, request: Request) -> Response:
        """GET /ui/runs/{run_id}: status, why it waits, actions, diagram, data, inbox,
        timeline."""
        identity = self.auth.require(request, write=False)
        run_id = request.path_params["run_id"]
        state = await self.engine.status(run_id)
        events = await self.engine.history(run_id)
        shape = await self.engine.definition(run_id)
        children = await self.engine.runs(parent_id=run_id, limit=100)
        inbox: list[InboxMessage] = []
        for name in signal_names(shape):
            inbox += await self.engine.persistence.read_inbox(run_id, "signal", name)
        view = run_view(
            state, events, shape, identity=identity, open_mode=self.auth.open,
            children=children, inbox=inbox,
        )  # fmt: skip
        return self._render(request, "run.html", view=view, legend=LEGEND)

    async def schedules_fragment(self, request: Request) -> Response:
        """GET /ui/schedules: schedules, their next fire times, and enable/disable."""
        identity = self.auth.require(request, write=False)
        rows = schedule_rows(await self.schedules.all(previews=3), datetime.now(UTC))
        return self._render(
            request, "schedules.html", rows=rows, can_write=identity.can_write,
            workflows=sorted(self.engine.workflows),
        )  # fmt: skip

    async def rate_limits_fragment(self, request: Request) -> Response:
        """GET /ui/rate-limits: the rate limiters' table."""
        self.auth.require(request, write=False)
        rows = rate_rows(await self.engine.rate_limits())
        return self._render(request, "rate_limits.html", rows=rows)

    def routes(self) -> list[Route]:
        """Every route of the dashboard."""
        return [
            Route("/", self.home, methods=["GET"]),
            Route("/runs", self.runs_page, methods=["GET"]),
            Route("/runs/{run_id}", self.run_page, methods=["GET"]),
            Route("/schedules", self.schedules_page, methods=["GET"]),
            Route("/ui/runs", self.runs_fragment, methods=["GET"]),
            Route("/ui/runs/{run_id}", self.run_fragment, methods=["GET"]),
            Route("/ui/schedules", self.schedules_fragment, methods=["GET"]),
            Route("/rate-limits", self.rate_limits_page, methods=["GET"]),
            Route("/ui/rate-limits", self.rate_limits_fragment, methods=["GET"]),
            *self.overview.routes(self._page),
            *self.limits.routes(self._page),
        ]
