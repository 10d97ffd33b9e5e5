"""``treadle worker --metrics-port``: ``/metrics`` of one worker, for Prometheus to scrape.

prometheus-client's own HTTP server answers in a thread of its own, so a scrape never waits for
the event loop; it reads the engine's counters (copied, see :mod:`treadle._metrics`) and the
queue's gauges that a task on the loop reads from the database every ``interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ._app import UserError

if TYPE_CHECKING:
    from .._engine import Engine
    from .._prometheus import Exporter

log = logging.getLogger("treadle.worker")

REFRESH_SECONDS = 5.0
"""How often the worker reads the queue's gauges from the database."""

MISSING = (
    "--metrics-port needs prometheus-client, which comes with the web extra: "
    "pip install 'treadle[web]'"
)


F = TypeVar("F", bound=Callable[..., Any])

_PORT_HELP = (
    "Serve this worker's Prometheus metrics on http://HOST:PORT/metrics (needs prometheus-client,"
    " of the web extra: pip install 'treadle[web]')."
)


def metrics_options(command: F) -> F:
    """``--metrics-port``, ``--metrics-host`` and ``--metrics-refresh`` of ``treadle worker``."""
    port = click.option("--metrics-port", type=click.IntRange(0, 65535), help=_PORT_HELP)
    host = click.option(
        "--metrics-host", default="127.0.0.1", show_default=True,
        help="The address --metrics-port listens on (0.0.0.0 for every interface).",
    )  # fmt: skip
    refresh = click.option(
        "--metrics-refresh", type=click.FloatRange(min=0.1), default=REFRESH_SECONDS,
        show_default=True,
        help="Seconds between two reads of the queue's gauges (waiting runs, queue lag).",
    )  # fmt: skip
    return port(host(refresh(command)))


def check_available() -> None:
    """Raise a :class:`UserError` that says what to install when prometheus-client is missing."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise UserError(MISSING) from None


@contextlib.asynccontextmanager
async def metrics_server(
    engine: Engine, host: str, port: int, interval: float = REFRESH_SECONDS
) -> AsyncIterator[int]:
    """Serve ``/metrics`` of ``engine`` on ``host:port`` while the block runs; yields the port
    (the one chosen by the system for port 0)."""
    from prometheus_client import start_http_server

    from .._prometheus import Exporter as Made

    exporter = Made(engine)
    await exporter.refresh()
    try:
        server, thread = start_http_server(port, addr=host, registry=exporter.registry())
    except OSError as exc:
        raise UserError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    bound = int(server.server_address[1])
    log.info("metrics on http://%s:%d/metrics", host, bound)
    refresher = asyncio.create_task(_refresh(exporter, interval))
    try:
        yield bound
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        server.shutdown()
        server.server_close()
        thread.join(5)


async def _refresh(exporter: Exporter, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await exporter.refresh()
        except Exception:  # the database may be away for a while: keep the last figures
            log.warning("metrics: could not read the queue's gauges; retrying", exc_info=True)
