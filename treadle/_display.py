"""What a person reads: durations with their units and history details on one line, shared by
``treadle history`` and the dashboard."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

DURATION_FIELDS = {"ms": ("took", 0.001), "retry_in": ("retry_in", 1.0)}
"""History detail fields that hold a duration: the label a person reads, and the field's unit
in seconds (``step_completed`` stores milliseconds in ``ms``, ``step_failed`` seconds)."""


def duration_text(seconds: float) -> str:
    """A duration for people, in the units users write: ``53ms``, ``4.2s``, ``3m5s``,
    ``2h10m``, ``3d4h``."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def value_text(value: Any) -> str:
    """A detail value on one line: text as it is, lists of text joined, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def detail_items(detail: Mapping[str, Any], skip: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The fields of a history event's detail as (label, text), durations with their units;
    fields that are None or in ``skip`` are left out."""
    left_out = set(skip)
    items = []
    for key, value in detail.items():
        if value is None or key in left_out:
            continue
        if key in DURATION_FIELDS and isinstance(value, int | float):
            label, unit = DURATION_FIELDS[key]
            items.append((label, duration_text(float(value) * unit)))
        else:
            items.append((key, value_text(value)))
    return items


def detail_text(detail: Mapping[str, Any], skip: Iterable[str] = ()) -> str:
    """:func:`detail_items` on one line: ``attempt: 1, retry_in: 53ms, error: boom``."""
    return ", ".join(f"{label}: {text}" for label, text in detail_items(detail, skip))
