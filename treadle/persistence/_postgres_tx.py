"""A transaction script's view of one psycopg connection, with or without pipeline mode.

Without a pipeline every statement is a round trip to the server. In pipeline mode (psycopg's
``Connection.pipeline()``) a statement whose result is not needed yet is only queued: ``BEGIN``
goes out with the first statement of the transaction, an ``executemany`` (a checkpoint's
events) with whatever follows it, and ``COMMIT`` with the last notifications. A statement
whose result a script needs (a row, a row count) sends everything queued and waits.

The transaction id must be known before ``COMMIT`` is sent, so that a ``COMMIT`` whose
connection dies can be looked up (``pg_xact_status``) instead of guessed. While it is unknown,
every round trip also carries ``pg_current_xact_id_if_assigned()``: the first one after the
first write learns it, at no extra round trip (:attr:`PostgresTx.xid`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import DictRow

from ._sql import Row, queries


class PostgresTx:
    """A :class:`~treadle.persistence._sql.Tx` over one psycopg connection inside an open
    transaction; in pipeline mode when ``pipeline`` is given (see the module's docstring)."""

    def __init__(
        self, conn: psycopg.Connection[DictRow], pipeline: psycopg.Pipeline | None = None
    ) -> None:
        self._conn = conn
        self._sql = queries("postgres")
        self._pipeline = pipeline
        self.notified: list[str] = []
        #: The transaction id, once a round trip has seen one assigned (pipeline mode only).
        self.xid: str | None = None
        #: Whether statements were queued since the last look at the transaction id: they may
        #: have written, so ``xid`` being None does not yet mean that nothing was written.
        self.unprobed = False

    def _cursor(self, statement: str, params: dict[str, Any]) -> psycopg.Cursor[DictRow]:
        # Without parameters psycopg sends the text as it is (the schema is several statements).
        cursor = self._conn.execute(self._sql[statement], params or None)
        self.unprobed = self._pipeline is not None
        return cursor

    def sync(self) -> None:
        """Send what is queued and wait for its results (learning the transaction id while it
        is unknown). Without a pipeline, statements have been sent already: nothing to do."""
        if self._pipeline is None:
            return
        probe = None
        if self.xid is None and self.unprobed:
            probe = self._conn.execute(self._sql["xact_id"])
        self._pipeline.sync()
        if probe is not None:
            row = probe.fetchone()
            self.xid = None if row is None else row["xid"]
            self.unprobed = False

    def restart(self) -> None:
        """Roll the transaction back and begin a new one (which has no id yet)."""
        self._conn.execute("ROLLBACK")
        self._conn.execute("BEGIN")
        self.xid = None
        self.unprobed = False

    def queue(self, statement: str, /, **params: Any) -> None:
        """Send ``statement`` with the next round trip; its result is never read."""
        self._cursor(statement, params)

    def execute(self, statement: str, /, **params: Any) -> int:
        cursor = self._cursor(statement, params)
        self.sync()
        return max(cursor.rowcount, 0)

    def one(self, statement: str, /, **params: Any) -> Row | None:
        cursor = self._cursor(statement, params)
        self.sync()
        return cursor.fetchone()

    def all(self, statement: str, /, **params: Any) -> Sequence[Row]:
        cursor = self._cursor(statement, params)
        self.sync()
        return cursor.fetchall()

    def many(self, statement: str, rows: Sequence[dict[str, Any]], /) -> None:
        # psycopg pipelines executemany: one round trip for every row; none of its own in
        # pipeline mode (it goes with the next statement that needs a result, or COMMIT).
        self._conn.cursor().executemany(self._sql[statement], rows)
        self.unprobed = self._pipeline is not None

    def notify(self, run_id: str) -> None:
        self.notified.append(run_id)
