"""Raw SQLite commit cost: the floor any SQLite-backed engine pays per durable write.

    python bench/raw_commit.py [--n 2000] [--dir DIR]

Prints one JSON object: the cost of committing one small row per transaction with
synchronous=FULL and with synchronous=NORMAL (both in WAL mode), and the throughput
of 100-row batches per commit with synchronous=FULL. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from typing import Any

from benchlib import emit, fresh_path, log, percentile


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(fresh_path(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, "
        "step INTEGER NOT NULL, payload BLOB)"
    )
    return conn


def one_row_commits(path: str, synchronous: str, n: int) -> dict[str, Any]:
    """n transactions of one INSERT each; per-commit latency in µs."""
    conn = _connect(path, synchronous)
    payload = b"x" * 64
    for i in range(50):  # warm-up
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO t (run_id, step, payload) VALUES (?, ?, ?)", (f"w{i}", 0, payload)
        )
        conn.execute("COMMIT")
    lat: list[float] = []
    t0 = time.perf_counter()
    for i in range(n):
        s = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO t (run_id, step, payload) VALUES (?, ?, ?)", (f"r{i}", 1, payload)
        )
        conn.execute("COMMIT")
        lat.append(time.perf_counter() - s)
    wall = time.perf_counter() - t0
    conn.close()
    return {
        "synchronous": synchronous,
        "n": n,
        "mean_us": wall / n * 1e6,
        "p50_us": percentile(lat, 50) * 1e6,
        "p99_us": percentile(lat, 99) * 1e6,
        "commits_per_s": n / wall,
    }


def batched_commits(path: str, synchronous: str, batches: int, size: int) -> dict[str, Any]:
    conn = _connect(path, synchronous)
    payload = b"x" * 64
    t0 = time.perf_counter()
    for b in range(batches):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO t (run_id, step, payload) VALUES (?, ?, ?)",
            [(f"b{b}", j, payload) for j in range(size)],
        )
        conn.execute("COMMIT")
    wall = time.perf_counter() - t0
    conn.close()
    rows = batches * size
    return {
        "synchronous": synchronous,
        "batch_size": size,
        "batches": batches,
        "rows_per_s": rows / wall,
        "per_row_us": wall / rows * 1e6,
        "per_commit_us": wall / batches * 1e6,
    }


def measure(n: int, directory: str) -> dict[str, Any]:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "raw_commit.sqlite")
    log(f"raw commit: {n} one-row commits, synchronous=FULL")
    full = one_row_commits(path, "FULL", n)
    log(f"raw commit: {n} one-row commits, synchronous=NORMAL")
    normal = one_row_commits(path, "NORMAL", n)
    log("raw commit: 100-row batches, synchronous=FULL")
    batch = batched_commits(path, "FULL", max(20, n // 10), 100)
    fresh_path(path)
    return {
        "journal_mode": "wal",
        "sqlite_version": sqlite3.sqlite_version,
        "one_row_full": full,
        "one_row_normal": normal,
        "batch100_full": batch,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    directory = args.dir or tempfile.mkdtemp(prefix="treadle-bench-raw-")
    emit(measure(args.n, directory))


if __name__ == "__main__":
    main()
