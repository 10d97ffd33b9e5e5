"""Finding runs: a :class:`~treadle.RunFilter` made from the caller's arguments, and one page of
the runs it matches, with the cursor of the next."""

from __future__ import annotations

from typing import Any

from .._errors import DataError
from .._search import MAX_PAGE, RunFilter, RunPage, decode_cursor, encode_cursor
from ..persistence import Persistence
from .convert import to_state


def make_filter(flt: RunFilter | None, fields: dict[str, Any]) -> RunFilter:
    """``flt``, or a filter of ``fields`` (the fields of :class:`RunFilter`); not both."""
    if flt is not None and not isinstance(flt, RunFilter):
        raise DataError(f"a filter is a treadle.RunFilter, not {type(flt).__name__}")
    if flt is not None and fields:
        raise DataError(f"give a RunFilter or filter fields, not both ({', '.join(fields)})")
    if flt is not None:
        return flt
    unknown = sorted(set(fields) - set(RunFilter.__dataclass_fields__))
    if unknown:
        known = ", ".join(RunFilter.__dataclass_fields__)
        raise DataError(f"unknown filter field {', '.join(unknown)}: the fields are {known}")
    return RunFilter(**{k: v for k, v in fields.items() if v is not None})


def check_limit(limit: object) -> int:
    """``limit`` if it is a page size (1 to :data:`MAX_PAGE`), else :class:`DataError`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_PAGE:
        raise DataError(f"limit must be a whole number from 1 to {MAX_PAGE}, not {limit!r}")
    return limit


async def find_page(
    persistence: Persistence, flt: RunFilter, cursor: str | None, limit: int
) -> RunPage:
    """The page of at most ``limit`` runs that match ``flt`` after ``cursor``."""
    limit = check_limit(limit)
    if cursor is not None and not isinstance(cursor, str):
        raise DataError(f"a cursor is text, not {type(cursor).__name__}")
    after = None if not cursor else decode_cursor(cursor)
    records = await persistence.search_runs(flt, after=after, limit=limit + 1)
    more, records = len(records) > limit, records[:limit]
    last = records[-1] if records else None
    next_cursor = encode_cursor(last.created_at, last.id) if more and last else None
    return RunPage([to_state(r) for r in records], next_cursor)
