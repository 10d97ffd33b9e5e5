"""Helpers of the retention tests: the rows each run has in every table (to check that a run is
there whole or gone whole), and seeding many finished runs straight into a database."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import datetime
from typing import Any

import psycopg

import treadle

#: The tables that hold rows of a run, and the column naming the run.
TABLES = {"runs": "id", "events": "run_id", "inbox": "run_id", "run_labels": "run_id"}


def query(persistence: treadle.Persistence, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run ``sql`` (``?`` placeholders) on the database of ``persistence`` and return its rows
    as tuples (an open MemoryPersistence is read through its own connection)."""
    if isinstance(persistence, treadle.MemoryPersistence):
        conn = persistence._conn
        assert conn is not None, "open the engine first"
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]
    if isinstance(persistence, treadle.SQLitePersistence):
        with sqlite3.connect(persistence.path) as conn:
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]
    assert isinstance(persistence, treadle.PostgresPersistence)
    with psycopg.connect(persistence.dsn, autocommit=True) as pg:
        cursor = pg.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []


def rows_by_run(persistence: treadle.Persistence) -> dict[str, Counter[str]]:
    """For every table, how many rows each run id has there."""
    return {
        table: Counter(r[0] for r in query(persistence, f"SELECT {column} FROM {table}"))
        for table, column in TABLES.items()
    }


def orphans(persistence: treadle.Persistence) -> dict[str, int]:
    """Rows of events, inbox and run_labels whose run is gone (must be none), and children
    whose parent is gone (retention unlinks them)."""
    found = {
        table: query(
            persistence,
            f"SELECT COUNT(*) FROM {table} WHERE run_id NOT IN (SELECT id FROM runs)",
        )[0][0]
        for table in ("events", "inbox", "run_labels")
    }
    found["parent_id"] = query(
        persistence,
        "SELECT COUNT(*) FROM runs WHERE parent_id IS NOT NULL "
        "AND parent_id NOT IN (SELECT id FROM runs)",
    )[0][0]
    return found


def add_label(persistence: treadle.Persistence, run_id: str, key: str, value: str) -> None:
    """A label row for the run, as search stores them."""
    query(
        persistence,
        "INSERT INTO run_labels (run_id, key, value) VALUES (?, ?, ?)",
        (run_id, key, value),
    )


def seed_finished(
    persistence: treadle.Persistence,
    count: int,
    ended: datetime,
    *,
    prefix: str = "old",
    events: int = 4,
    inbox: int = 2,
    data_bytes: int = 200,
) -> list[str]:
    """Insert ``count`` completed runs of workflow ``seeded`` that ended at ``ended``, each with
    ``events`` events, ``inbox`` consumed inbox messages and one label (the schema must exist:
    open an engine on the database once first). Returns their ids."""
    ids = [f"{prefix}-{i:06d}" for i in range(count)]
    sqlite = not isinstance(persistence, treadle.PostgresPersistence)
    at: Any = ended.timestamp() if sqlite else ended
    data = json.dumps({"pad": "x" * data_bytes})
    # Every tenth run is a parent, and the nine after it are its children.
    runs = [
        (i, "seeded", "def", "completed", data, "{}", at, at, ids[n - n % 10] if n % 10 else None)
        for n, i in enumerate(ids)
    ]
    event_rows = [(i, at, "step_completed", "s", "{}") for i in ids for _ in range(events)]
    consumed: Any = 1 if sqlite else True
    inbox_rows = [(i, "signal", "go", "{}", at, consumed) for i in ids for _ in range(inbox)]
    label_rows = [(i, "customer", f"c-{n % 7}") for n, i in enumerate(ids)]
    statements = [
        (
            "INSERT INTO runs (id, workflow, definition_id, status, data, cursor, created_at, "
            "updated_at, parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            runs,
        ),
        ("INSERT INTO events (run_id, at, kind, step, detail) VALUES (?, ?, ?, ?, ?)", event_rows),
        (
            "INSERT INTO inbox (run_id, kind, name, payload, created_at, consumed) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            inbox_rows,
        ),
        ("INSERT INTO run_labels (run_id, key, value) VALUES (?, ?, ?)", label_rows),
    ]
    if sqlite:
        assert isinstance(persistence, treadle.SQLitePersistence)
        if isinstance(persistence, treadle.MemoryPersistence):
            conn = persistence._conn
            assert conn is not None
            for sql, rows in statements:
                conn.executemany(sql, rows)
        else:
            with sqlite3.connect(persistence.path) as conn:
                for sql, rows in statements:
                    conn.executemany(sql, rows)
    else:
        assert isinstance(persistence, treadle.PostgresPersistence)
        with psycopg.connect(persistence.dsn) as pg, pg.cursor() as cursor:
            for sql, rows in statements:
                cursor.executemany(sql.replace("?", "%s"), rows)
    return ids


def new_like(persistence: treadle.Persistence) -> treadle.Persistence:
    """Another persistence object on the same database (the same object for memory)."""
    if isinstance(persistence, treadle.MemoryPersistence):
        return persistence
    if isinstance(persistence, treadle.SQLitePersistence):
        return treadle.SQLitePersistence(persistence.path)
    assert isinstance(persistence, treadle.PostgresPersistence)
    return treadle.PostgresPersistence(persistence.dsn)
