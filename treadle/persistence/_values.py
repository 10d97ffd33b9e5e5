"""Large values of a run's data, stored beside the run in ``run_values``.

A checkpoint rewrites ``runs.data`` whole; a run whose data holds a 100,000-element list would
rewrite megabytes at every step. So a top-level value whose JSON text is large is stored in
``run_values`` instead, written only when it changed: a long list as chunks of elements (one
row per chunk, ``part`` 1, 2, ...; only the chunks that changed are written), another large
value as one row (``part`` 0). ``runs.data`` then holds :data:`ASIDE` followed by the data
object with ``0`` in place of each value stored aside.

Readers never see that form: every row read with a ``data`` column goes through
:func:`filled`, which puts the values back (one more statement, for runs that have values
aside only), so status, history, the dashboard, the HTTP API, fork and a parent reading its
child's data all get the whole data as before. The rows go through the codec like
``runs.data`` (column ``content``), and are deleted with the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from ._sql import Row, Tx

ASIDE = "~aside:"
"""What ``runs.data`` starts with when some of the run's values are stored beside it (no JSON
text starts with ``~``)."""

#: What a checkpoint writes of the values aside: ``(key, part, content)`` upserts a row;
#: ``(key, part, None)`` deletes the rows of ``key`` from ``part`` on.
ValueWrite = tuple[str, int, str | None]

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def assemble(marked: str, rows: Sequence[Row]) -> str:
    """The whole data JSON from ``runs.data`` in the form with values aside, and its rows
    (ordered by key and part)."""
    small: dict[str, Any] = json.loads(marked[len(ASIDE) :])
    parts: dict[str, list[str]] = {}
    whole: dict[str, str] = {}
    for row in rows:
        if row["part"] == 0:
            whole[row["key"]] = row["content"]
        else:
            parts.setdefault(row["key"], []).append(row["content"])
    out = []
    for key, value in small.items():
        if key in whole:
            text = whole[key]
        elif key in parts:
            text = "[" + ",".join(parts[key]) + "]"
        else:
            text = _dumps(value)
        out.append(_dumps(key) + ":" + text)
    return "{" + ",".join(out) + "}"


def filled(tx: Tx, row: Row, opened: Callable[[Row], Row]) -> Row:
    """``row`` with its ``data`` whole again, if it is in the form with values aside."""
    whole = dict(row)
    rows = [opened(r) for r in tx.all("run_values", run_id=whole["id"])]
    whole["data"] = assemble(whole["data"], rows)
    return whole


def write(tx: Tx, run_id: str, writes: Sequence[ValueWrite], reset: bool) -> None:
    """Store a checkpoint's changes to the values aside (``reset``: drop every row first)."""
    if reset:
        tx.execute("delete_run_values", run_id=run_id, key=None, part=0)
    for key, part, content in writes:
        if content is None:
            tx.execute("delete_run_values", run_id=run_id, key=key, part=part)
        else:
            tx.execute("put_run_value", run_id=run_id, key=key, part=part, content=content)
