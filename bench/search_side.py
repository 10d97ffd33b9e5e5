"""The search figure: filtered pages of runs with many runs stored (``python bench/run.py
--parts search``).

One real run of each workflow is made by an engine, then ``stored`` runs are copied from them
with SQL (as ``growth`` does): ten workflows, 1 run in 23 failed and the rest completed,
creation times one second apart, each run labelled ``customer=c-<n mod 10,000>`` (100 runs a
customer at 1,000,000) and ``env=prod`` (every run: a label that selects nothing). Then pages of
100 are read with ``engine.find_runs`` and timed, each query kind ``n`` times."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from benchlib import log, percentile

import treadle
from treadle._search import query_params
from treadle.persistence._sql import queries

Result = dict[str, Any]
WORKFLOWS = 10
CUSTOMERS = 10_000
PAGE = 100


def _workflow(i: int) -> treadle.Workflow:
    return treadle.new(f"w{i}").step("s", lambda ctx, s: None).build()


def _populate(db_path: str, stored: int) -> float:
    t0 = time.perf_counter()
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    cols = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
    made = {
        "id": "printf('s-%09d', s.n)",
        "workflow": f"'w' || (s.n % {WORKFLOWS})",
        "status": "CASE WHEN s.n % 23 = 7 THEN 'failed' ELSE 'completed' END",
        "error": "CASE WHEN s.n % 23 = 7 THEN 'RuntimeError: card declined ' || s.n END",
        "created_at": "1700000000.0 + s.n",
        "updated_at": "1700000000.0 + s.n + 5",
        "labels": f"json_object('customer', 'c-' || (s.n % {CUSTOMERS}), 'env', 'prod')",
        "definition_id": "(SELECT definition_id FROM runs WHERE workflow = 'w' || "
        f"(s.n % {WORKFLOWS}) LIMIT 1)",
    }
    select = ", ".join(made.get(c, f't."{c}"') for c in cols)
    series = "WITH RECURSIVE s(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM s WHERE n + 1 < ?) "
    template = conn.execute("SELECT id FROM runs LIMIT 1").fetchone()[0]
    done, batch = 0, 100_000
    while done < stored:
        k = min(batch, stored - done)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            f"{series}INSERT INTO runs ({', '.join(cols)}) SELECT {select} "
            "FROM s, runs t WHERE t.id = ?",
            (done, done + k, template),
        )
        for key, value in (("customer", f"'c-' || (s.n % {CUSTOMERS})"), ("env", "'prod'")):
            conn.execute(
                f"{series}INSERT INTO run_labels (run_id, key, value) "
                f"SELECT printf('s-%09d', s.n), '{key}', {value} FROM s",
                (done, done + k),
            )
        conn.execute("COMMIT")
        done += k
        log(f"treadle search: stored {done}/{stored}")
    conn.close()
    return time.perf_counter() - t0


def _plans(db_path: str) -> dict[str, list[str]]:
    conn = sqlite3.connect(db_path)
    out = {}
    cases = {
        "search_runs_by_label": treadle.RunFilter(labels={"customer": "c-42"}),
        "search_runs_by_workflow": treadle.RunFilter(workflow="w3", status="failed"),
        "search_runs": treadle.RunFilter(status="failed"),
    }
    for name, flt in cases.items():
        params = {**query_params(flt, None), "limit": PAGE}
        params = {k: v.timestamp() if hasattr(v, "timestamp") else v for k, v in params.items()}
        sql = queries("sqlite")[name]
        out[name] = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    conn.close()
    return out


async def _timed(engine: treadle.Engine, n: int, make: Any) -> Result:
    lat, rows = [], 0
    for i in range(n):
        filt, cursor = make(i)
        t0 = time.perf_counter()
        page = await engine.find_runs(filt, cursor=cursor, limit=PAGE)
        lat.append(time.perf_counter() - t0)
        rows += len(page.runs)
    return {"p50_ms": percentile(lat, 50) * 1e3, "p99_ms": percentile(lat, 99) * 1e3,
            "mean_rows": rows / n}  # fmt: skip


async def search(stored: int, n: int, db_path: str) -> Result:
    """`stored` runs in the database, then the time per page of each kind of filter."""
    engine = treadle.Engine(treadle.SQLitePersistence(db_path))
    engine.register(*[_workflow(i) for i in range(WORKFLOWS)])
    async with engine:
        for i in range(WORKFLOWS):
            await engine.wait(await engine.start(f"w{i}"))
    populate_s = _populate(db_path, stored)

    engine = treadle.Engine(treadle.SQLitePersistence(db_path), max_concurrent_runs=0)
    out: Result = {"stored_runs": stored, "populate_s": populate_s, "page": PAGE}
    async with engine:
        deep = await engine.find_runs(workflow="w3", status="failed", limit=PAGE)
        pages = 1
        while pages < 21 and deep.next_cursor is not None:  # the cursor of a deep page
            cursor = deep.next_cursor
            deep = await engine.find_runs(workflow="w3", status="failed", limit=PAGE, cursor=cursor)
            pages += 1
        out["deep_page"] = pages

        def customer(i: int) -> str:
            return f"c-{i * 37 % CUSTOMERS}"

        flt = treadle.RunFilter
        kinds = {
            "by_label": lambda i: (flt(labels={"customer": customer(i)}), None),
            "by_label_and_workflow": lambda i: (
                flt(labels={"customer": customer(i)}, workflow=f"w{i * 37 % 10}"),
                None,
            ),
            "by_workflow_status": lambda i: (flt(workflow=f"w{i % 10}", status="failed"), None),
            "by_workflow_status_page_21": lambda i: (
                flt(workflow="w3", status="failed"),
                cursor,
            ),
            "by_workflow": lambda i: (flt(workflow=f"w{i % 10}"), None),
            "by_status_failed": lambda i: (flt(status="failed"), None),
            "error_text": lambda i: (flt(workflow="w7", error_contains="declined"), None),
            "label_on_every_run": lambda i: (flt(labels={"env": "prod"}), None),
        }
        for name, make in kinds.items():
            out[name] = await _timed(engine, n if name != "label_on_every_run" else 5, make)
            log(f"treadle search: {name} {out[name]}")
    out["plans"] = _plans(db_path)
    out["how"] = __doc__
    return out
