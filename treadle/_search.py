"""Labels and search: the rules for labels, the one definition of a filter over runs
(:class:`RunFilter`, shared by the engine, the CLI, the HTTP API and bulk actions), a page of
runs (:class:`RunPage`) and the opaque cursor that continues it."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._errors import DataError
from ._ids import check_id
from ._labels import check_labels
from ._state import Status

if TYPE_CHECKING:
    from ._state import State

MAX_PAGE = 1000
"""The largest page of runs one call returns."""


def _aware(value: datetime | None, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise DataError(f"{what} must be a datetime, not {type(value).__name__}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RunFilter:
    """Which runs: every field given must match (None: any). Labels match when the run has
    every one of them; ``error_contains`` matches a part of the run's error, ignoring case;
    time bounds are ``after <= t < before``. Naive datetimes are taken as UTC."""

    workflow: str | None = None
    status: Status | None = None
    version: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    error_contains: str | None = None
    parent_id: str | None = None

    def __post_init__(self) -> None:
        if self.workflow is not None:
            check_id(self.workflow, "workflow name")
        if self.status is not None:
            try:
                status = Status(self.status)
            except ValueError:
                allowed = ", ".join(s.value for s in Status)
                raise DataError(f"unknown status {self.status!r}: one of {allowed}") from None
            object.__setattr__(self, "status", status)
        if self.parent_id is not None:
            check_id(self.parent_id, "run id")
        if self.version is not None and not isinstance(self.version, str):
            raise DataError(f"version must be a string, not {type(self.version).__name__}")
        if self.error_contains is not None and not isinstance(self.error_contains, str):
            raise DataError("error_contains must be a string")
        object.__setattr__(self, "labels", check_labels(self.labels))
        for name in ("created_after", "created_before", "updated_after", "updated_before"):
            object.__setattr__(self, name, _aware(getattr(self, name), name))

    def matches(self, state: State) -> bool:
        """Whether ``state`` matches (what the stored search decides, for one run)."""
        checks = (
            self.workflow in (None, state.workflow),
            self.status in (None, state.status),
            self.version in (None, state.version),
            self.parent_id in (None, state.parent_id),
            all(state.labels.get(k) == v for k, v in self.labels.items()),
            self.created_after is None or state.created_at >= self.created_after,
            self.created_before is None or state.created_at < self.created_before,
            self.updated_after is None or state.updated_at >= self.updated_after,
            self.updated_before is None or state.updated_at < self.updated_before,
            not self.error_contains or self.error_contains.lower() in (state.error or "").lower(),
        )
        return all(checks)


@dataclass(frozen=True)
class RunPage:
    """One page of runs, newest first, and the cursor of the next page (None: the last)."""

    runs: list[State]
    next_cursor: str | None


def encode_cursor(created_at: datetime, run_id: str) -> str:
    """The cursor after the run created at ``created_at`` with id ``run_id``: opaque text."""
    raw = json.dumps([created_at.timestamp(), run_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor was made from; :class:`DataError` for text that is not a
    cursor of :func:`encode_cursor`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, run_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        check_id(run_id)
        return datetime.fromtimestamp(float(at), UTC), str(run_id)
    except (ValueError, TypeError, binascii.Error, UnicodeError, OverflowError):
        shown = cursor if len(cursor) <= 40 else cursor[:40] + "..."
        raise DataError(
            f"not a cursor of this search: {shown!r} (pass the next_cursor of the previous page)"
        ) from None


def query_params(flt: RunFilter, after: tuple[datetime, str] | None) -> dict[str, Any]:
    """The filter as the named search statements take it (see ``search_runs`` in the SQL).

    The creation time bounds and the cursor are folded into one range ``lo <= created_at`` and
    ``(created_at, id) < (hi, hi_id)``, always bound, so that the index on ``created_at`` is
    entered at the cursor rather than scanned from the newest run."""
    hi, hi_id = _FAR, "~"  # '~' sorts after every character an id may have
    if flt.created_before is not None:
        hi, hi_id = flt.created_before, ""
    if after is not None and (after[0], after[1]) < (hi, hi_id):
        hi, hi_id = after
    first: tuple[str | None, str | None] = next(iter(flt.labels.items()), (None, None))
    return {
        "workflow": flt.workflow,
        "status": None if flt.status is None else flt.status.value,
        "version": flt.version,
        "parent_id": flt.parent_id,
        "label_key": first[0],
        "label_value": first[1],
        "labels": json.dumps(dict(flt.labels)),
        "lo": flt.created_after or _EPOCH,
        "hi": hi,
        "hi_id": hi_id,
        "updated_after": flt.updated_after,
        "updated_before": flt.updated_before,
        "error": flt.error_contains.lower() if flt.error_contains else None,
    }


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FAR = datetime(9999, 1, 1, tzinfo=UTC)
