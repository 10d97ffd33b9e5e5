"""Named SQL statements, kept per dialect in ``sql/<dialect>/*.sql`` and loaded once."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any, Protocol

_NAME = re.compile(r"^--\s*name:\s*(\S+)\s*$", re.MULTILINE)
#: A line ``-- include: x`` in a block stands for the text of block ``x`` (conditions that
#: several statements share, written once).
_INCLUDE = re.compile(r"^\s*--\s*include:\s*(\S+)\s*$", re.MULTILINE)


@cache
def queries(dialect: str) -> Mapping[str, str]:
    """Every ``-- name: x`` block of the dialect's ``.sql`` files, by name (with its
    ``-- include: y`` lines replaced by block ``y``)."""
    found: dict[str, str] = {}
    folder = resources.files("treadle.persistence") / "sql" / dialect
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text(encoding="utf-8")
        parts = _NAME.split(text)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in found:
                raise RuntimeError(f"SQL block {name!r} is defined twice for {dialect}")
            found[name] = body.strip()
    return {name: _INCLUDE.sub(lambda m: found[m.group(1)], body) for name, body in found.items()}


Row = Mapping[str, Any]


class Tx(Protocol):
    """One open transaction. Statements are called by name; parameters by keyword.

    Lists are passed as Python lists and times as aware datetimes; each dialect adapts them.
    """

    def execute(self, statement: str, /, **params: Any) -> int:
        """Run a statement; return the number of rows it changed."""

    def one(self, statement: str, /, **params: Any) -> Row | None:
        """Run a statement; return its first row, or None."""

    def all(self, statement: str, /, **params: Any) -> Sequence[Row]:
        """Run a statement; return all its rows."""

    def many(self, statement: str, rows: Sequence[dict[str, Any]], /) -> None:
        """Run a statement once per parameter set of ``rows`` (in one round trip where the
        dialect can)."""

    def notify(self, run_id: str) -> None:
        """Tell idle workers (after commit) that ``run_id`` may have become runnable."""
