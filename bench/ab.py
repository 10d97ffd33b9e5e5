"""A/B: the same quick figures measured alternately on two source trees of treadle.

    python bench/ab.py TREE_A TREE_B [--rounds 3] [--parts sequential,concurrent] [--out F]

TREE_A and TREE_B are directories holding a ``treadle`` package (two git worktrees, e.g.
``git worktree add /tmp/before bfe039d``). Each round runs this checkout's ``bench/run.py
--quick --skip-dbos --parts ...`` once with ``PYTHONPATH=TREE_A`` and once with
``PYTHONPATH=TREE_B`` (the order swapped every other round, A B B A ..., so that a drift of the
machine's load falls on both), then prints, figure by figure, each tree's median and spread
(max - min over the rounds, as a share of the median) and the ratio of the medians A/B. The
benchmark code is the same for both: only the engine differs. A figure a tree cannot produce
(a feature it does not have) is shown as "-".

Writes every round's table and the summary as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from benchlib import fmt, load_average, log  # noqa: E402

DEFAULT_PARTS = "sequential,concurrent,step_cost,waiting,growth_small,fanout"
Row = dict[str, Any]


def tree_commit(tree: Path) -> str | None:
    """The commit checked out in ``tree`` (None when it is not a git checkout)."""
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True,
                       text=True)  # fmt: skip
    return r.stdout.strip() or None


def run_once(tree: Path, parts: str, out: Path, extra: list[str]) -> list[Row]:
    """One quick run of this checkout's bench on ``tree``'s treadle; its table rows."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, str(BENCH_DIR / "run.py"), "--quick", "--skip-dbos", "--parts", parts,
           "--out", str(out), *extra]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    rows: list[Row] = json.loads(out.read_text())["table"]
    return rows


def summarise(values: list[float]) -> tuple[float | None, float | None]:
    """Median and spread ((max - min) / median) of a figure's values over the rounds."""
    if not values:
        return None, None
    med = statistics.median(values)
    return med, ((max(values) - min(values)) / med if med else None)


def render(figures: list[Row], names: tuple[str, str]) -> str:
    """figure | unit | A median (spread) | B median (spread) | A/B, aligned."""
    head = ("figure", "unit", f"{names[0]} median", "spread", f"{names[1]} median", "spread",
            "A/B")  # fmt: skip
    body = [
        (
            f["figure"],
            f["unit"],
            fmt(f["a"]),
            pct(f["a_spread"]),
            fmt(f["b"]),
            pct(f["b_spread"]),
            fmt(f["ratio"]),
        )
        for f in figures
    ]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        return " | ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i])
                          for i, c in enumerate(cells))  # fmt: skip

    return "\n".join([line(head), "-+-".join("-" * w for w in widths), *(line(b) for b in body)])


def pct(v: float | None) -> str:
    """A spread as ±%."""
    return "-" if v is None else f"±{v / 2:.0%}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("tree_a", type=Path)
    ap.add_argument("tree_b", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--parts", default=DEFAULT_PARTS, help=f"run.py --parts (default {DEFAULT_PARTS})"
    )
    ap.add_argument("--set", action="append", default=[], metavar="KEY=N", help="passed to run.py")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ab.json")
    args = ap.parse_args()
    trees = (args.tree_a.resolve(), args.tree_b.resolve())
    for tree in trees:
        if not (tree / "treadle" / "__init__.py").exists():
            ap.error(f"{tree}: no treadle package there")
    extra = [x for item in args.set for x in ("--set", item)]
    load_before = load_average()
    values: list[dict[str, list[float]]] = [{}, {}]
    rows_seen: dict[str, Row] = {}
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="treadle-ab-") as tmp:
        for r in range(args.rounds):
            order = (0, 1) if r % 2 == 0 else (1, 0)
            for side in order:
                log(f"round {r + 1}/{args.rounds}: {'AB'[side]} = {trees[side]}")
                rows = run_once(trees[side], args.parts, Path(tmp) / f"{r}-{side}.json", extra)
                rounds.append({"round": r, "tree": str(trees[side]), "table": rows})
                for row in rows:
                    rows_seen.setdefault(row["figure"], row)
                    if row.get("treadle") is not None:
                        values[side].setdefault(row["figure"], []).append(float(row["treadle"]))
    figures: list[Row] = []
    for name, row in rows_seen.items():
        a, a_spread = summarise(values[0].get(name, []))
        b, b_spread = summarise(values[1].get(name, []))
        if a is None and b is None:
            continue
        figures.append({"figure": name, "unit": row["unit"], "better": row["better"], "a": a,
                        "a_spread": a_spread, "b": b, "b_spread": b_spread,
                        "ratio": a / b if a is not None and b else None})  # fmt: skip
    names = tuple(f"{'AB'[i]} ({tree_commit(t) or t.name})" for i, t in enumerate(trees))
    print(render(figures, (names[0], names[1])))
    print(f"A = {trees[0]}, B = {trees[1]}; {args.rounds} rounds, alternating; load average "
          f"before {load_before}, after {load_average()}")  # fmt: skip
    args.out.write_text(json.dumps({"trees": [str(t) for t in trees], "summary": figures,
                                    "rounds": rounds}, indent=2) + "\n")  # fmt: skip
    print(f"JSON written to {args.out}")


if __name__ == "__main__":
    main()
