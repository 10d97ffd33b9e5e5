"""The codec hook (API.md "Typed data and codecs"): run data, positions, inbox payloads and
event details are stored through ``Engine(codec=...)``; the engine, the CLI and the dashboard
read them back through it; a reader without it, or with another, gets a CodecError that says
so. The stored rows are read with the database's own driver to prove nothing is in plain text.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from pgserver import fresh_pg_dsn  # noqa: F401  (fixture)
from recoverykit import Harness
from sample_codec import Base64Codec, other_key

import treadle
from treadle import Status
from treadle.cli import cli

SECRET = "4111-1111-SECRET"
PIN = "PIN-9876"


def vault() -> treadle.Workflow:
    """Data in, a result out, a signal with a payload, a loop over items (kept in the cursor)."""
    return (
        treadle.new("vault")
        .step("charge", lambda ctx, state: {"receipt": f"paid with {state.data['card']}"})
        .await_signal("confirm")
        .loop("each")
        .for_each("items")
        .do(treadle.step("item", lambda ctx, state: None))
        .end()
        .build()
    )


START = {"card": SECRET, "items": [f"{SECRET}-item"]}


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite file for the test."""
    return str(tmp_path / "vault.db")


async def run_vault(engine: treadle.Engine) -> str:
    """Start a vault run, confirm it, and wait for its end."""
    run_id = await engine.start("vault", START, run_id="v-1")
    await engine.settle()
    await engine.signal(run_id, "confirm", {"pin": PIN})
    final = await engine.wait(run_id, timeout=10)
    assert final.status is Status.COMPLETED, final.error
    return run_id


def stored_sqlite(path: str) -> list[str]:
    """Every value the codec covers, as the SQLite file holds it."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT data, cursor FROM runs").fetchall()
        rows += conn.execute("SELECT payload, '~codec:' FROM inbox").fetchall()
        rows += conn.execute("SELECT detail, '~codec:' FROM events").fetchall()
    return [value for row in rows for value in row]


def assert_plaintext_nowhere(values: list[str]) -> None:
    assert values
    for value in values:
        assert value.startswith(("~codec:", '"~codec:')), value
        for secret in (SECRET, PIN, "paid with"):
            assert secret not in value


@pytest.fixture
async def sealed(db: str) -> AsyncIterator[treadle.Engine]:
    """An open engine on ``db`` storing through Base64Codec()."""
    engine = treadle.Engine(treadle.SQLitePersistence(db), codec=Base64Codec(), poll_interval=0.2)
    engine.register(vault())
    async with engine:
        yield engine


async def test_sqlite_file_holds_no_plaintext_while_status_and_history_show_it(
    sealed: treadle.Engine, db: str
) -> None:
    run_id = await run_vault(sealed)
    state = await sealed.status(run_id)
    assert state.data["card"] == SECRET
    assert state.data["charge"] == {"receipt": f"paid with {SECRET}"}
    assert state.data["confirm"] == {"pin": PIN}
    events = await sealed.history(run_id)
    received = [e for e in events if e.kind == "signal_received"]
    assert received[0].detail == {"data": {"pin": PIN}}
    assert events[0].kind == "created" and events[0].detail["workflow"] == "vault"
    assert_plaintext_nowhere(stored_sqlite(db))
    raw = b"".join(p.read_bytes() for p in Path(db).parent.iterdir() if p.is_file())
    assert SECRET.encode() not in raw and PIN.encode() not in raw


async def test_memory_persistence_stores_through_the_codec_too() -> None:
    persistence = treadle.MemoryPersistence()
    engine = treadle.Engine(persistence, codec=Base64Codec())
    engine.register(vault())
    async with engine:
        run_id = await run_vault(engine)
        assert (await engine.status(run_id)).data["card"] == SECRET
        persistence.codec = None  # the same rows, read without the codec
        with pytest.raises(treadle.CodecError, match="pass the codec"):
            await engine.status(run_id)


async def test_reading_without_the_codec_or_with_another_is_a_clear_codec_error(
    sealed: treadle.Engine, db: str
) -> None:
    run_id = await run_vault(sealed)
    for codec, says in ((None, "this reader has none: pass the codec"), (other_key(), "cannot")):
        reader = treadle.Engine(treadle.SQLitePersistence(db), codec=codec)
        async with reader:
            for read in (reader.status, reader.history):
                with pytest.raises(treadle.CodecError, match=says) as caught:
                    await read(run_id)
                assert run_id in str(caught.value)
            with pytest.raises(treadle.CodecError):
                await reader.runs()
    assert isinstance(caught.value, treadle.DataError)


async def test_runs_stored_before_the_codec_stay_readable_with_it(db: str) -> None:
    plain = treadle.Engine(treadle.SQLitePersistence(db))
    plain.register(vault())
    async with plain:
        old = await plain.start("vault", START, run_id="old")
        await plain.settle()
    engine = treadle.Engine(treadle.SQLitePersistence(db), codec=Base64Codec())
    engine.register(vault())
    async with engine:
        await engine.signal(old, "confirm", {"pin": PIN})
        final = await engine.wait(old, timeout=10)
    assert final.status is Status.COMPLETED
    assert final.data["confirm"] == {"pin": PIN}


class _Broken:
    def encode(self, text: str) -> str:
        return "nul\x00byte"

    def decode(self, text: str) -> str:
        return text


async def test_a_codec_whose_output_cannot_be_stored_is_refused_before_anything_is_stored(
    db: str,
) -> None:
    engine = treadle.Engine(treadle.SQLitePersistence(db), codec=_Broken())
    engine.register(vault())
    async with engine:
        with pytest.raises(treadle.CodecError, match="cannot be stored"):
            await engine.start("vault", START)
        engine.persistence.codec = None  # type: ignore[attr-defined]
        assert await engine.runs() == []
    with pytest.raises(TypeError, match="encode"):
        treadle.Engine(codec=object())  # type: ignore[arg-type]


def cli_run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env=env)


def sealed_run(db: str) -> str:
    """A completed vault run in ``db``, stored through Base64Codec() (from a SyncEngine: the
    CLI runs its own event loops)."""
    with treadle.SyncEngine(treadle.SQLitePersistence(db), codec=Base64Codec()) as engine:
        engine.register(vault())
        run_id = engine.start("vault", START)
        engine.settle()
        engine.signal(run_id, "confirm", {"pin": PIN})
        assert engine.wait(run_id, timeout=10).status is Status.COMPLETED
    return run_id


def test_sync_engine_takes_the_codec(db: str) -> None:
    sealed_run(db)
    assert_plaintext_nowhere(stored_sqlite(db))


def test_the_cli_reads_through_codec_and_says_what_to_do_without_it(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    run_id = sealed_run(db)
    url = f"sqlite:///{db}"
    codec = "sample_codec:Base64Codec"
    status = cli_run("status", run_id, "--db", url, "--codec", codec)
    assert status.exit_code == 0, status.output
    assert SECRET in status.output
    history = cli_run("history", run_id, "--db", url, env={"TREADLE_CODEC": codec})
    assert history.exit_code == 0 and PIN in history.output
    listed = cli_run("runs", "--db", url, "--codec", codec, "--json")
    assert listed.exit_code == 0 and SECRET in listed.output
    bare = cli_run("status", run_id, "--db", url)
    assert bare.exit_code == 1
    assert "is encoded with a codec" in bare.output and "--codec" in bare.output
    wrong = cli_run("status", run_id, "--db", url, "--codec", "sample_codec:other_key")
    assert wrong.exit_code == 1 and "cannot be decoded" in wrong.output
    missing = cli_run("status", run_id, "--db", url, "--codec", "sample_codec:nope")
    assert missing.exit_code == 2 and "no attribute 'nope'" in missing.output


def test_cli_start_and_signal_write_through_the_codec(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    sealed_run(db)  # stores the definition, for the CLI's start by name
    env = {"TREADLE_CODEC": "sample_codec:Base64Codec", "TREADLE_DB": f"sqlite:///{db}"}
    started = cli_run("start", "vault", "--data", f'{{"card": "{SECRET}", "items": []}}', env=env)
    assert started.exit_code == 0, started.output
    run_id = started.output.strip().split()[-1]
    signalled = cli_run("signal", run_id, "confirm", "--data", f'{{"pin": "{PIN}"}}', env=env)
    assert signalled.exit_code == 0, signalled.output
    assert_plaintext_nowhere(stored_sqlite(db))


async def test_a_worker_with_a_codec_killed_mid_run_is_finished_by_another(
    tmp_path: Path,
) -> None:
    client = treadle.Client(
        treadle.SQLitePersistence(str(tmp_path / "runs.db")), codec=Base64Codec()
    )
    async with client:
        harness = Harness(tmp_path, client)
        try:
            harness.spawn(start=("vault=k-1",), block=("v2",), codec=True)
            await harness.until(lambda: harness.count("k-1", "v2") == 1, "v2 in flight")
            harness.kill()
            harness.spawn(codec=True)
            await harness.waiting("k-1", "signal:go")
            await client.signal("k-1", "go", {"pin": PIN})
            final = await harness.finished("k-1")
        finally:
            for proc in harness.procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)
    assert final.status is Status.COMPLETED
    assert final.data == {"card": SECRET, "v1": 1, "v2": 1, "go": {"pin": PIN}, "v3": 1}
    assert harness.counts("k-1") == {("v1", "do"): 1, ("v2", "do"): 2, ("v3", "do"): 1}
    with sqlite3.connect(tmp_path / "runs.db") as conn:
        (data,) = conn.execute("SELECT data FROM runs WHERE id = 'k-1'").fetchone()
    assert data.startswith("~codec:") and SECRET not in data


async def test_postgres_stores_through_the_codec(fresh_pg_dsn: str) -> None:  # noqa: F811
    engine = treadle.Engine(treadle.PostgresPersistence(fresh_pg_dsn), codec=Base64Codec())
    engine.register(vault())
    async with engine:
        run_id = await run_vault(engine)
        assert (await engine.status(run_id)).data["confirm"] == {"pin": PIN}
        events = await engine.history(run_id)
        assert any(e.detail == {"data": {"pin": PIN}} for e in events)
    with psycopg.connect(fresh_pg_dsn) as conn:
        values = [v for row in conn.execute("SELECT data, cursor FROM runs") for v in row]
        values += [row[0] for row in conn.execute("SELECT payload FROM inbox")]
        details = [row[0] for row in conn.execute("SELECT detail FROM events")]
    assert all(isinstance(d, str) for d in details)  # jsonb strings, not objects
    assert_plaintext_nowhere(values + details)
