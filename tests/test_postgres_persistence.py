"""PostgreSQL specifics: schema versions and upgrades, errors, wake-ups by LISTEN/NOTIFY,
lost connections retried."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from pgserver import fresh_database, fresh_pg_dsn  # noqa: F401  (fixture)

import treadle
from treadle.persistence import _schema as schema
from treadle.persistence import persistence_from_url
from treadle.persistence._postgres import PostgresPersistence, upgrade
from treadle.persistence._sql import queries


def _sql(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def _waiting_workflow() -> treadle.Workflow:
    return (
        treadle.new("waits")
        .step("a", lambda c, s: s.data.update(a=1))
        .await_signal("go")
        .step("b", lambda c, s: s.data.update(b=2))
        .build()
    )


@pytest.fixture
async def persistence(fresh_pg_dsn: str) -> AsyncIterator[PostgresPersistence]:  # noqa: F811
    backend = PostgresPersistence(fresh_pg_dsn)
    await backend.open()
    yield backend
    await backend.close()


async def test_an_empty_database_gets_the_schema_at_start_up(pg_dsn: str) -> None:
    dsn = fresh_database(pg_dsn, migrated=False)
    backend = PostgresPersistence(dsn)
    await backend.open()
    try:
        assert await backend._run(schema.schema_version) == schema.SCHEMA_VERSION
        assert await backend.get_run("nope") is None
    finally:
        await backend.close()


async def test_without_auto_migrate_an_empty_database_needs_an_upgrade(pg_dsn: str) -> None:
    dsn = fresh_database(pg_dsn, migrated=False)
    with pytest.raises(treadle.SchemaVersionError, match="db upgrade"):
        await PostgresPersistence(dsn, auto_migrate=False).open()
    assert "created" in await upgrade(dsn)
    assert "nothing to do" in await upgrade(dsn)
    backend = PostgresPersistence(dsn, auto_migrate=False)
    await backend.open()
    await backend.close()


async def test_concurrent_start_ups_on_an_empty_database_create_the_schema_once(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = fresh_database(pg_dsn, migrated=False)
    backends = [PostgresPersistence(dsn, pool_size=1) for _ in range(4)]
    with caplog.at_level(logging.DEBUG, logger="treadle"):
        await asyncio.gather(*(b.open() for b in backends))
        await asyncio.gather(*(b.close() for b in backends))
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT key, value FROM treadle_meta").fetchall()
    assert rows == [("schema_version", str(schema.SCHEMA_VERSION))]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_newer_database_is_refused(fresh_pg_dsn: str) -> None:  # noqa: F811
    _sql(fresh_pg_dsn, "UPDATE treadle_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(treadle.SchemaVersionError, match="newer"):
        await PostgresPersistence(fresh_pg_dsn).open()
    with pytest.raises(treadle.SchemaVersionError, match="newer"):
        await upgrade(fresh_pg_dsn)


async def test_an_older_database_is_refused_until_upgraded(
    fresh_pg_dsn: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pretend this treadle is one schema version ahead, with a migration to get there.
    ahead = schema.SCHEMA_VERSION + 1
    monkeypatch.setattr(schema, "SCHEMA_VERSION", ahead)
    sql = queries("postgres")
    monkeypatch.setitem(
        sql, f"migrate_{ahead}", "ALTER TABLE runs ADD COLUMN future_column integer"
    )  # type: ignore[index]
    with pytest.raises(treadle.SchemaVersionError, match="older"):
        await PostgresPersistence(fresh_pg_dsn).open()
    said = await upgrade(fresh_pg_dsn)
    assert said == f"upgraded the treadle schema from version {ahead - 1} to {ahead}"
    backend = PostgresPersistence(fresh_pg_dsn)
    await backend.open()
    await backend.close()


async def test_an_unreachable_server_is_a_persistence_error() -> None:
    backend = PostgresPersistence("postgresql://nobody@127.0.0.1:1/none", connect_timeout=1)
    with pytest.raises(treadle.PersistenceError, match="cannot connect"):
        await backend.open()


def test_urls_open_postgres() -> None:
    backend = persistence_from_url("postgresql://u:secret@db.example/treadle")
    assert isinstance(backend, PostgresPersistence)
    assert "secret" not in repr(backend)
    assert isinstance(persistence_from_url("postgres://u@h/d"), PostgresPersistence)
    assert treadle.PostgresPersistence is PostgresPersistence


async def test_a_failing_statement_fails_alone_with_its_cause(
    persistence: PostgresPersistence,
) -> None:
    def bad(tx: object) -> object:
        return tx.execute(  # type: ignore[attr-defined]
            "insert_event", run_id="x", at=None, kind="k", step=None, detail="{not json"
        )

    results = await asyncio.gather(
        persistence._run(bad), persistence.get_run("x"), return_exceptions=True
    )
    # Malformed JSON for a jsonb column can never be stored: a DataError, not a transient one.
    assert isinstance(results[0], treadle.DataError)
    assert isinstance(results[0].__cause__, psycopg.DataError)
    assert results[1] is None


async def test_a_script_that_fails_alone_in_its_batch_leaves_nothing_written(
    persistence: PostgresPersistence,
) -> None:
    # Alone in its transaction, a script runs without a savepoint; its failure rolls the
    # transaction back and the next one starts clean.
    def half(tx: object) -> object:
        tx.execute(  # type: ignore[attr-defined]
            "insert_event", run_id="y", at=datetime.now(UTC), kind="k", step=None, detail="{}"
        )
        raise ValueError("half-way")

    with pytest.raises(treadle.PersistenceError, match="half-way"):
        await persistence._run(half)
    assert await persistence.history("y") == []
    assert await persistence.get_run("y") is None  # the connection is usable again


async def test_a_queued_statement_that_fails_late_is_blamed_on_its_own_script(
    persistence: PostgresPersistence,
) -> None:
    # In pipeline mode an executemany is only queued: its error comes back with a later round
    # trip, maybe another script's. The batch then runs again a statement at a time.
    def queued_bad(tx: object) -> object:
        row = {"run_id": "q", "at": None, "kind": "k", "step": None, "detail": "{not json"}
        tx.many("insert_event", [row])  # type: ignore[attr-defined]
        return "returned before its error came back"

    def good(tx: object) -> object:
        tx.many(  # type: ignore[attr-defined]
            "insert_event",
            [{"run_id": "g", "at": datetime.now(UTC), "kind": "k", "step": None, "detail": "{}"}],
        )
        return "kept"

    assert persistence.pipeline
    results = await asyncio.gather(
        persistence._run(good),
        persistence._run(queued_bad),
        persistence._run(good),
        return_exceptions=True,
    )
    assert results[0] == results[2] == "kept"
    assert isinstance(results[1], treadle.DataError)
    assert len(await persistence.history("g")) == 2
    assert await persistence.history("q") == []


async def test_times_come_back_in_utc(persistence: PostgresPersistence) -> None:
    engine = treadle.Engine(persistence)
    engine.register(_waiting_workflow())
    async with engine:
        run_id = await engine.start("waits")
        state = await engine.status(run_id)
        assert state.created_at.tzinfo is UTC
        assert all(e.at.tzinfo is UTC for e in await engine.history(run_id))


async def test_a_signal_sent_from_another_process_wakes_an_idle_engine_at_once(
    fresh_pg_dsn: str,  # noqa: F811
) -> None:
    workflow = _waiting_workflow()
    # The safety-net poll is far away: only NOTIFY can wake the worker in time.
    worker = treadle.Engine(PostgresPersistence(fresh_pg_dsn), poll_interval=30)
    worker.register(workflow)
    client = treadle.Engine(PostgresPersistence(fresh_pg_dsn), max_concurrent_runs=0)
    client.register(workflow)  # a client only: it executes nothing
    async with worker, client:
        run_id = await worker.start("waits")
        for _ in range(500):
            if (await client.status(run_id)).status is treadle.Status.WAITING:
                break
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        await client.signal(run_id, "go", "now")
        state = await client.wait(run_id, timeout=5)
        latency = time.perf_counter() - started
        assert state.status is treadle.Status.COMPLETED
        assert state.data == {"a": 1, "go": "now", "b": 2}
        # A new run started elsewhere is picked up the same way.
        started = time.perf_counter()
        other = await client.start("waits")
        await asyncio.sleep(0)
        for _ in range(500):
            if (await client.status(other)).status is treadle.Status.WAITING:
                break
            await asyncio.sleep(0.005)
        pickup = time.perf_counter() - started
    assert latency < 1.0, latency
    assert pickup < 1.0, pickup
    print(
        f"\n[notify] signal -> completed {latency * 1000:.0f} ms; start -> picked up "
        f"{pickup * 1000:.0f} ms"
    )


async def test_killed_connections_are_retried_and_logged(
    persistence: PostgresPersistence,
    fresh_pg_dsn: str,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = treadle.Engine(persistence)
    engine.register(_waiting_workflow())
    async with engine:
        ids = [await engine.start("waits") for _ in range(20)]
        with caplog.at_level(logging.WARNING, logger="treadle.postgres"):
            _sql(
                fresh_pg_dsn,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            await asyncio.gather(*(engine.signal(i, "go") for i in ids))
            for run_id in ids:
                assert (await engine.wait(run_id, timeout=10)).status is treadle.Status.COMPLETED
            # The listener comes back too: a signal from elsewhere still wakes the engine.
            for _ in range(200):
                if any(
                    "LISTEN connection to PostgreSQL restored" in r.message for r in caplog.records
                ):
                    break
                await asyncio.sleep(0.02)
    messages = " ".join(r.message for r in caplog.records)
    assert "retrying" in messages
    assert "reachable again" in messages
    assert "LISTEN connection to PostgreSQL restored" in messages


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[BaseException | None]:
    """Exceptions that escape any thread during the test."""
    caught: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: caught.append(args.exc_value))
    return caught


async def test_closing_during_an_outage_fails_the_retried_operation_cleanly(
    fresh_pg_dsn: str,  # noqa: F811
    thread_errors: list[BaseException | None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = PostgresPersistence(fresh_pg_dsn, pool_size=1, retry_for=60)
    await backend.open()
    pool = backend._pool
    assert pool is not None
    attempts = threading.Event()

    @contextlib.contextmanager
    def unreachable(*args: object, **kwargs: object) -> Iterator[object]:
        attempts.set()
        raise psycopg.OperationalError("server closed the connection unexpectedly")
        yield  # pragma: no cover

    monkeypatch.setattr(pool, "connection", unreachable)
    pending = asyncio.ensure_future(backend.get_run("r1"))
    assert await asyncio.to_thread(attempts.wait, 5)  # the writer is retrying now
    await backend.close()  # does not wait out retry_for
    with pytest.raises(treadle.PersistenceError, match="unreachable"):
        await pending
    assert thread_errors == []


async def test_a_closed_pool_fails_operations_with_a_persistence_error(
    fresh_pg_dsn: str,  # noqa: F811
    thread_errors: list[BaseException | None],
) -> None:
    backend = PostgresPersistence(fresh_pg_dsn, pool_size=1)
    await backend.open()
    try:
        assert backend._pool is not None
        await asyncio.to_thread(backend._pool.close)  # closed under the writers
        with pytest.raises(treadle.PersistenceError, match="pool is closed"):
            await backend.get_run("r1")
        assert thread_errors == []
    finally:
        await backend.close()
