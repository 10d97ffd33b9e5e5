"""Durations: ``timedelta``, seconds, or Go-style strings such as ``"1h30m"`` (and ``"1d"``)."""

from __future__ import annotations

import re
from datetime import timedelta

Duration = timedelta | int | float | str

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,  # not Go's, but what people write for days
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
#: With ``calendar=True`` (how long to keep things): weeks and years of 365 days too.
_CALENDAR_UNITS = {**_UNITS, "w": 7 * 86400.0, "y": 365 * 86400.0}
_CALENDAR_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d|w|y)")


def parse_duration(value: object, *, calendar: bool = False) -> timedelta:
    """Turn a duration (timedelta, seconds, or Go-style string) into a ``timedelta``; with
    ``calendar``, strings may also count weeks (``w``) and years of 365 days (``y``).

    Raises ``ValueError`` naming the value when it is none of those, and saying "negative
    duration" when it is below zero.
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: expected seconds, a timedelta or '1h30m'")
    elif isinstance(value, int | float):
        try:
            result = timedelta(seconds=value)
        except (OverflowError, ValueError):
            raise ValueError(f"invalid duration {value!r}: out of range") from None
    elif isinstance(value, str):
        result = _parse_go(value, calendar)
    else:
        raise ValueError(f"invalid duration {value!r}: expected seconds, a timedelta or '1h30m'")
    if result < timedelta(0):
        raise _negative(value)
    return result


def _negative(value: object) -> ValueError:
    return ValueError(f"invalid duration {value!r}: negative duration (a duration is 0 or more)")


def _parse_go(text: str, calendar: bool = False) -> timedelta:
    s = text.strip()
    if s == "":
        raise ValueError("invalid duration '': empty")
    negative = s.startswith("-")
    body = s[1:] if s[:1] in "+-" else s
    if body == "0":
        return timedelta(0)
    part, units = (_CALENDAR_PART, _CALENDAR_UNITS) if calendar else (_PART, _UNITS)
    pos = 0
    total = 0.0
    while pos < len(body) or pos == 0:
        m = part.match(body, pos)
        if m is None:
            names = "ns, us, ms, s, m, h, d" + (", w, y" if calendar else "")
            example = "'30d' or '1y'" if calendar else "'90s' or '1h30m'"
            raise ValueError(
                f"invalid duration {text!r}: expected a number and a unit ({names})"
                f" such as {example}"
            )
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if negative and total > 0:
        raise _negative(text)
    try:
        return timedelta(seconds=total)
    except OverflowError:
        raise ValueError(f"invalid duration {text!r}: too long") from None
