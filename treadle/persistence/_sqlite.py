"""SQLite: the embedded default.

Group commit without a writer thread's lock convoy: transaction scripts run on the event loop
thread itself (they are short), batched — everything queued while the previous commit was under
way goes into the next transaction, each script as if under a savepoint of its own. Only what
waits on the disk leaves the loop: the ``COMMIT`` (the fsync) runs in a dedicated thread, and so
does ``BEGIN IMMEDIATE`` when another process holds the write lock.

The WAL is copied back into the database file by a passive checkpoint that the commit loop runs
after a batch's outcomes are handed back, every so many commits (adjusted to about 500 WAL
frames each), not by SQLite's automatic checkpoint: that one runs inside the ``COMMIT`` that
crosses 1,000 pages, holding every run waiting on that commit for the length of a database-file
fsync.

Reads (a run's status, its inbox, history, the dispatcher's next wake-up) do not queue behind
the commit under way: they run at once on a second connection, on a snapshot of what has been
committed (WAL readers never wait for the writer).

The database file is the one at ``path`` only while its identity (device and inode) is the one
it had at :meth:`~SQLitePersistence.open`: deleting or replacing it (and its ``-wal``) while an
engine writes would let commits go into an unlinked file. So before the outcomes of a batch are
handed back, the identity is compared (for a transaction committed alone on the loop, at most
every :data:`_IDENTITY_EVERY` seconds, to keep a system call off every step); a mismatch fails
that batch and every later operation with a :class:`PersistenceError` that says so.

Durability: with ``synchronous="FULL"`` (the default) a checkpoint that was acknowledged survives
a crash of the process and a loss of power. ``"NORMAL"`` is several times faster per commit and
still survives a crash of the process, but the last commits may be lost on a power cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from .._errors import PersistenceError
from . import _schema as schema
from ._batch import DriverErrors, Job, Outcome, failed, run_in_savepoints, settle
from ._scripted import SQLPersistence
from ._sql import Row, queries

T = TypeVar("T")
log = logging.getLogger("treadle.sqlite")

#: A batch this small, with nothing else queued, commits on the loop (see _commit).
_INLINE_COMMIT = 4
#: WAL frames per checkpoint to aim at (SQLite's automatic checkpoint runs at 1,000 pages).
#: Fewer make each checkpoint's pause shorter (signal -> step p99 on 100,000 parked runs: 7.7 ms
#: at 250, 8.7 ms at 500) but the fsyncs of a large database file more frequent (cost per step
#: with 1,000,000 stored runs / with 1,000: 1.15-1.30x at 250, 0.99x at 500, 0.8x at 1,000).
_CHECKPOINT_FRAMES = 500
#: Seconds between two checks of the database file's identity by commits made on the loop.
_IDENTITY_EVERY = 0.05

_ERRORS = DriverErrors("SQLite", driver=(sqlite3.Error,), data=(UnicodeError, sqlite3.DataError))


def _is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` says that another connection holds a lock (SQLITE_BUSY/LOCKED)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


_PLAIN = frozenset((str, int, float, type(None)))


def _adapt(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, list | tuple):
        return json.dumps(list(value))
    return value


class _SQLiteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._sql = queries("sqlite")
        self.notified: list[str] = []

    @staticmethod
    def _params(params: dict[str, Any]) -> dict[str, Any]:
        for key, value in params.items():  # a fresh **kwargs dict: adapted in place
            if type(value) not in _PLAIN:
                params[key] = _adapt(value)
        return params

    def execute(self, statement: str, /, **params: Any) -> int:
        sql = self._sql[statement]
        if statement == "schema" or statement.startswith("migrate_"):
            # Several statements, run one by one (executescript would commit the transaction).
            for part in sql.split(";\n"):
                if part.strip():
                    self._conn.execute(part)
            return 0
        return self._conn.execute(sql, self._params(params)).rowcount

    def one(self, statement: str, /, **params: Any) -> Row | None:
        row: Row | None = self._conn.execute(self._sql[statement], self._params(params)).fetchone()
        return row

    def all(self, statement: str, /, **params: Any) -> Sequence[Row]:
        return self._conn.execute(self._sql[statement], self._params(params)).fetchall()

    def many(self, statement: str, rows: Sequence[dict[str, Any]], /) -> None:
        self._conn.executemany(self._sql[statement], [self._params(dict(r)) for r in rows])

    def notify(self, run_id: str) -> None:
        self.notified.append(run_id)

    def snapshot(self, script: Callable[[Any], T]) -> T:
        """Run a reading ``script`` in a read transaction of its own."""
        self._conn.execute("BEGIN")
        try:
            return script(self)
        finally:
            self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


class SQLitePersistence(SQLPersistence):
    """Runs kept in one SQLite file (WAL mode), shared safely by processes on one machine."""

    def __init__(
        self, path: str = "treadle.db", *, synchronous: str = "FULL", batch_size: int = 512
    ) -> None:
        super().__init__()
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.path = str(path)
        self.synchronous = synchronous.upper()
        self.batch_size = max(1, batch_size)
        self._conn: sqlite3.Connection | None = None
        self._tx: _SQLiteTx | None = None
        self._pending: list[Job] = []
        self._work = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._disk: ThreadPoolExecutor | None = None
        self._reader: _SQLiteTx | None = None
        self._commits_since_checkpoint = 0
        self._checkpoint_every = 16
        self._checkpoint_due = False
        self._busy = False  # the committer is committing or checkpointing
        self._ran_now = False  # a transaction was run at once in this turn of the loop
        self._quiet = True  # the last batch was a single transaction: little to batch
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file at open
        self._identity_checked = 0.0  # time.monotonic() of the last check
        self._lost: PersistenceError | None = None  # set once the file is found gone

    def __repr__(self) -> str:
        return f"SQLitePersistence({self.path!r})"

    def _upgrade_command(self) -> str:
        return f"treadle db upgrade --db sqlite:///{self.path}"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        # Space that retention frees goes back to the file system: only a new, empty database
        # takes this (an existing one keeps its mode until 'treadle db vacuum').
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # see _checkpoint
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        # BEGIN IMMEDIATE is tried without waiting on the loop; when another process holds the
        # write lock, it is retried in the disk thread (see _begin).
        conn.execute("PRAGMA busy_timeout=0")
        return conn

    async def open(self) -> None:
        """Connect and check the schema (creating it in a new file)."""
        if self._conn is not None:
            return
        with _ERRORS.wrap(f"cannot open SQLite database {self.path!r}"):
            self._conn = self._connect()
            self._tx = _SQLiteTx(self._conn)
            if self.path != ":memory:":  # a second in-memory connection would be another database
                reader = self._connect()
                reader.execute("PRAGMA query_only=ON")
                self._reader = _SQLiteTx(reader)
                self._identity = self._file_identity()
        self._lost = None
        self._disk = ThreadPoolExecutor(1, thread_name_prefix="treadle-sqlite")
        self._work = asyncio.Event()
        self._committer = asyncio.create_task(self._commit_loop(), name=f"treadle-sqlite:{self}")
        await self._check_schema()

    async def close(self) -> None:
        """Let queued writes finish, then disconnect."""
        conn, committer = self._conn, self._committer
        if conn is None or committer is None:
            return
        while self._pending:
            self._work.set()
            await asyncio.sleep(0.001)
        committer.cancel()
        await asyncio.gather(committer, return_exceptions=True)
        if self._disk is not None:  # a commit or checkpoint under way finishes first
            self._disk.shutdown(wait=True)
        self._conn = self._tx = self._committer = None
        conn.close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._identity = None

    async def upgrade(self) -> str:
        """Migrate the file's schema in a transaction of its own (another connection: the file
        need not be open, and must not be by this object, whose open refuses an old schema)."""
        return await asyncio.to_thread(self._upgrade_file)

    def _upgrade_file(self) -> str:
        with _ERRORS.wrap(f"cannot upgrade the schema of SQLite database {self.path!r}"):
            conn = self._connect()
            try:
                _begin_waiting(conn, 30.0)
                try:
                    done = schema.migrate(_SQLiteTx(conn))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                return done
            finally:
                conn.close()

    # The database file's identity ---------------------------------------------------------

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return found.st_dev, found.st_ino

    def _check_file(self) -> PersistenceError | None:
        """The error to fail with if the file at the path is no longer the one opened."""
        if self._lost is None and self._identity is not None:
            self._identity_checked = time.monotonic()
            if self._file_identity() != self._identity:
                self._lost = PersistenceError(
                    f"the SQLite database {self.path!r} was deleted or replaced while in use: "
                    "the commits of this engine no longer reach it, so it stops (close the "
                    "engine and open the database again; work since the change may be lost)"
                )
                log.error("%s", self._lost)
        return self._lost

    async def _run(self, script: Callable[[Any], T]) -> T:
        if self._conn is None:
            raise PersistenceError(f"{self!r} is not open: use 'async with engine' or open()")
        if self._lost is not None:
            raise self._lost
        if self._quiet and not self._pending and not self._busy and not self._ran_now:
            # Nothing to batch with: commit it right here, without a hop through the committer.
            # Only while the committer's batches are single transactions, and once per turn of
            # the loop: what else is asked for in the same turn (a burst of starts) is queued
            # and committed as one batch.
            self._ran_now = True
            asyncio.get_running_loop().call_soon(self._next_turn)
            with contextlib.suppress(_WriteLocked):
                return self._run_now(script)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((script, future))
        self._work.set()
        return await future

    async def _read(self, script: Callable[[Any], T]) -> T:
        reader = self._reader
        if reader is None or self._conn is None:
            return await self._run(script)
        if self._lost is not None:
            raise self._lost
        try:
            return reader.snapshot(script)
        except sqlite3.Error as exc:
            if not _is_busy(exc):
                raise _ERRORS.translate(exc, f"SQLite read from {self.path!r} failed") from exc
        # The file is being recovered or locked exclusively: queue it like a write.
        return await self._run(script)

    def _run_now(self, script: Callable[[Any], T]) -> T:
        """Run ``script`` in a transaction of its own at once, on the loop; raises
        :class:`_WriteLocked` when another process holds the write lock (then queue it)."""
        conn, tx = self._conn, self._tx
        assert conn is not None and tx is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise _WriteLocked() from None
            raise _ERRORS.translate(exc, f"SQLite transaction on {self.path!r} failed") from exc
        try:
            result = script(tx)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            tx.notified.clear()
            if isinstance(exc, Exception):
                raise _ERRORS.translate(exc) from exc
            raise
        notified, tx.notified = tx.notified, []
        if time.monotonic() - self._identity_checked >= _IDENTITY_EVERY:
            lost = self._check_file()
            if lost is not None:
                raise lost
        settle((), notified, self._wake)
        if self._count_commit():
            self._checkpoint_due = True
            self._work.set()
        return result

    def _next_turn(self) -> None:
        self._ran_now = False

    def _count_commit(self) -> bool:
        """Count a commit; whether a WAL checkpoint is due."""
        if self._reader is None:  # in memory: no WAL
            return False
        self._commits_since_checkpoint += 1
        return self._commits_since_checkpoint >= self._checkpoint_every

    async def _commit_loop(self) -> None:
        while True:
            await self._work.wait()
            self._work.clear()
            self._busy = True
            try:
                if self._checkpoint_due:
                    await self._checkpoint()
                while self._pending:
                    batch = self._pending[: self.batch_size]
                    del self._pending[: self.batch_size]
                    began = time.perf_counter()
                    outcomes, notified = await self._commit(batch)
                    took = time.perf_counter() - began
                    settle(outcomes, notified, self._wake, self.commit_stats, took)
                    self._quiet = len(batch) == 1
                    if self._count_commit():
                        await self._checkpoint()
            finally:
                self._busy = False

    async def _checkpoint(self) -> None:
        """Copy the WAL into the database file (passive: readers are neither waited for nor
        blocked), in the disk thread, while the runs of the batch just committed go on."""
        self._commits_since_checkpoint = 0
        self._checkpoint_due = False
        loop = asyncio.get_running_loop()
        try:
            frames = await asyncio.shield(
                loop.run_in_executor(self._disk, _passive_checkpoint, self._conn)
            )
        except sqlite3.Error as exc:
            log.debug("WAL checkpoint of %s skipped: %s", self.path, exc)
            return
        every = self._checkpoint_every
        if frames < _CHECKPOINT_FRAMES // 2:
            self._checkpoint_every = min(every * 2, 4096)
        elif frames > _CHECKPOINT_FRAMES * 2:
            self._checkpoint_every = max(every // 2, 1)

    async def _commit(self, batch: list[Job]) -> tuple[list[Outcome], list[str]]:
        conn, tx = self._conn, self._tx
        assert conn is not None and tx is not None
        try:
            await self._begin(conn)
            outcomes = run_in_savepoints(tx, conn.execute, batch, _ERRORS)
            if self.synchronous in ("OFF", "NORMAL") or (
                len(batch) <= _INLINE_COMMIT and not self._pending
            ):
                # Without an fsync a commit takes microseconds; and when nothing else waits, an
                # fsync on the loop costs less than a hand-off to a thread and back.
                conn.execute("COMMIT")
            else:
                loop = asyncio.get_running_loop()
                await asyncio.shield(loop.run_in_executor(self._disk, conn.execute, "COMMIT"))
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            tx.notified.clear()
            return failed(
                batch, _ERRORS.translate(exc, f"SQLite commit to {self.path!r} failed")
            ), []
        notified, tx.notified = tx.notified, []
        lost = self._check_file()
        if lost is not None:
            return failed(batch, lost), []
        return outcomes, notified

    async def _begin(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
        # Another process is writing: wait for the lock off the loop.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._disk, _begin_waiting, conn, 30.0)


class _WriteLocked(Exception):
    """Another process holds the database's write lock."""


def _passive_checkpoint(conn: sqlite3.Connection | None) -> int:
    """Run a passive WAL checkpoint; return the number of frames the WAL held."""
    if conn is None:
        return 0
    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(row[1])


def _begin_waiting(conn: sqlite3.Connection, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


class MemoryPersistence(SQLitePersistence):
    """Everything in memory, gone with the process: for tests and trying things out.

    It is SQLite's in-memory database behind the same code as :class:`SQLitePersistence`, so it
    behaves exactly like the durable default in everything but durability.
    """

    def __init__(self) -> None:
        super().__init__(":memory:", synchronous="OFF")

    def __repr__(self) -> str:
        return "MemoryPersistence()"

    async def upgrade(self) -> str:
        """An in-memory database is always created at the newest schema version."""
        if self._conn is None:
            return f"an in-memory database gets schema version {schema.SCHEMA_VERSION} when opened"
        return await self._run(schema.migrate)
