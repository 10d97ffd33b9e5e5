"""The regression guard: this run's figures against a stored baseline.

    python bench/run.py --quick --compare bench/baseline.json
    python bench/compare.py bench/results/latest.json bench/baseline.json

A figure measured on both sides (treadle and DBOS) is compared by its ratio treadle/DBOS:
both sides are measured in the same run on the same machine, so the ratio carries across
machines and load far better than the raw number. A treadle-only figure is compared by its
value. A figure moved when it changed by more than the noise band (default 25%, the spread
seen between back-to-back quick runs on a shared 2-core machine); it is flagged as a
regression or an improvement according to which way is better for it.

Standard library only (run.py and postgres.py import it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchlib import fmt

NOISE = 0.25
"""How much a figure may move between two runs of the same code before it is flagged."""


def _measure(row: dict[str, Any]) -> tuple[str, float | None]:
    """What a row is compared by: its ratio when both sides have it, else treadle's value."""
    if row.get("ratio") is not None:
        return "ratio", float(row["ratio"])
    value = row.get("treadle")
    return "value", None if value is None else float(value)


def compare(
    rows: list[dict[str, Any]], baseline: list[dict[str, Any]], noise: float = NOISE
) -> tuple[list[tuple[str, ...]], int]:
    """One line per figure present in both, and how many regressed beyond ``noise``."""
    before = {r["figure"]: r for r in baseline}
    lines: list[tuple[str, ...]] = []
    regressions = 0
    for row in rows:
        old = before.get(row["figure"])
        if old is None:
            continue
        kind, now = _measure(row)
        old_kind, then = _measure(old)
        if now is None or then is None or kind != old_kind or then == 0:
            continue
        change = now / then - 1
        lower_is_better = row.get("better") == "lower"
        worse = change > noise if lower_is_better else change < -noise
        better = change < -noise if lower_is_better else change > noise
        flag = "REGRESSION" if worse else "improved" if better else "ok"
        regressions += worse
        label = f"{row['figure']} ({'treadle/DBOS' if kind == 'ratio' else row['unit']})"
        lines.append((label, fmt(then), fmt(now), f"{change:+.0%}", flag))
    return lines, regressions


def render(lines: list[tuple[str, ...]], noise: float = NOISE) -> str:
    """The comparison as an aligned table."""
    head = ("figure (compared by)", "baseline", "now", "change", f"±{noise:.0%} band")
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(5)]

    def line(cells: tuple[str, ...]) -> str:
        return " | ".join(
            c.ljust(widths[i]) if i in (0, 4) else c.rjust(widths[i]) for i, c in enumerate(cells)
        )

    return "\n".join([line(head), "-+-".join("-" * w for w in widths), *(line(x) for x in lines)])


def load_rows(path: Path) -> list[dict[str, Any]]:
    """The table rows of a results JSON written by run.py or postgres.py."""
    data = json.loads(path.read_text())
    rows = data.get("table")
    if not isinstance(rows, list):
        raise SystemExit(f"{path}: not a benchmark result (no 'table')")
    return rows


def report(rows: list[dict[str, Any]], baseline_path: Path, noise: float = NOISE) -> int:
    """Print the comparison against ``baseline_path``; the number of regressions."""
    lines, regressions = compare(rows, load_rows(baseline_path), noise)
    print(f"\nagainst the baseline {baseline_path}:")
    print(render(lines, noise))
    verdict = (
        f"{regressions} figure(s) regressed beyond the noise band"
        if regressions
        else ("no figure regressed beyond the noise band")
    )
    print(verdict)
    return regressions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("results", type=Path, help="a results JSON (bench/results/latest.json)")
    ap.add_argument("baseline", type=Path, help="the baseline JSON (bench/baseline.json)")
    ap.add_argument("--noise", type=float, default=NOISE, help="the noise band, as a fraction")
    args = ap.parse_args()
    sys.exit(1 if report(load_rows(args.results), args.baseline, args.noise) else 0)


if __name__ == "__main__":
    main()
