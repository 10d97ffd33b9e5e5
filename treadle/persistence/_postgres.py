"""PostgreSQL: several engine processes, on several machines, share one database.

The transaction scripts of :mod:`._scripts` run unchanged on psycopg 3's sync connections: a
few writer threads, one per pooled connection, take queued scripts in batches and commit each
batch as one transaction, every script under a savepoint of its own (group commit, as for
SQLite). What PostgreSQL adds:

- Runs are claimed with leases and ``FOR UPDATE SKIP LOCKED``, so engines never wait for each
  other and a run is executed by one engine at a time; checkpoints are fenced by the lease token.
- Wake-ups travel by ``LISTEN/NOTIFY`` (channel ``treadle``, payload the run id): a script's
  ``tx.notify(run_id)`` becomes ``pg_notify`` in its transaction, delivered on commit. A
  listener thread with a connection of its own hands them to the engines of this process.
- A lost connection (a restart of PostgreSQL, a failover, a network blip) is retried: the
  whole batch runs again on a fresh connection, with backoff, for up to ``retry_for`` seconds.
  A batch is one transaction, so running it again is safe; if the connection dies during
  ``COMMIT`` itself, the outcome is looked up by transaction id instead of guessed.
- The schema is versioned (``treadle_meta.schema_version``): an empty database gets the schema
  at start-up (``auto_migrate``); an older or newer one is refused with
  :class:`SchemaVersionError` until :meth:`PostgresPersistence.upgrade` (``treadle db
  upgrade``) migrates it (the migrations are :func:`._schema.migrate`, shared with SQLite).
- The writer threads never die of an error: a closed pool fails the batch with a
  :class:`PersistenceError`, and :meth:`~PostgresPersistence.close` during an outage stops the
  retries (the operations still queued fail with a :class:`PersistenceError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool, PoolClosed

from .._errors import PersistenceError, SchemaVersionError
from . import _schema as schema
from ._batch import DriverErrors, Job, JobQueue, Outcome, failed, run_in_savepoints, settle
from ._postgres_tx import PostgresTx
from ._scripted import SQLPersistence

T = TypeVar("T")
log = logging.getLogger("treadle.postgres")

CHANNEL = "treadle"
"""The LISTEN/NOTIFY channel; each notification's payload is a run id."""

_Retryable = psycopg.OperationalError  # lost connection, server shutting down, deadlock victim

_ERRORS = DriverErrors(
    "PostgreSQL", driver=(psycopg.Error,), data=(psycopg.DataError, UnicodeError)
)


class _Ambiguous(Exception):
    """The connection died during COMMIT and the outcome could not be looked up."""


class _Careful(Exception):
    """A pipelined attempt failed on an error of the server's: run the batch a statement at a
    time, which tells the failing script from the others."""


_Connection = psycopg.Connection[DictRow]


def _configure(conn: _Connection) -> None:
    # Times then come back with tzinfo=datetime.UTC, as from the other backends.
    conn.execute("SET TIME ZONE 'UTC'")


class PostgresPersistence(SQLPersistence):
    """Runs kept in PostgreSQL, shared by any number of engines on any number of machines.

    ``dsn`` is a libpq connection string or URL (``postgresql://user:pw@host/db``). Options:
    ``pool_size`` connections (one writer thread each), ``batch_size`` scripts at most per
    transaction, ``auto_migrate`` (create the schema on an empty database at start-up),
    ``retry_for`` seconds to keep retrying an operation while PostgreSQL is unreachable,
    ``connect_timeout`` seconds for the first connection at :meth:`open`, ``pipeline``
    (psycopg's pipeline mode: statements whose results are not needed yet travel with the
    next round trip; a checkpoint's transaction then takes two round trips instead of five).
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 4,
        batch_size: int = 32,
        auto_migrate: bool = True,
        retry_for: float = 60.0,
        connect_timeout: float = 10.0,
        pipeline: bool = True,
    ) -> None:
        super().__init__()
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, not {pool_size}")
        self.dsn = dsn
        self.pool_size = pool_size
        self.auto_migrate = auto_migrate
        self.retry_for = retry_for
        self.connect_timeout = connect_timeout
        self.pipeline = pipeline
        # At most 64 subtransactions fit PostgreSQL's per-backend cache: keep batches below.
        self._jobs = JobQueue(min(batch_size, 60))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ConnectionPool[_Connection] | None = None
        self._writers: list[threading.Thread] = []
        self._listener: threading.Thread | None = None
        self._closing = threading.Event()
        self._pipelining = False

    def __repr__(self) -> str:
        return f"PostgresPersistence({_redacted(self.dsn)!r})"

    def _upgrade_command(self) -> str:
        return f"treadle db upgrade --db {_redacted_url(self.dsn)}"

    # Life cycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, start the writers and the listener, and check (or create) the schema."""
        if self._pool is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._closing.clear()
        self._pipelining = False  # the schema is several statements in one: not in a pipeline
        pool = ConnectionPool[_Connection](
            self.dsn,
            connection_class=_Connection,
            # Transactions are explicit (BEGIN ... COMMIT); rows are dicts.
            kwargs={"autocommit": True, "row_factory": dict_row},
            configure=_configure,
            min_size=self.pool_size,
            max_size=self.pool_size,
            open=False,
            name="treadle",
            # The pool's own reconnection backs off without a cap (1, 2, 4, 8... s): let it give
            # up at once, so that the retry loop below (capped backoff) asks for a new attempt.
            timeout=1.0,
            reconnect_timeout=0.5,
        )
        try:
            with _ERRORS.wrap(f"cannot connect to PostgreSQL {self!r}"):
                await asyncio.to_thread(pool.open, wait=True, timeout=self.connect_timeout)
        except PersistenceError:
            await asyncio.to_thread(pool.close)
            raise
        self._pool = pool
        for number in range(self.pool_size):
            thread = threading.Thread(
                target=self._writer, args=(pool,), name=f"treadle-postgres-{number}", daemon=True
            )
            thread.start()
            self._writers.append(thread)
        try:
            if not self.auto_migrate and await self._run(schema.schema_version) == 0:
                raise SchemaVersionError(
                    f"the database has no treadle schema: run '{self._upgrade_command()}' "
                    "(or PostgresPersistence.upgrade()), or open it with auto_migrate=True"
                )
            await self._check_schema()
            self._pipelining = self.pipeline
        except BaseException:
            await self.close()
            raise
        self._listener = threading.Thread(
            target=self._listen, name="treadle-postgres-listen", daemon=True
        )
        self._listener.start()

    async def close(self) -> None:
        """Let queued operations finish, then stop the threads and close the connections."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # Operations already queued still run; a batch being retried in an outage gives up.
        self._closing.set()
        self._jobs.stop(len(self._writers))
        writers, self._writers = self._writers, []
        listener, self._listener = self._listener, None

        def join() -> None:
            for thread in writers:
                thread.join()
            if listener is not None:
                listener.join()
            pool.close()

        await asyncio.to_thread(join)

    async def upgrade(self) -> str:
        """Migrate on a connection of its own (the pool need not be open)."""
        return await asyncio.to_thread(self._upgrade)

    def _upgrade(self) -> str:
        with (
            _ERRORS.wrap(f"cannot upgrade the schema of {self!r}"),
            psycopg.connect(self.dsn, row_factory=dict_row) as conn,
        ):
            result = schema.migrate(PostgresTx(conn))
            conn.commit()
            return result

    # Running scripts -------------------------------------------------------------------------

    async def _run(self, script: Callable[[Any], T]) -> T:
        if self._pool is None or self._loop is None:
            raise PersistenceError(f"{self!r} is not open: use 'async with engine' or open()")
        return await self._jobs.submit(self._loop, script)

    def _writer(self, pool: ConnectionPool[_Connection]) -> None:
        loop = self._loop
        assert loop is not None  # set by open() before the writers start
        stop = False
        while not stop:
            batch, stop = self._jobs.take()
            if not batch:
                break
            began = time.perf_counter()
            try:
                outcomes, notified = self._commit(batch, pool)
            except Exception as exc:  # a bug must not kill the writer and strand the batch
                log.exception("PostgreSQL writer failed")
                outcomes, notified = failed(batch, _ERRORS.translate(exc)), []
            took = time.perf_counter() - began
            stats = self.commit_stats
            try:
                loop.call_soon_threadsafe(settle, outcomes, notified, self._wake, stats, took)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                break

    def _commit(
        self, batch: list[Job], pool: ConnectionPool[_Connection]
    ) -> tuple[list[Outcome], list[str]]:
        """Commit ``batch``, retrying the whole transaction while PostgreSQL is unreachable."""
        started = time.monotonic()
        delay = 0.05
        attempts = 0
        while True:
            try:
                result = self._commit_once(batch, pool)
            except PoolClosed as exc:
                error = _ERRORS.translate(exc, "the PostgreSQL connection pool is closed")
                return failed(batch, error), []
            except _Retryable as exc:
                attempts += 1
                waited = time.monotonic() - started
                if waited >= self.retry_for or self._closing.is_set():
                    log.error(
                        "PostgreSQL unreachable for %.1fs (%s): %d operations failed",
                        waited,
                        _first_line(exc),
                        len(batch),
                    )
                    error = _ERRORS.translate(exc, f"PostgreSQL unreachable for {waited:.1f}s")
                    return failed(batch, error), []
                if attempts == 1:
                    log.warning(
                        "PostgreSQL connection failed (%s); retrying %d operations with backoff",
                        _first_line(exc),
                        len(batch),
                    )
                self._closing.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 1.0)
                self._drop_dead_connections(pool)
                continue
            except _Ambiguous as exc:
                error = PersistenceError(str(exc))
                error.__cause__ = exc.__cause__
                return failed(batch, error), []
            if attempts:
                log.warning(
                    "PostgreSQL reachable again: %d operations committed after %d retries (%.1fs)",
                    len(batch),
                    attempts,
                    time.monotonic() - started,
                )
            return result

    @staticmethod
    def _drop_dead_connections(pool: ConnectionPool[_Connection]) -> None:
        """After a failure, test the idle pooled connections so that the retry gets a live one."""
        with contextlib.suppress(Exception):
            pool.check()

    def _commit_once(
        self, batch: list[Job], pool: ConnectionPool[_Connection]
    ) -> tuple[list[Outcome], list[str]]:
        with pool.connection() as conn:
            if self._pipelining:
                try:
                    return self._commit_pipelined(batch, conn, pool)
                except _Careful as exc:  # run the batch again, a round trip at a time
                    log.debug("pipelined batch failed (%s): run again", exc.__cause__)
            return self._commit_careful(batch, conn, pool)

    def _commit_pipelined(
        self, batch: list[Job], conn: _Connection, pool: ConnectionPool[_Connection]
    ) -> tuple[list[Outcome], list[str]]:
        """Commit ``batch`` in pipeline mode (:mod:`._postgres_tx`): a checkpoint's transaction
        is two round trips (BEGIN + its UPDATE + the transaction id; its events + COMMIT).

        Any error of the server's makes the whole attempt :class:`_Careful` (rolled back):
        queued statements report their errors late, possibly in another script's round trip,
        so the batch runs again with :meth:`_commit_careful`, which says which script failed.
        """
        committing = False
        tx: PostgresTx | None = None
        try:
            with conn.pipeline() as pipeline:
                tx = PostgresTx(conn, pipeline)
                conn.execute("BEGIN")
                outcomes = run_in_savepoints(
                    tx, conn.execute, batch, _ERRORS, passthrough=(psycopg.Error,),
                    restart=tx.restart,
                )  # fmt: skip
                notified = list(dict.fromkeys(tx.notified))
                if tx.xid is None and tx.unprobed:  # written, maybe: learn the id first
                    row = tx.one("pre_commit", run_ids=notified)
                    tx.xid = None if row is None else row["xid"]
                elif notified:
                    tx.queue("pre_commit", run_ids=notified)
                committing = True
                conn.execute("COMMIT")  # sent as the pipeline ends
        except psycopg.errors.PipelineAborted as exc:  # the error it follows was not raised
            _rollback(conn)
            raise _Careful from exc
        except _Retryable as exc:
            _rollback(conn)
            xid = None if tx is None else tx.xid
            if not committing or xid is None:  # COMMIT not sent, or nothing written: run again
                raise
            if not self._committed(xid, exc, pool):
                raise
            log.warning("PostgreSQL connection lost during COMMIT; it had committed")
        except psycopg.Error as exc:
            _rollback(conn)
            raise _Careful from exc
        return outcomes, notified

    def _commit_careful(
        self, batch: list[Job], conn: _Connection, pool: ConnectionPool[_Connection]
    ) -> tuple[list[Outcome], list[str]]:
        """Commit ``batch`` a statement per round trip: BEGIN, the scripts, the transaction id
        (and the notifications), COMMIT."""
        tx = PostgresTx(conn)
        try:
            conn.execute("BEGIN")
            outcomes = run_in_savepoints(
                tx, conn.execute, batch, _ERRORS, passthrough=(_Retryable,), restart=tx.restart,
            )  # fmt: skip
            notified = list(dict.fromkeys(tx.notified))
            row = tx.one("pre_commit", run_ids=notified)
            xid = None if row is None else row["xid"]
        except _Retryable:
            _rollback(conn)
            raise
        except psycopg.Error as exc:
            _rollback(conn)
            return failed(batch, _ERRORS.translate(exc, "PostgreSQL transaction failed")), []
        try:
            conn.execute("COMMIT")
        except _Retryable as exc:
            if xid is None:  # nothing was written: simply run it again
                raise
            if not self._committed(xid, exc, pool):
                raise
            log.warning("PostgreSQL connection lost during COMMIT; it had committed")
        return outcomes, notified

    def _committed(self, xid: str, cause: BaseException, pool: ConnectionPool[_Connection]) -> bool:
        """Whether transaction ``xid``, whose COMMIT lost its connection, did commit."""
        started = time.monotonic()
        delay = 0.05
        while True:
            try:
                with pool.connection() as conn:
                    row = PostgresTx(conn).one("xact_status", xid=xid)
                status = None if row is None else row["status"]
                if status == "committed":
                    return True
                if status in ("aborted", "in progress"):
                    return False  # in progress: its backend is gone, so it will abort
                raise _Ambiguous(
                    f"the connection to PostgreSQL died during COMMIT and the outcome of "
                    f"transaction {xid} is unknown ({status})"
                ) from cause
            except _Retryable:
                if time.monotonic() - started >= self.retry_for or self._closing.is_set():
                    raise _Ambiguous(
                        f"the connection to PostgreSQL died during COMMIT of transaction {xid} "
                        f"and it could not be reached again to learn the outcome"
                    ) from cause
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    # Wake-ups --------------------------------------------------------------------------------

    def _listen(self) -> None:
        """Hand NOTIFY payloads to the engines; reconnect with backoff when the link drops."""
        delay = 0.1
        lost_at: float | None = None
        while not self._closing.is_set():
            try:
                with psycopg.connect(
                    self.dsn, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if lost_at is not None:
                        log.warning(
                            "LISTEN connection to PostgreSQL restored after %.1fs",
                            time.monotonic() - lost_at,
                        )
                        lost_at = None
                    delay = 0.1
                    while not self._closing.is_set():
                        for notify in conn.notifies(timeout=0.25):
                            self._wake_soon([notify.payload])
            except psycopg.Error as exc:
                if self._closing.is_set():
                    break
                if lost_at is None:
                    lost_at = time.monotonic()
                    log.warning(
                        "LISTEN connection to PostgreSQL lost (%s); reconnecting with backoff; "
                        "polling meanwhile",
                        _first_line(exc),
                    )
                self._closing.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 2.0)

    def _wake_soon(self, run_ids: list[str]) -> None:
        if self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._wake, run_ids)
        except RuntimeError:  # the loop is closed
            self._closing.set()


def _rollback(conn: psycopg.Connection[Any]) -> None:
    with contextlib.suppress(psycopg.Error):  # if the connection is gone, the pool drops it
        conn.execute("ROLLBACK")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _redacted_url(dsn: str) -> str:
    """The DSN as a URL for ``--db``, without its password (a key=value DSN is shown as such)."""
    if not dsn.startswith(("postgresql://", "postgres://")):
        return _redacted(dsn)
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[1]}"))


def _redacted(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<invalid dsn>"
    params.pop("password", None)
    return psycopg.conninfo.make_conninfo("", **params)


async def upgrade(url: str) -> str:
    """Create or migrate the treadle schema of the PostgreSQL database at ``url``."""
    return await PostgresPersistence(url).upgrade()
