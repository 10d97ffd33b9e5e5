"""The Starlette application: the JSON API, the dashboard and ``/metrics`` over one engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .._engine import Engine
from .._errors import TreadleError
from .._prometheus import exposition
from ..cron import Cron
from ._api import Api
from ._auth import Authenticator, Identity
from ._errors import ApiError, handle_error
from ._pages import Pages
from ._schedules import Schedules

STATIC = Path(__file__).parent / "static"


def create_app(
    engine: Engine,
    *,
    tokens: dict[str, Identity] | None = None,
    cron: Cron | None = None,
) -> Starlette:
    """The HTTP app over ``engine`` (which the caller opens and closes).

    ``tokens`` maps bearer tokens to identities; without any, every request is allowed (serve
    it on 127.0.0.1 only: :func:`treadle.web.run_server` does). ``cron`` manages schedules; by
    default a :class:`treadle.Cron` on the engine is made on first use.
    """
    auth = Authenticator(tokens)
    schedules = Schedules(engine, cron)
    api = Api(engine, auth, schedules)
    pages = Pages(engine, auth, schedules)

    async def metrics(request: Request) -> Response:
        auth.require(request, write=False)
        body, content_type = await exposition(engine)
        return Response(body, media_type=content_type)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield  # the engine belongs to the caller

    app = Starlette(
        routes=[
            *api.routes(),
            *pages.routes(),
            Route("/metrics", metrics, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={
            ApiError: handle_error,
            HTTPException: handle_error,
            TreadleError: handle_error,
            ValueError: handle_error,
            Exception: handle_error,
        },
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.auth = auth
    return app
