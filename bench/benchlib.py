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
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

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
    "search_stored": 1_000_000,
    "search_queries": 200,
    "prune_backlog": 200_000,
    "fanout": 1_000,
    "foreach_sample": 300,
    "backlog": 96,
    "limited": 1_000,
    "rate_limited": 500,
    "processes": 20_000,
    "processes_dbos": 3_000,
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
    "search_stored": 50_000,
    "search_queries": 50,
    "prune_backlog": 20_000,
    "fanout": 1_000,
    "foreach_sample": 100,
    "backlog": 96,
    "limited": 200,
    "rate_limited": 150,
    "processes": 5_000,
    "processes_dbos": 1_000,
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


def busiest_second(times: list[float]) -> int:
    """The most calls in any window of one second."""
    ordered = sorted(times)
    most, lo = 0, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= 1.0:
            lo += 1
        most = max(most, hi - lo + 1)
    return most


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


# Parts run in processes of their own -------------------------------------------------

_ADDRESS = re.compile(r"0x[0-9a-f]+|^\S*\d\d:\d\d:\d\d\S*")
_REPEATS_SHOWN = 3


def forward_stderr(stream: IO[str], label: str) -> None:
    """Copy a process's stderr to ours, collapsing lines that repeat but for addresses/times."""
    seen: dict[str, int] = {}
    for line in stream:
        key = _ADDRESS.sub("", line.strip())
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= _REPEATS_SHOWN:
            sys.stderr.write(f"  [{label}] {line}")
    for key, count in seen.items():
        if count > _REPEATS_SHOWN:
            sys.stderr.write(f"  [{label}: {count - _REPEATS_SHOWN:,} more lines like: {key}]\n")
    sys.stderr.flush()


def last_json(text: str) -> dict[str, Any]:
    lines = [ln for ln in text.splitlines() if ln.strip().startswith("{")]
    if not lines:
        return {"error": "no JSON on stdout"}
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        return {"error": f"bad JSON: {e}"}
    return result


def run_json(cmd: list[str], timeout: float, label: str, cwd: str) -> dict[str, Any]:
    """Run one part in its own process; its last stdout line is a JSON object."""
    log(f"{label}: start")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    assert proc.stdout is not None and proc.stderr is not None
    stdout = proc.stdout
    out: list[str] = []
    readers = [
        threading.Thread(target=forward_stderr, args=(proc.stderr, label), daemon=True),
        threading.Thread(target=lambda: out.append(stdout.read()), daemon=True),
    ]
    for r in readers:
        r.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        log(f"{label}: timed out after {timeout:.0f}s")
        return {"error": f"timed out after {timeout:.0f}s"}
    finally:
        for r in readers:
            r.join(timeout=30)
    result = last_json("".join(out))
    if "error" in result and proc.returncode:
        result["error"] += f" (exit code {proc.returncode})"
    result.setdefault("process_s", time.perf_counter() - t0)
    log(f"{label}: {result.get('error') or 'ok'} ({time.perf_counter() - t0:.1f}s)")
    return result


# DBOS lives in a virtual environment of its own, so the project does not depend on it.

DBOS_VENV = Path(__file__).resolve().parent / ".venv-dbos"
DBOS_REQUIREMENT = "dbos==3.4.*"


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_dbos_venv() -> Path:
    """Create bench/.venv-dbos with DBOS installed, unless it already works."""
    py = _venv_python(DBOS_VENV)
    check = [str(py), "-c", "import dbos, importlib.metadata as m; print(m.version('dbos'))"]
    if py.exists():
        r = subprocess.run(check, capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip().startswith("3.4."):
            return py
        log(f"DBOS venv at {DBOS_VENV} is unusable, recreating it")
        shutil.rmtree(DBOS_VENV, ignore_errors=True)
    log(f"creating {DBOS_VENV} and installing {DBOS_REQUIREMENT} (one-time)")
    subprocess.run([sys.executable, "-m", "venv", str(DBOS_VENV)], check=True)
    subprocess.run(
        [
            str(py),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            DBOS_REQUIREMENT,
        ],
        check=True,
    )
    subprocess.run(check, check=True, capture_output=True)
    return py


# --------------------------------------------------------------------------- reporting

_REPO = Path(__file__).resolve().parent.parent


def number(d: dict[str, Any], *path: str) -> float | None:
    """The number at ``path`` in a part's result; None when missing or the part failed."""
    cur: Any = d
    for p in path:
        if not isinstance(cur, dict) or p not in cur or cur.get("error"):
            return None
        cur = cur[p]
    if isinstance(cur, bool) or not isinstance(cur, int | float):
        return None
    return float(cur)


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(v: float | None) -> str:
    """A figure for the table: three significant digits or so, '-' when missing."""
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if 0 < a < 0.1:
        return f"{v:.2g}"  # a ratio like 0.0013 must not print as 0.00
    return f"{v:.2f}"


def part_errors(side: str, parts: dict[str, Any]) -> list[str]:
    """One line per part of ``side`` that failed or is missing."""
    return [
        f"{side} {name}: {r.get('error') or r.get('missing')}"
        for name, r in parts.items()
        if isinstance(r, dict) and (r.get("error") or r.get("missing"))
    ]


def git_commit() -> str | None:
    """The commit checked out in the repository."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        r = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True, text=True, timeout=10
        )
        return r.stdout.strip() or None
    return None


def treadle_changes() -> list[str]:
    """Files of the treadle package that differ from the commit (the working tree is measured)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        r = subprocess.run(
            ["git", "status", "--porcelain", "--", "treadle"],
            cwd=_REPO,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return [ln[3:] for ln in r.stdout.splitlines() if ln.strip()]
    return []


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages, rounded."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def table_row(figure: str, unit: str, better: str, t: float | None, d: float | None) -> Any:
    """One figure of the comparison: treadle's and DBOS's value and their ratio."""
    return {"figure": figure, "unit": unit, "better": better, "treadle": t, "dbos": d,
            "ratio": ratio(t, d)}  # fmt: skip


def ratio_table(rows: list[Any]) -> str:
    """figure | unit | treadle | DBOS | treadle/DBOS, aligned."""
    head = ("figure", "unit", "treadle", "DBOS", "treadle/DBOS")
    body = [
        (r["figure"], r["unit"], fmt(r["treadle"]), fmt(r["dbos"]), fmt(r["ratio"])) for r in rows
    ]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(5)]

    def line(cells: tuple[str, ...]) -> str:
        return " | ".join(
            c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(cells)
        )

    return "\n".join([line(head), "-+-".join("-" * w for w in widths), *(line(b) for b in body)])
