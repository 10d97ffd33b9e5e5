"""The benchmark's regression guard (bench/compare.py) flags what moved beyond the noise band."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _row(figure: str, better: str, t: float | None, d: float | None) -> dict[str, Any]:
    return {"figure": figure, "unit": "x", "better": better, "treadle": t, "dbos": d,
            "ratio": None if t is None or d is None else t / d}  # fmt: skip


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"table": rows}))
    return path


def _compare(
    tmp_path: Path, now: list[dict[str, Any]], then: list[dict[str, Any]]
) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, str(BENCH / "compare.py"), str(_write(tmp_path / "now.json", now)),
         str(_write(tmp_path / "base.json", then))],
        capture_output=True, text=True, cwd=BENCH, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout


def test_a_ratio_that_moved_the_wrong_way_is_a_regression(tmp_path: Path) -> None:
    # Both sides twice as slow (a loaded machine): the ratio holds, nothing is flagged.
    code, out = _compare(
        tmp_path,
        [_row("p50", "lower", 4.0, 40.0), _row("rate", "higher", 500.0, 50.0)],
        [_row("p50", "lower", 2.0, 20.0), _row("rate", "higher", 1000.0, 100.0)],
    )
    assert code == 0, out
    assert "REGRESSION" not in out and "no figure regressed" in out
    # treadle alone slower: flagged, and the exit status says so.
    code, out = _compare(
        tmp_path, [_row("p50", "lower", 4.0, 20.0)], [_row("p50", "lower", 2.0, 20.0)]
    )
    assert code == 1
    assert "REGRESSION" in out and "+100%" in out


def test_treadle_only_figures_compare_by_value_and_improvements_are_not_failures(
    tmp_path: Path,
) -> None:
    code, out = _compare(
        tmp_path,
        [_row("per iteration", "lower", 100.0, None), _row("new figure", "lower", 1.0, None)],
        [_row("per iteration", "lower", 400.0, None)],
    )
    assert code == 0, out
    assert "improved" in out and "-75%" in out
    assert "new figure" not in out  # no baseline for it: nothing to compare
