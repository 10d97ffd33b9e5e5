"""``treadle serve``: an engine on a database, the app over it, served by uvicorn."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

import uvicorn

from .._codec import Codec
from .._engine import Engine
from .._loader import load_workflows
from ..cron import Cron
from ..persistence import persistence_from_url
from ._app import create_app
from ._auth import Identity, load_tokens

log = logging.getLogger("treadle.web")
LOCALHOST = "127.0.0.1"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def safe_host(host: str, tokens: dict[str, Identity] | None) -> str:
    """The address to bind: without tokens, only this machine may connect."""
    if tokens:
        return host
    if not _is_loopback(host):
        log.warning(
            "no API tokens configured: refusing to listen on %s; listening on %s only. "
            "Configure tokens (a tokens file or TREADLE_TOKENS) to serve other machines.",
            host,
            LOCALHOST,
        )
        return LOCALHOST
    log.warning("no API tokens configured: every request is allowed; listening on %s only", host)
    return host


async def serve(
    db_url: str,
    host: str = LOCALHOST,
    port: int = 8080,
    tokens_file: str | None = None,
    module: str | None = None,
    codec: Codec | None = None,
) -> None:
    """Open an engine on ``db_url`` (through ``codec``) with a :class:`treadle.Cron`, serve
    until stopped, then close both."""
    tokens = load_tokens(tokens_file)
    bind = safe_host(host, tokens)
    engine = Engine(persistence_from_url(db_url), codec=codec)
    if module:
        for workflow in load_workflows(module):
            engine.register(workflow)
    cron = Cron(engine)
    await engine.open()
    try:
        await cron.start()
        app = create_app(engine, tokens=tokens, cron=cron)
        config = uvicorn.Config(app, host=bind, port=port, log_level="info", lifespan="on")
        log.info(
            "treadle dashboard on http://%s:%d/ (API: /api, docs: /api/openapi.json)", bind, port
        )
        await uvicorn.Server(config).serve()
    finally:
        await cron.stop()
        await engine.close()


def run_server(
    db_url: str,
    host: str = LOCALHOST,
    port: int = 8080,
    tokens_file: str | None = None,
    module: str | None = None,
    codec: Codec | None = None,
) -> None:
    """Serve the API and the dashboard of an engine on ``db_url`` until interrupted.

    ``tokens_file`` (JSON or TOML) or ``TREADLE_TOKENS`` configures bearer tokens; without any,
    the server listens on 127.0.0.1 only. ``module`` (``"pkg.mod:attr"``) names the workflows
    to register; ``codec`` is the :class:`treadle.Codec` run data is stored through.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(db_url, host, port, tokens_file, module, codec))
