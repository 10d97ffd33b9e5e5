"""What a schedule is given besides its expression: its policies and its input, checked."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from treadle._duration import Duration, parse_duration
from treadle._priority import check_priority
from treadle._state import encode_data
from treadle.persistence._records import ScheduleRecord

CATCH_UP = ("one", "none", "all")
"""Missed-fire policies: one run for all missed due times, none, or one per missed due time."""
OVERLAP = ("allow", "skip", "buffer_one")
"""Overlap policies: start regardless, skip while the last run is active, or hold one fire."""

SCHEDULED_AT = "scheduled_at"
"""The key of the run data that holds the due time the run was started for."""


@dataclass(frozen=True)
class Options:
    """The policies of a schedule, stored as JSON beside it."""

    catch_up: str = "one"
    window: timedelta | None = None
    overlap: str = "allow"
    jitter: timedelta | None = None
    pause_on_failure: bool = False
    paused_reason: str | None = None
    """Why the schedule paused itself (``pause_on_failure``); None once it is enabled again."""
    priority: int = 0
    """The priority of the runs it starts."""

    def to_json(self) -> str:
        """The stored form."""
        stored: dict[str, object] = {
            "catch_up": self.catch_up,
            "catch_up_window": seconds(self.window),
            "overlap": self.overlap,
            "jitter": seconds(self.jitter),
        }
        if self.pause_on_failure:
            stored["pause_on_failure"] = True
        if self.paused_reason is not None:
            stored["paused_reason"] = self.paused_reason
        if self.priority:
            stored["priority"] = self.priority
        return json.dumps(stored)

    def as_given(self) -> Options:
        """The options as ``Cron.add`` was given them (without the state they carry)."""
        return dataclasses.replace(self, paused_reason=None)

    @classmethod
    def from_json(cls, text: str) -> Options:
        """Read the stored form (missing keys take their defaults)."""
        raw = json.loads(text or "{}")
        window, jitter = raw.get("catch_up_window"), raw.get("jitter")
        return cls(
            catch_up=raw.get("catch_up", "one"),
            window=None if window is None else timedelta(seconds=window),
            overlap=raw.get("overlap", "allow"),
            jitter=None if jitter is None else timedelta(seconds=jitter),
            pause_on_failure=bool(raw.get("pause_on_failure", False)),
            paused_reason=raw.get("paused_reason"),
            priority=int(raw.get("priority", 0)),
        )


def seconds(value: timedelta | None) -> float | None:
    """``value`` in seconds, or None."""
    return None if value is None else value.total_seconds()


def same_definition(a: ScheduleRecord, b: ScheduleRecord) -> bool:
    """Whether two records describe the same schedule (what ``add`` was given)."""
    return (a.workflow, a.expression, a.timezone) == (b.workflow, b.expression, b.timezone) and (
        json.loads(a.input),
        Options.from_json(a.options).as_given(),
    ) == (json.loads(b.input), Options.from_json(b.options).as_given())


def check_options(
    catch_up: str,
    window: Duration | None,
    overlap: str,
    jitter: Duration | None,
    pause_on_failure: bool = False,
    priority: int = 0,
) -> Options:
    """Check the policies given to ``Cron.add``; raise ``ValueError`` saying what is wrong."""
    if catch_up not in CATCH_UP:
        raise ValueError(f"invalid catch_up {catch_up!r}: expected one of {', '.join(CATCH_UP)}")
    if overlap not in OVERLAP:
        raise ValueError(f"invalid overlap {overlap!r}: expected one of {', '.join(OVERLAP)}")
    window_value = _duration("catch_up_window", window)
    if window_value is not None and window_value <= timedelta(0):
        raise ValueError(f"invalid catch_up_window {window!r}: it must be greater than 0")
    if catch_up == "all" and window_value is None:
        raise ValueError(
            "catch_up='all' needs a catch_up_window (such as '6h'): it starts one run for"
            " every due time missed within it"
        )
    if catch_up == "none" and window_value is not None:
        raise ValueError("catch_up_window applies to catch_up='one' or 'all', not 'none'")
    if catch_up == "all" and overlap != "allow":
        raise ValueError(
            f"catch_up='all' may start several runs at once, which overlap={overlap!r} forbids:"
            " use catch_up='one' or overlap='allow'"
        )
    jitter_value = _duration("jitter", jitter)
    if not isinstance(pause_on_failure, bool):
        raise ValueError(f"invalid pause_on_failure {pause_on_failure!r}: expected True or False")
    return Options(
        catch_up,
        window_value,
        overlap,
        jitter_value or None,
        pause_on_failure,
        priority=check_priority(priority),
    )


def _duration(name: str, value: Duration | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"invalid {name}: {exc}") from None


def input_json(schedule_id: str, value: dict[str, Any] | None) -> str:
    """The input of a schedule as stored JSON; ``DataError``/``ValueError`` if it is not fit."""
    if value is None:
        return "null"
    where = f"input of schedule {schedule_id!r}"
    text = encode_data(value, where)  # a JSON object (JSON forms taken), or DataError why not
    if SCHEDULED_AT in value:
        raise ValueError(
            f"{where} must not contain {SCHEDULED_AT!r}: each run gets its due time there"
        )
    return text
