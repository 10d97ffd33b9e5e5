"""``treadle db vacuum``: rebuild a database so that the space of deleted runs goes back to the
file system, out of band (retention deletes in small batches and gives space back as it goes;
this is for databases made before treadle set SQLite's incremental vacuum, and for a one-off
after a large deletion)."""

from __future__ import annotations

import asyncio
import os
import sqlite3

from .._errors import PersistenceError
from ._base import Persistence
from ._sqlite import MemoryPersistence, SQLitePersistence

#: The tables retention deletes from, vacuumed on PostgreSQL.
_TABLES = ("runs", "events", "inbox", "run_labels", "run_values")


async def vacuum(persistence: Persistence) -> str:
    """Rebuild the database (SQLite: ``VACUUM``, which also switches it to incremental vacuum;
    PostgreSQL: ``VACUUM`` of treadle's tables, which makes their free space reusable) and say
    what was done, in a sentence. Engines may go on meanwhile; SQLite's writers wait for it."""
    if isinstance(persistence, MemoryPersistence):
        return "an in-memory database has nothing to give back"
    if isinstance(persistence, SQLitePersistence):
        return await asyncio.to_thread(_vacuum_sqlite, persistence.path)
    dsn = getattr(persistence, "dsn", None)
    if isinstance(dsn, str):
        return await asyncio.to_thread(_vacuum_postgres, dsn)
    raise PersistenceError(f"treadle db vacuum does not know how to vacuum {persistence!r}")


def _vacuum_sqlite(path: str) -> str:
    if not os.path.exists(path):
        raise PersistenceError(f"no SQLite database at {path!r}")
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            before = os.path.getsize(path)
            mode = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect with the VACUUM
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            after = os.path.getsize(path)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise PersistenceError(f"cannot vacuum SQLite database {path!r}: {exc}") from exc
    switched = "" if mode == 2 else "; it now gives space back as runs are deleted"
    return f"vacuumed {path}: {_size(before)} -> {_size(after)}{switched}"


def _vacuum_postgres(dsn: str) -> str:
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for table in _TABLES:
                conn.execute(f"VACUUM (ANALYZE) {table}")
    except psycopg.Error as exc:
        raise PersistenceError(f"cannot vacuum the PostgreSQL database: {exc}") from exc
    return f"vacuumed the tables {', '.join(_TABLES)} (their free space is reusable)"


def _size(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 100_000 else f"{n / 1000:.0f} kB"
