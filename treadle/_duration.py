"""Durations: ``timedelta``, seconds, or Go-style strings such as ``"1h30m"``."""

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
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(value: object) -> timedelta:
    """Turn a duration (timedelta, seconds, or Go-style string) into a ``timedelta``.

    Raises ``ValueError`` naming the value when it is none of those or negative.
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: expected seconds, a timedelta or '1h30m'")
    elif isinstance(value, int | float):
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        result = _parse_go(value)
    else:
        raise ValueError(f"invalid duration {value!r}: expected seconds, a timedelta or '1h30m'")
    if result < timedelta(0):
        raise ValueError(f"invalid duration {value!r}: it is negative")
    return result


def _parse_go(text: str) -> timedelta:
    s = text.strip()
    if s in ("0", ""):
        if s == "0":
            return timedelta(0)
        raise ValueError("invalid duration '': empty")
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValueError(
                f"invalid duration {text!r}: expected a number and a unit (ns, us, ms, s, m, h)"
                f" such as '90s' or '1h30m'"
            )
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return timedelta(seconds=total)


def format_duration(delta: timedelta) -> str:
    """Format a ``timedelta`` Go-style (``"1h30m"``, ``"250ms"``)."""
    total = delta.total_seconds()
    if total < 1:
        return f"{round(total * 1000)}ms"
    hours, rest = divmod(int(total), 3600)
    minutes, seconds = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if seconds or not out:
        out += f"{seconds}s"
    return out
