"""SQLite: the embedded default. One writer thread owns the connection and commits the
operations queued meanwhile in one transaction (group commit), each in a savepoint of its own.

Durability: with ``synchronous="FULL"`` (the default) a checkpoint that was acknowledged survives
a crash of the process and a loss of power. ``"NORMAL"`` is several times faster per commit and
still survives a crash of the process, but the last commits may be lost on a power cut.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from .._errors import PersistenceError
from ._base import SQLPersistence
from ._batch import Job, JobQueue, Outcome, failed, run_in_savepoints, settle
from ._sql import Row, queries

T = TypeVar("T")


def _adapt(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, list | tuple):
        import json

        return json.dumps(list(value))
    if isinstance(value, bool):
        return int(value)
    return value


class _SQLiteTx:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._sql = queries("sqlite")
        self.notified: list[str] = []

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: _adapt(v) for k, v in params.items()}

    def execute(self, statement: str, /, **params: Any) -> int:
        sql = self._sql[statement]
        if statement == "schema":
            for statement in sql.split(";\n"):
                if statement.strip():
                    self._conn.execute(statement)
            return 0
        return self._conn.execute(sql, self._params(params)).rowcount

    def one(self, statement: str, /, **params: Any) -> Row | None:
        row: Row | None = self._conn.execute(self._sql[statement], self._params(params)).fetchone()
        return row

    def all(self, statement: str, /, **params: Any) -> Sequence[Row]:
        return self._conn.execute(self._sql[statement], self._params(params)).fetchall()

    def notify(self, run_id: str) -> None:
        self.notified.append(run_id)


class SQLitePersistence(SQLPersistence):
    """Runs kept in one SQLite file (WAL mode), shared safely by processes on one machine."""

    dialect = "sqlite"

    def __init__(
        self, path: str = "treadle.db", *, synchronous: str = "FULL", batch_size: int = 256
    ) -> None:
        super().__init__()
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.path = str(path)
        self.synchronous = synchronous.upper()
        self.batch_size = batch_size
        self._jobs = JobQueue(batch_size)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"SQLitePersistence({self.path!r})"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    async def open(self) -> None:
        """Start the writer thread and check the schema (creating it in a new file)."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise PersistenceError(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        self._thread = threading.Thread(
            target=self._writer, args=(conn,), name=f"treadle-sqlite:{self.path}", daemon=True
        )
        self._thread.start()
        await self._check_schema()

    async def close(self) -> None:
        """Let queued writes finish, then stop the writer thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._jobs.stop()
        await asyncio.to_thread(thread.join)

    async def _run(self, script: Callable[[Any], T]) -> T:
        if self._thread is None or self._loop is None:
            raise PersistenceError(f"{self!r} is not open: use 'async with engine' or open()")
        return await self._jobs.submit(self._loop, script)

    def _writer(self, conn: sqlite3.Connection) -> None:
        tx = _SQLiteTx(conn)
        stop = False
        while not stop:
            batch, stop = self._jobs.take()
            if not batch:
                break
            outcomes = self._commit(conn, tx, batch)
            notified, tx.notified = tx.notified, []
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(settle, outcomes, notified, self._wake)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                break
        conn.close()

    def _commit(self, conn: sqlite3.Connection, tx: _SQLiteTx, batch: list[Job]) -> list[Outcome]:
        try:
            conn.execute("BEGIN IMMEDIATE")
            outcomes = run_in_savepoints(tx, conn.execute, batch, "SQLite")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = PersistenceError(f"SQLite commit to {self.path!r} failed: {exc}")
            error.__cause__ = exc
            tx.notified.clear()
            return failed(batch, error)
        return outcomes


class MemoryPersistence(SQLitePersistence):
    """Everything in memory, gone with the process: for tests and trying things out.

    It is SQLite's in-memory database behind the same code as :class:`SQLitePersistence`, so it
    behaves exactly like the durable default in everything but durability.
    """

    shared = False

    def __init__(self) -> None:
        super().__init__(":memory:", synchronous="OFF")

    def __repr__(self) -> str:
        return "MemoryPersistence()"
