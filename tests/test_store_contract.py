"""The persistence contract (treadle/persistence/_base.py), checked operation by operation on
every backend: memory, SQLite and PostgreSQL, through the ``backend`` fixture of conftest.py.

``stores()`` opens another persistence object on the same storage, as another engine process
would (for memory it is the same object: an in-memory database has one connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from pgserver import fresh_database

import treadle
from treadle import Persistence, Status
from treadle._text import require_storable, storable, storable_json
from treadle.cli import cli
from treadle.persistence import SQLPersistence, persistence_from_url
from treadle.persistence import _schema as schema
from treadle.persistence._base import utcnow
from treadle.persistence._records import Checkpoint, NewEvent, RunRecord, ScheduleRecord
from treadle.persistence._sql import queries

Stores = Callable[[], Awaitable[Persistence]]


@pytest.fixture
async def stores(make_persistence: Callable[[], Persistence]) -> AsyncIterator[Stores]:
    opened: list[Persistence] = []

    async def open_one() -> Persistence:
        store = make_persistence()
        await store.open()
        opened.append(store)
        return store

    yield open_one
    for store in reversed(opened):
        await store.close()


@pytest.fixture
async def store(stores: Stores) -> Persistence:
    return await stores()


def _run(
    run_id: str,
    *,
    status: Status = Status.PENDING,
    owner: str | None = None,
    lease_until: datetime | None = None,
    parent_id: str | None = None,
) -> RunRecord:
    now = utcnow()
    return RunRecord(
        id=run_id,
        workflow="w",
        definition_id="d",
        status=status,
        data='{"n":0}',
        cursor="{}",
        created_at=now,
        updated_at=now,
        parent_id=parent_id,
        owner=owner,
        lease_until=lease_until,
    )


def _checkpoint(
    run_id: str, token: int, status: Status = Status.RUNNING, **fields: object
) -> Checkpoint:
    return Checkpoint(
        run_id=run_id,
        token=token,
        status=status,
        data=str(fields.pop("data", '{"n":1}')),
        cursor="{}",
        now=utcnow(),
        **fields,  # type: ignore[arg-type]
    )


def _soon(seconds: float = 30) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


def _expired() -> datetime:
    return utcnow() - timedelta(seconds=1)


async def _claim(store: Persistence, owner: str, limit: int = 10) -> list[RunRecord]:
    return await store.claim_runs(owner, ["d"], utcnow(), _soon(), limit)


async def test_every_backend_is_a_persistence(store: Persistence) -> None:
    assert isinstance(store, Persistence)
    assert isinstance(store, SQLPersistence)


# Fencing -------------------------------------------------------------------------------------


async def test_a_write_with_a_stale_token_raises_lease_lost_and_changes_nothing(
    stores: Stores,
) -> None:
    a, b = await stores(), await stores()
    await a.create_run(_run("r1", owner="a", lease_until=_expired()), NewEvent("created"))
    [claimed] = await _claim(b, "b")
    assert (claimed.owner, claimed.token) == ("b", 2)
    before = await a.get_run("r1")
    history = await a.history("r1")

    for status in (Status.RUNNING, Status.WAITING, Status.COMPLETED):
        stale = _checkpoint(
            "r1", 1, status, data='{"n":99}', events=[NewEvent("step_completed", "stale")]
        )
        with pytest.raises(treadle.LeaseLost):
            await a.save_checkpoint(stale)
    await a.release_run("r1", 1)  # a stale release is ignored too

    assert await a.get_run("r1") == before
    assert await a.history("r1") == history
    await b.save_checkpoint(_checkpoint("r1", 2, data='{"n":1}'))
    stored = await a.get_run("r1")
    assert stored is not None and stored.data == '{"n":1}' and stored.owner == "b"


# Claims --------------------------------------------------------------------------------------


async def test_claims_take_the_oldest_runnable_runs_and_bump_the_token(store: Persistence) -> None:
    for n in range(3):
        await store.create_run(_run(f"r{n}"), NewEvent("created"))
    await store.create_run(_run("leased", owner="x", lease_until=_soon()), NewEvent("created"))
    claimed = await _claim(store, "a", limit=2)
    assert [r.id for r in claimed] == ["r0", "r1"]
    assert all(r.status is Status.RUNNING and r.owner == "a" and r.token == 2 for r in claimed)
    assert [r.id for r in await _claim(store, "b")] == ["r2"]  # a live lease is not runnable
    assert await store.claim_runs("c", [], utcnow(), _soon(), 10) == []
    assert await store.claim_runs("c", ["d"], utcnow(), _soon(), 0) == []


async def test_two_claimers_never_get_the_same_run(stores: Stores) -> None:
    a, b = await stores(), await stores()
    ids = {f"r{n}" for n in range(40)}
    for run_id in sorted(ids):
        await a.create_run(_run(run_id), NewEvent("created"))
    got: dict[str, list[str]] = {"a": [], "b": []}

    async def claimer(store: Persistence, owner: str) -> None:
        while claimed := await _claim(store, owner, limit=3):
            got[owner].extend(r.id for r in claimed)

    await asyncio.gather(claimer(a, "a"), claimer(b, "b"), claimer(a, "a"), claimer(b, "b"))
    assert not set(got["a"]) & set(got["b"])
    assert sorted(got["a"] + got["b"]) == sorted(ids)  # each run once, none lost


async def test_a_waiting_run_is_claimed_once_its_timer_is_due(store: Persistence) -> None:
    await store.create_run(_run("r1"), NewEvent("created"))
    [run] = await _claim(store, "a")
    wake = utcnow() + timedelta(hours=1)
    ack = await store.save_checkpoint(
        _checkpoint("r1", run.token, Status.WAITING, waiting_for=["timer:t"], wake_at=wake)
    )
    assert ack.suspended
    assert await store.next_wake(["d"]) == wake
    assert await store.claim_runs("b", ["d"], wake - timedelta(seconds=1), _soon(), 10) == []
    [woken] = await store.claim_runs("b", ["d"], wake, _soon(), 10)
    assert (woken.status, woken.waiting_for, woken.wake_at) == (Status.RUNNING, [], None)


# Leases --------------------------------------------------------------------------------------


async def test_leases_are_renewed_until_another_owner_claims_the_expired_run(
    stores: Stores,
) -> None:
    a, b = await stores(), await stores()
    await a.create_run(_run("r1", owner="a", lease_until=_expired()), NewEvent("created"))
    await a.create_run(_run("r2", owner="a", lease_until=_soon()), NewEvent("created"))
    assert await a.owners() == ["a"]  # an expired lease still names its owner
    later = _soon(60)
    assert await a.renew_leases("a", later) == {"r1": None, "r2": None}
    assert await _claim(b, "b") == []  # renewed: r1 is no longer expired
    renewed = await a.get_run("r1")
    assert renewed is not None and renewed.lease_until == later

    await a.renew_leases("a", _expired())
    assert {r.id for r in await _claim(b, "b")} == {"r1", "r2"}
    assert await a.renew_leases("a", _soon()) == {}
    assert await b.owners() == ["b"]
    assert await b.release_runs("b") == 2
    assert await b.owners() == []
    assert len(await _claim(a, "a")) == 2  # released runs are claimable at once


async def test_a_pause_waits_for_a_live_owner_but_not_for_an_expired_one(
    store: Persistence,
) -> None:
    await store.create_run(_run("live", owner="a", lease_until=_soon()), NewEvent("created"))
    await store.create_run(_run("gone", owner="a", lease_until=_expired()), NewEvent("created"))
    live = await store.request_pause("live")
    assert (live.status, live.control) == (Status.PENDING, "pause")
    gone = await store.request_pause("gone")
    assert gone.status is Status.PAUSED
    assert (await store.renew_leases("a", _soon())) == {"live": "pause"}
    with pytest.raises(treadle.RunNotFound):
        await store.request_pause("nope")
    resumed = await store.resume("live")  # withdraws the pause its owner has not taken yet
    assert resumed.control is None
    with pytest.raises(treadle.InvalidTransition):
        await store.resume("live")


# Checkpoints and the inbox -------------------------------------------------------------------


async def test_a_waiting_checkpoint_with_its_message_in_the_inbox_is_written_running(
    store: Persistence,
) -> None:
    await store.create_run(_run("r1"), NewEvent("created"))
    [run] = await _claim(store, "a")
    await store.deliver("r1", "signal", "go", {"x": 1}, NewEvent("signal_received"))
    ack = await store.save_checkpoint(
        _checkpoint("r1", run.token, Status.WAITING, waiting_for=["signal:go"])
    )
    assert not ack.suspended
    stored = await store.get_run("r1")
    assert stored is not None
    assert (stored.status, stored.owner, stored.waiting_for) == (Status.RUNNING, "a", [])
    [message] = await store.read_inbox("r1", "signal", "go")
    assert message.payload == {"x": 1}

    # Once consumed (by this very checkpoint), the message no longer keeps the run awake.
    ack = await store.save_checkpoint(
        _checkpoint(
            "r1", run.token, Status.WAITING, waiting_for=["signal:go"], consumed=[message.seq]
        )
    )
    assert ack.suspended
    stored = await store.get_run("r1")
    assert stored is not None
    assert (stored.status, stored.owner, stored.waiting_for) == (
        Status.WAITING,
        None,
        ["signal:go"],
    )
    assert await store.read_inbox("r1", "signal", "go") == []


async def test_a_message_for_a_waiting_run_makes_it_runnable(store: Persistence) -> None:
    await store.create_run(_run("r1"), NewEvent("created"))
    [run] = await _claim(store, "a")
    await store.save_checkpoint(
        _checkpoint("r1", run.token, Status.WAITING, waiting_for=["signal:go"])
    )
    other = await store.deliver("r1", "signal", "other", None, NewEvent("signal_received"))
    assert other.status is Status.WAITING
    woken = await store.deliver("r1", "signal", "go", None, NewEvent("signal_received"))
    assert woken.status is Status.PENDING and woken.token == run.token + 1
    await store.save_checkpoint(_checkpoint("r1", woken.token, Status.COMPLETED))
    with pytest.raises(treadle.InvalidTransition):
        await store.deliver("r1", "signal", "go", None, NewEvent("signal_received"))
    with pytest.raises(treadle.RunNotFound):
        await store.deliver("nope", "signal", "go", None, NewEvent("signal_received"))


async def test_a_finished_child_wakes_its_waiting_parent(store: Persistence) -> None:
    await store.create_run(_run("parent"), NewEvent("created"))
    await store.create_run(_run("child", parent_id="parent"), NewEvent("created"))
    claimed = {r.id: r for r in await _claim(store, "a")}
    await store.save_checkpoint(
        _checkpoint("parent", claimed["parent"].token, Status.WAITING, waiting_for=["run:child"])
    )
    await store.save_checkpoint(
        _checkpoint(
            "child", claimed["child"].token, Status.FAILED, error="boom", parent_id="parent"
        )
    )
    parent = await store.get_run("parent")
    assert parent is not None and parent.status is Status.PENDING
    [message] = await store.read_inbox("parent", "run", "child")
    assert message.payload == {"status": "failed"}
    assert await store.finished_among(["parent", "child", "nope"]) == ["child"]


# Schedules -----------------------------------------------------------------------------------


async def test_of_two_advancers_of_one_due_time_exactly_one_wins(stores: Stores) -> None:
    a, b = await stores(), await stores()
    due = datetime.fromisoformat("2030-01-01T02:00:00+00:00")
    now = utcnow()
    record = ScheduleRecord(
        id="nightly",
        workflow="w",
        expression="0 2 * * *",
        timezone="UTC",
        input="null",
        enabled=True,
        options="{}",
        next_run=due,
        last_run=None,
        last_run_id=None,
        created_at=now,
        updated_at=now,
    )
    assert await a.add_schedule(record)
    assert not await b.add_schedule(record)
    following = due + timedelta(days=1)
    results = await asyncio.gather(
        *(
            store.advance_schedule("nightly", due, following, due, f"cron:{n}")
            for n, store in enumerate([a, b] * 4)
        )
    )
    assert sorted(results) == [False] * 7 + [True]
    stored = await b.get_schedule("nightly")
    assert stored is not None and stored.next_run == following and stored.last_run == due
    assert stored.last_run_id == f"cron:{results.index(True)}"
    assert not await a.advance_schedule("nightly", due, following)  # that due time is gone
    assert await a.set_schedule_enabled("nightly", False, None)
    assert not await a.advance_schedule("nightly", following, following)  # disabled


# Text that code produces, and values that cannot be stored ------------------------------------


@pytest.mark.parametrize("bad", ["cannot open \udcff.csv", "nul \x00 inside"])
async def test_an_error_and_event_details_with_unstorable_text_are_stored_escaped(
    store: Persistence, bad: str
) -> None:
    await store.create_run(_run("r1"), NewEvent("created"))
    [run] = await _claim(store, "a")
    detail = {"error": bad, bad: [bad, 1], "traceback": f"line 1\n{bad}"}
    await store.save_checkpoint(
        _checkpoint(
            "r1",
            run.token,
            Status.FAILED,
            error=bad,
            events=[NewEvent("step_failed", "s", detail), NewEvent("failed", None, {"e": bad})],
        )
    )
    stored = await store.get_run("r1")
    assert stored is not None and stored.status is Status.FAILED
    assert stored.error == storable(bad) != bad
    events = await store.history("r1")
    assert events[-2].detail == storable_json(detail)
    assert events[-2].detail["error"] == storable(bad)
    assert events[-1].detail == {"e": storable(bad)}


async def test_a_run_id_that_cannot_be_stored_is_a_data_error_and_writes_nothing(
    store: Persistence,
) -> None:
    with pytest.raises(treadle.DataError) as raised:
        await store.create_run(_run("bad-\udcff"), NewEvent("created"))
    assert raised.value.__cause__ is not None
    assert not isinstance(raised.value, treadle.PersistenceError)  # not transient
    assert await store.list_runs() == []


# Schema versions -----------------------------------------------------------------------------

DATA = Path(__file__).parent / "data"


def _sqlite_schema(path: Path) -> dict[str, object]:
    """Every table's columns and every index of an SQLite file, and its meta rows."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {
            "columns": {
                # Sorted by name: ALTER TABLE ADD COLUMN can only append.
                t: sorted(tuple(c)[1:] for c in conn.execute(f"PRAGMA table_info({t})"))
                for t in tables
            },
            "indexes": sorted(
                (name, table, " ".join((sql or "").split()))
                for name, table, sql in conn.execute(
                    "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index'"
                )
            ),
            "meta": sorted(conn.execute("SELECT key, value FROM treadle_meta")),
        }


def _postgres_schema(dsn: str) -> dict[str, object]:
    """Every column, index and constraint of a PostgreSQL database, and its meta rows."""
    with psycopg.connect(dsn) as conn:
        return {
            "columns": sorted(
                conn.execute(
                    "SELECT table_name, column_name, data_type, is_nullable, column_default "
                    "FROM information_schema.columns WHERE table_schema = current_schema()"
                )
            ),
            "indexes": sorted(
                conn.execute(
                    "SELECT tablename, indexname, indexdef FROM pg_indexes "
                    "WHERE schemaname = current_schema()"
                )
            ),
            "constraints": sorted(
                conn.execute(
                    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                    "FROM pg_constraint WHERE connamespace = current_schema()::regnamespace"
                )
            ),
            "meta": sorted(conn.execute("SELECT key, value FROM treadle_meta")),
        }


async def _cli(*args: str) -> str:
    """Run a treadle command in this process (in a thread: it runs an event loop of its own)."""
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


async def test_migrating_the_oldest_sqlite_snapshot_gives_exactly_a_new_schema(
    tmp_path: Path,
) -> None:
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    with contextlib.closing(sqlite3.connect(old)) as conn:
        conn.executescript((DATA / "schema_v1_sqlite.sql").read_text())
    await _cli("db", "upgrade", "--db", f"sqlite:///{old}")
    fresh = treadle.SQLitePersistence(str(new))
    await fresh.open()
    await fresh.close()
    migrated = _sqlite_schema(old)
    assert migrated == _sqlite_schema(new)
    assert migrated["meta"] == [("schema_version", str(schema.SCHEMA_VERSION))]
    assert len(migrated["indexes"]) >= 7  # type: ignore[arg-type]  (the comparison saw them)


async def test_migrating_the_oldest_postgres_snapshot_gives_exactly_a_new_schema(
    pg_dsn: str,
) -> None:
    old, new = fresh_database(pg_dsn, migrated=False), fresh_database(pg_dsn, migrated=False)
    with psycopg.connect(old, autocommit=True) as conn:
        conn.execute((DATA / "schema_v1_postgres.sql").read_text())  # type: ignore[arg-type]
    await _cli("db", "upgrade", "--db", old)
    fresh = treadle.PostgresPersistence(new)
    await fresh.open()
    await fresh.close()
    migrated = _postgres_schema(old)
    assert migrated == _postgres_schema(new)
    assert migrated["meta"] == [("schema_version", str(schema.SCHEMA_VERSION))]


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_an_older_database_names_the_command_that_upgrades_it(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        migration = "ALTER TABLE runs ADD COLUMN future_column INTEGER NOT NULL DEFAULT 0"
    else:
        url = fresh_database(request.getfixturevalue("pg_dsn"), migrated=False)
        migration = "ALTER TABLE runs ADD COLUMN future_column integer NOT NULL DEFAULT 0"
    first = persistence_from_url(url)
    await first.open()  # the current version
    await first.close()
    # This treadle is one schema version ahead, with a migration to get there.
    ahead = schema.SCHEMA_VERSION + 1
    monkeypatch.setattr(schema, "SCHEMA_VERSION", ahead)
    monkeypatch.setitem(queries(dialect), f"migrate_{ahead}", migration)  # type: ignore[index]
    with pytest.raises(treadle.SchemaVersionError, match="older") as refused:
        await persistence_from_url(url).open()
    command = re.search(r"run '(treadle [^']+)'", str(refused.value))
    assert command is not None, refused.value
    assert command.group(1) == f"treadle db upgrade --db {url}"
    out = await _cli(*shlex.split(command.group(1))[1:])
    assert f"upgraded the treadle schema from version {ahead - 1} to {ahead}" in out
    assert "nothing to do" in await _cli(*shlex.split(command.group(1))[1:])
    again = persistence_from_url(url)
    await again.open()
    await again.close()


async def test_a_newer_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    first = treadle.SQLitePersistence(str(path))
    await first.open()
    await first.close()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE treadle_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(treadle.SchemaVersionError, match="newer"):
        await treadle.SQLitePersistence(str(path)).open()
    with pytest.raises(treadle.SchemaVersionError, match="newer"):
        await treadle.SQLitePersistence(str(path)).upgrade()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("a\x00b", "a NUL character"),
        ("x\udcff.csv", "a lone surrogate"),
        ({"k": ["fine", {"deep": "\ud83d"}]}, "a lone surrogate"),
        ({"bad\x00key": 1}, "a NUL character"),
    ],
)
def test_caller_text_that_cannot_be_stored_is_refused_naming_the_field(
    value: object, problem: str
) -> None:
    with pytest.raises(treadle.DataError, match=f"^signal 'go' payload holds {problem}"):
        require_storable(value, "signal 'go' payload")


def test_caller_data_nested_too_deep_is_a_data_error_not_a_recursion_error() -> None:
    deep: object = "leaf"
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(treadle.DataError, match=r"^data is nested more than 256 levels deep"):
        require_storable({"x": deep}, "data")
    require_storable({"fine": ["é", "😀", 1, None, {"ok": True}]}, "data")  # no error


def test_storable_escapes_only_what_no_backend_stores() -> None:
    assert storable("cannot open \udcff.csv") == "cannot open \\udcff.csv"
    assert storable("a\x00b") == "a\\x00b"
    same = "é 😀 \\x00 plain"
    assert storable(same) is same


# The SQLite file -----------------------------------------------------------------------------


async def test_a_deleted_sqlite_file_stops_the_persistence_instead_of_losing_work(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "treadle.db"
    store = treadle.SQLitePersistence(str(path))
    await store.open()
    try:
        await store.create_run(_run("before"), NewEvent("created"))
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{path}{suffix}")
        # A burst of writes is committed as a batch, whose outcomes wait for the identity check.
        outcomes = await asyncio.gather(
            *(store.create_run(_run(f"r{n}"), NewEvent("created")) for n in range(20)),
            return_exceptions=True,
        )
        lost = [o for o in outcomes if isinstance(o, treadle.PersistenceError)]
        assert lost, outcomes
        assert "was deleted or replaced" in str(lost[0])
        for operation in (store.get_run("before"), store.create_run(_run("x"), NewEvent("c"))):
            with pytest.raises(treadle.PersistenceError, match="deleted or replaced"):
                await operation
        assert "deleted or replaced" in caplog.text
    finally:
        await store.close()
