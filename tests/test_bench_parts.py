"""The benchmark's parts: every figure run.py names has its coroutine, and the table and the
rate check read results as the parts write them."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"

_CHECK = """
import importlib, inspect, run
missing = []
for key in run.PART_KEYS:
    if key == "backlog":  # a script of its own (bench/backlog.py)
        continue
    name = {"growth_small": "growth", "growth_large": "growth"}.get(key, key)
    module = importlib.import_module(run.PART_MODULES.get(name, "treadle_side"))
    fn = getattr(module, name, None)
    if fn is None or not inspect.iscoroutinefunction(fn):
        missing.append(f"{module.__name__}.{name}")
print(missing)
"""


def test_every_part_run_py_names_has_a_coroutine() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHECK], capture_output=True, text=True, cwd=BENCH, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_the_table_shows_a_missing_part_as_empty_and_pairs_the_new_rows() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        table = importlib.import_module("table")
        treadle = {"limited": {"workflows_per_s": 400.0, "cpu_ms_per_run": 1.0},
                   "processes": {"p1": {"runs_per_s": 1000.0}, "p2": {"runs_per_s": 1500.0},
                                 "speedup_2": 1.5}}  # fmt: skip
        dbos = {"limited": {"workflows_per_s": 40.0}, "processes": {"error": "failed"}}
        rows = {r["figure"]: r for r in table.build_table({}, dbos, treadle)}
    finally:
        sys.path.remove(str(BENCH))
    assert rows["concurrency(10) workflow: workflows/s"]["ratio"] == 10.0
    assert rows["SQLite backlog: 2 processes / 1"]["treadle"] == 1.5
    assert rows["SQLite backlog: 2 processes / 1"]["dbos"] is None  # the part failed
    assert rows["sequential: workflows/s"]["treadle"] is None


def test_the_busiest_second_counts_calls_in_any_window_of_one_second() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        busiest_second = importlib.import_module("benchlib").busiest_second
    finally:
        sys.path.remove(str(BENCH))
    assert busiest_second([]) == 0
    assert busiest_second([0.0, 0.5, 0.99, 1.0, 1.5]) == 3  # [0, 0.99] or [0.5, 1.5)
    assert busiest_second([t / 64 for t in range(200)]) == 64  # exact in binary
