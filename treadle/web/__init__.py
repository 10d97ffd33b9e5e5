"""The HTTP API, the dashboard and ``/metrics`` of treadle (``treadle serve``).

``create_app(engine, tokens=..., cron=...)`` builds the Starlette app over an engine you open;
``run_server(...)`` builds an engine on a database URL, opens it and serves with uvicorn.
"""

from __future__ import annotations

from .._loader import load_workflows
from ._app import create_app
from ._auth import ANONYMOUS, Identity, load_tokens, parse_tokens, parse_tokens_env
from ._errors import ApiError
from ._openapi import openapi_document
from ._server import LOCALHOST, run_server, serve

__all__ = [
    "ANONYMOUS",
    "LOCALHOST",
    "ApiError",
    "Identity",
    "create_app",
    "load_tokens",
    "load_workflows",
    "openapi_document",
    "parse_tokens",
    "parse_tokens_env",
    "run_server",
    "serve",
]
