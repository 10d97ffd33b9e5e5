"""The dashboard's Limits page: every concurrency key in use, its limit, holders and queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._engine import Engine
from ._auth import Authenticator


class LimitsPage:
    """``/limits`` (a shell refreshed live) and its fragment ``/ui/limits``."""

    def __init__(self, engine: Engine, auth: Authenticator, render: Callable[..., Any]) -> None:
        self.engine = engine
        self.auth = auth
        self.render = render  # (request, template, **context) for fragments

    async def fragment(self, request: Request) -> Response:
        """GET /ui/limits: the keys in use, with their holders and queued runs."""
        self.auth.require(request, write=False)
        response: Response = self.render(request, "limits.html", uses=await self.engine.limits())
        return response

    def routes(self, page: Callable[..., Any]) -> list[Route]:
        """The routes; ``page`` renders a shell page (the dashboard's ``_page``)."""

        async def limits_page(request: Request) -> Response:
            response: Response = page(request, "limits_page.html", "Limits", "limits")
            return response

        return [
            Route("/limits", limits_page, methods=["GET"]),
            Route("/ui/limits", self.fragment, methods=["GET"]),
        ]
