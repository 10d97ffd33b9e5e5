"""Helpers shared by every side of the benchmark.

This module must import with the standard library only: it is loaded both by the
project's interpreter (run.py, raw_commit.py, the treadle side) and by the
benchmark's own DBOS virtual environment (dbos_side.py).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from typing import Any

# The durability setting every side is measured with unless stated otherwise.
JOURNAL_MODE = "wal"
SYNCHRONOUS = "FULL"

# Counts from the issue (full) and the scaled-down ones for a fast check (--quick).
FULL_COUNTS: dict[str, int] = {
    "sequential": 1_000,
    "concurrent": 10_000,
    "step_cost": 300,
    "waiting": 100_000,
    "waiting_sample": 1_000,
    "growth_small": 1_000,
    "growth_large": 1_000_000,
    "growth_measure": 300,
}
QUICK_COUNTS: dict[str, int] = {
    "sequential": 200,
    "concurrent": 1_000,
    "step_cost": 100,
    "waiting": 5_000,
    "waiting_sample": 200,
    "growth_small": 1_000,
    "growth_large": 50_000,
    "growth_measure": 100,
}


def log(msg: str) -> None:
    """Progress goes to stderr so stdout stays one JSON object."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def rss_kib() -> int:
    """Resident set size of this process in KiB (VmRSS from /proc/self/status)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def fresh_path(path: str) -> str:
    """Remove a SQLite database and its -wal/-shm/-journal companions."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)
    return path


def sqlite_pragmas(path: str) -> dict[str, Any]:
    """journal_mode as stored in the file (WAL persists), synchronous of a new connection."""
    conn = sqlite3.connect(path)
    try:
        return {
            "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
            "synchronous_default_new_connection": conn.execute("PRAGMA synchronous").fetchone()[0],
            "sqlite_version": sqlite3.sqlite_version,
        }
    finally:
        conn.close()


def emit(result: dict[str, Any]) -> None:
    """Print the one JSON object a side's subprocess hands back."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
