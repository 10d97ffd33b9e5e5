"""Small HTML helpers for the dashboard: escaping, times, durations, status badges, layout."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any


def h(value: Any) -> str:
    """Escape any value for HTML text or a quoted attribute."""
    return escape("" if value is None else str(value), quote=True)


def fmt_time(value: datetime | None) -> str:
    """A time as ``2026-01-31 14:05:09 UTC`` in a ``<time>`` element."""
    if value is None:
        return '<span class="muted">—</span>'
    utc = value.astimezone(UTC)
    return f'<time datetime="{h(utc.isoformat())}">{utc:%Y-%m-%d %H:%M:%S} UTC</time>'


def fmt_duration(seconds: float | None) -> str:
    """A duration for people: ``850 ms``, ``4.2 s``, ``3 min 5 s``, ``2 h 10 min``, ``3 d 4 h``."""
    if seconds is None:
        return ""
    if seconds < 0:
        seconds = 0.0
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def badge(status: str) -> str:
    """A coloured status badge."""
    return f'<span class="badge status-{h(status)}" data-status="{h(status)}">{h(status)}</span>'


def pretty_json(value: Any) -> str:
    """JSON, indented, escaped for a ``<pre>``."""
    return h(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str))


def layout(title: str, active: str, body: str, *, open_mode: bool, script: str = "") -> str:
    """A whole page: header with navigation and the sign-in box, then ``body``."""
    nav = "".join(
        f'<a href="{href}" class="{"active" if key == active else ""}">{label}</a>'
        for key, href, label in (
            ("runs", "/runs", "Runs"),
            ("schedules", "/schedules", "Schedules"),
        )
    )
    if open_mode:
        auth = (
            '<div id="auth" class="auth open-mode" title="Set tokens to require sign-in">'
            "Open mode: no tokens configured, listening on this machine only</div>"
        )
    else:
        auth = (
            '<form id="login" class="auth">'
            '<input id="token" type="password" autocomplete="off" placeholder="API token" '
            'aria-label="API token">'
            '<button type="submit">Sign in</button></form>'
            '<div id="whoami" class="auth" hidden><span id="who"></span> '
            '<button id="logout" type="button" class="link">Sign out</button></div>'
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{h(title)} · treadle</title>
<link rel="stylesheet" href="/static/style.css">
</head><body data-open="{"1" if open_mode else "0"}">
<header><a class="brand" href="/runs">treadle</a><nav>{nav}</nav>{auth}</header>
<main>{body}</main>
<div id="toast" role="status" aria-live="polite"></div>
<script src="/static/app.js"></script>{script}
</body></html>"""
