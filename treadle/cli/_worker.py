"""``treadle worker``: execute the runs of your workflows until SIGTERM/SIGINT, then drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta

import click

from .._engine import Engine
from .._nodes import Workflow
from ..persistence import Persistence
from ._app import CODEC_SPEC, age_value, app_database, cli, db_given, db_option, load_app, run
from ._metrics_server import check_available, metrics_options, metrics_server
from ._processes import child_command, stop_when_orphaned, supervise

log = logging.getLogger("treadle.worker")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s%(run)s: %(message)s"


class _RunIdFilter(logging.Filter):
    """Adds ``%(run)s``: `` [run <id>]`` for records logged with ``extra={"run_id": ...}``."""

    def filter(self, record: logging.LogRecord) -> bool:
        run_id = getattr(record, "run_id", None)
        record.run = f" [run {run_id}]" if run_id else ""
        return True


def setup_logging(level: str) -> None:
    """Log lines to stderr, with the run id where a record carries one."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(_RunIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


async def serve_until_stopped(
    engine: Engine,
    *,
    drain: float,
    with_cron: bool,
    stop: asyncio.Event | None = None,
    metrics: tuple[str, int, float] | None = None,
) -> None:
    """Open ``engine`` (and a cron on it, and ``/metrics`` on ``metrics``: host, port and
    refresh interval), run until SIGTERM/SIGINT or ``stop``, then drain."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[str] = []

    def on_signal(name: str) -> None:
        if received:
            log.warning("%s again: still draining (up to %gs)", name, drain)
        received.append(name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on every platform
            loop.add_signal_handler(signum, on_signal, signum.name)
    await engine.open()
    cron = None
    served = contextlib.AsyncExitStack()
    try:
        if metrics is not None:
            await served.enter_async_context(metrics_server(engine, *metrics))
        if with_cron:
            from ._cron import make_cron

            cron = make_cron(engine)
            await cron.start()
        log.info(
            "worker %s ready: workflows %s, up to %d runs at once",
            engine.owner,
            ", ".join(sorted(engine.workflows)),
            engine.max_concurrent_runs,
        )
        await stop.wait()
        log.info(
            "%s: stopping; running steps get up to %gs to finish, then their runs are released",
            received[0] if received else "stop",
            drain,
        )
    finally:
        if cron is not None:
            await cron.stop()
        await engine.close(drain=drain)
        await served.aclose()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
    finished = engine.metrics.runs_finished
    summary = ", ".join(f"{n} {wf} {status}" for (wf, status), n in sorted(finished.items()))
    log.info("worker %s stopped (%s)", engine.owner, summary or "no runs finished here")


def build_engine(
    persistence: Persistence,
    workflows: Sequence[Workflow],
    *,
    concurrency: int,
    lease: float,
    retention: timedelta | None = None,
    step_threads: int = 32,
) -> Engine:
    """An engine on ``persistence`` with ``workflows`` registered."""
    engine = Engine(
        persistence,
        max_concurrent_runs=concurrency,
        lease=lease,
        retention=retention,
        step_threads=step_threads,
    )
    for workflow in workflows:
        engine.register(workflow)
    return engine


@cli.command()
@click.argument("app", metavar="MODULE:ATTR", envvar="TREADLE_APP")
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Runs executed at once by this worker.",
)
@click.option(
    "--step-threads",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Threads for plain (not async) step functions; runs of plain steps are claimed only "
    "while one is free.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=0.5),
    default=30.0,
    show_default=True,
    help="Seconds before another worker takes over the runs of a worker that died.",
)
@click.option(
    "--drain",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="On SIGTERM/SIGINT, seconds running steps get to finish before their runs are released.",
)
@click.option(
    "--cron/--no-cron", "with_cron", default=True, show_default=True, help="Fire due schedules."
)
@click.option(
    "--retention",
    callback=age_value,
    metavar="AGE",
    help="Delete finished runs that ended longer ago (30d, 1y...; default: the Engine's, else "
    "keep them); a workflow's own .retention() wins.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
@click.option(
    "--processes",
    "-p",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes on this machine (one per core uses them all); each has the options "
    "given, --metrics-port N gives process i the port N+i.",
)
@metrics_options
@db_option
def worker(
    app: str,
    concurrency: int,
    step_threads: int,
    lease: float,
    drain: float,
    with_cron: bool,
    retention: timedelta | None,
    log_level: str,
    processes: int,
    metrics_port: int | None,
    metrics_host: str,
    metrics_refresh: float,
    db_url: str,
) -> None:
    """Execute the runs of the workflows in MODULE:ATTR (an Engine, a Workflow or a list of
    Workflows) until SIGTERM or SIGINT, then drain and release what is left.

    When MODULE:ATTR names an Engine, the worker works on that engine's database (--db, if
    given, must name the same one); otherwise on --db.

    Start as many workers as you like on one PostgreSQL database (or one SQLite file on one
    machine): each run is executed by one of them at a time. --processes N starts N of them
    here and keeps them running (one that dies is started again).
    """
    if metrics_port is not None:
        check_available()
    metrics = None if metrics_port is None else (metrics_host, metrics_port, metrics_refresh)
    loaded = load_app(app)
    setup_logging(log_level.upper())
    if processes > 1:
        options = {
            "--concurrency": concurrency, "--step-threads": step_threads, "--lease": lease,
            "--drain": drain,
            "--log-level": log_level, "--metrics-host": metrics_host,
            "--metrics-refresh": metrics_refresh,
        }  # fmt: skip
        if db_given():  # else each process finds the app's Engine's database, or the default
            options["--db"] = db_url
        if retention is not None:
            options["--retention"] = f"{retention.total_seconds():g}s"
        codec = click.get_current_context().meta.get(CODEC_SPEC)
        if codec:
            options["--codec"] = codec
        common = [app, "--cron" if with_cron else "--no-cron"]
        common += [str(x) for pair in options.items() for x in pair]
        commands = [
            child_command(
                common
                if metrics_port is None
                else [*common, "--metrics-port", str(metrics_port + i if metrics_port else 0)]
            )
            for i in range(processes)
        ]
        sys.exit(supervise(commands, drain))
    persistence = app_database(loaded, db_url)
    if retention is None and loaded.engine is not None:
        retention = loaded.engine.retention
    engine = build_engine(
        persistence,
        loaded.workflows,
        concurrency=concurrency,
        lease=lease,
        retention=retention,
        step_threads=step_threads,
    )

    async def serve() -> None:
        stop = asyncio.Event()
        async with stop_when_orphaned(stop):
            await serve_until_stopped(
                engine, drain=drain, with_cron=with_cron, metrics=metrics, stop=stop
            )

    run(serve, app=app)
