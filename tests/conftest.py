"""Shared fixtures: every engine test runs against every persistence.

- ``backend``: "memory", "sqlite" or "postgres" (the last one on the throwaway server of
  tests/pgserver.py; its tests share one database, emptied before each test).
- ``make_persistence()``: a new persistence object over the *same* storage each call, so that a
  test can close an engine and open another one as a restarted process would. For "memory" this
  is one shared object whose ``close`` is deferred to the end of the test (an in-memory database
  does not outlive its connection).
- ``persistence``: the first one of those.
- ``engine``: an open :class:`treadle.Engine` on ``persistence``, closed after the test. If the
  test also asks for ``clock``, the engine runs on that :class:`treadle.FakeClock`.
- ``make_engine(*workflows, clock=None)``: more engines on the same storage (closed after).
- ``kit``: an open :class:`treadle.testing.TestKit` on ``persistence`` (its own fake clock), for
  tests of time: ``await kit.advance("1h")`` fires what comes due, each at its own time.
"""

from __future__ import annotations

import contextlib
import os
import types
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pgserver
import psycopg
import pytest
from enginekit import EngineFactory
from pgserver import pg_dsn  # noqa: F401  (registers the session fixture)
from recoverykit import harness  # noqa: F401  (registers the fixture of the SIGKILL tests)

import treadle
from treadle.testing import TestKit

BACKENDS = ["memory", "sqlite", "postgres"]

# Engine options for tests: the safety-net poll is short so that nothing hangs on it.
ENGINE_OPTIONS: dict[str, Any] = {"poll_interval": 0.2}


@pytest.fixture(scope="session")
def _pg_shared(pg_dsn: str) -> str:  # noqa: F811  (the fixture imported above)
    """One migrated database for the whole session.

    A fresh database per test (``CREATE DATABASE ... TEMPLATE``) costs ~0.4 s each; emptying
    the tables of one database costs a few milliseconds, and isolates tests just as well.
    """
    return pgserver.fresh_database(pg_dsn)


def _postgres_dsn(request: pytest.FixtureRequest) -> str:
    """The shared test database, emptied of everything but its schema version."""
    dsn: str = request.getfixturevalue("_pg_shared")
    # A connection per test: the restart tests end every connection the server had.
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename <> 'treadle_meta'"
            )
        ]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    return dsn


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the persistence backend under test."""
    name: str = request.param
    return name


@pytest.fixture
async def make_persistence(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[], treadle.Persistence]]:
    """A factory of persistence objects that all see one storage (one per test)."""
    if backend == "memory":
        memory = treadle.MemoryPersistence()
        real_close = memory.close
        memory.close = types.MethodType(_no_close, memory)  # type: ignore[method-assign]
        yield lambda: memory
        await real_close()
    elif backend == "sqlite":
        path = str(tmp_path / "treadle.db")
        yield lambda: treadle.SQLitePersistence(path)
    else:
        dsn = _postgres_dsn(request)
        yield lambda: treadle.PostgresPersistence(dsn)


async def _no_close(self: treadle.Persistence) -> None:
    """An in-memory database must outlive the engines of one test: it closes at the end."""


@pytest.fixture
def persistence(make_persistence: Callable[[], treadle.Persistence]) -> treadle.Persistence:
    """A persistence of the backend under test (not opened: the engine opens it)."""
    return make_persistence()


@pytest.fixture
def clock() -> treadle.FakeClock:
    """A fake clock: move it with ``clock.advance("1h")``."""
    return treadle.FakeClock()


@pytest.fixture
async def make_engine(
    make_persistence: Callable[[], treadle.Persistence],
) -> AsyncIterator[EngineFactory]:
    """Open more engines on the same storage: ``await make_engine(wf, ..., clock=c)``."""
    engines: list[treadle.Engine] = []

    async def make(
        *workflows: treadle.Workflow, clock: treadle.Clock | None = None, **options: Any
    ) -> treadle.Engine:
        engine = treadle.Engine(make_persistence(), clock=clock, **{**ENGINE_OPTIONS, **options})
        for workflow in workflows:
            engine.register(workflow)
        await engine.open()
        engines.append(engine)
        return engine

    yield make
    for engine in reversed(engines):
        with contextlib.suppress(Exception):
            await engine.close(drain=0.5)


@pytest.fixture
async def engine(
    persistence: treadle.Persistence, request: pytest.FixtureRequest
) -> AsyncIterator[treadle.Engine]:
    """An open engine on the backend under test (on the ``clock`` fixture if the test uses it)."""
    clock = request.getfixturevalue("clock") if "clock" in request.fixturenames else None
    engine = treadle.Engine(persistence, clock=clock, **ENGINE_OPTIONS)
    await engine.open()
    try:
        yield engine
    finally:
        await engine.close(drain=0.5)


@pytest.fixture
async def kit(persistence: treadle.Persistence) -> AsyncIterator[TestKit]:
    """An open test kit on the backend under test; register workflows with ``kit.register``."""
    async with TestKit(persistence=persistence) as kit:
        yield kit


# CI runs every test: with TREADLE_NO_SKIP set (as .ci/run sets it), a skip — a missing
# PostgreSQL, Chromium or test package — is a failure, not a quiet pass.
_NO_SKIP = bool(os.environ.get("TREADLE_NO_SKIP"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    if _NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (
            f"skipped, but TREADLE_NO_SKIP requires every test to run: {report.longrepr}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    outcome = yield
    report = outcome.get_result()
    if _NO_SKIP and report.skipped:
        report.outcome = "failed"
        report.longrepr = (
            f"skipped, but TREADLE_NO_SKIP requires every test to run: {report.longrepr}"
        )
