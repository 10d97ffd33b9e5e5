"""Labels and search on every persistence: labels set at start and by steps, every filter of
RunFilter, cursor paging that stays stable under inserts, and the indexes the queries use."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

import treadle
from treadle import DataError, InvalidId, RunFilter, Status
from treadle.persistence._sql import queries


def failing(ctx: treadle.Context, state: treadle.State) -> None:
    raise RuntimeError(f"Card declined for {state.data.get('who', 'nobody')}")


labelled = treadle.new("labelled").step("tag", lambda ctx, s: ctx.label("stage", "tagged")).build()
parked = treadle.new("parked").await_signal("go").build()
broken = treadle.new("broken").step("charge", failing).build()


async def test_start_labels_are_stored_and_shown(engine: treadle.Engine) -> None:
    engine.register(parked)
    run_id = await engine.start("parked", labels={"customer": "c-42", "region": "eu"})
    assert (await engine.status(run_id)).labels == {"customer": "c-42", "region": "eu"}


async def test_a_step_label_is_kept_with_its_checkpoint(engine: treadle.Engine) -> None:
    engine.register(labelled)
    run_id = await engine.start("labelled", labels={"customer": "c-1"})
    state = await engine.wait(run_id, timeout=10)
    assert state.labels == {"customer": "c-1", "stage": "tagged"}
    found = await engine.find_runs(labels={"stage": "tagged"})
    assert [s.id for s in found.runs] == [run_id]


async def test_a_failed_step_leaves_no_label(engine: treadle.Engine) -> None:
    def label_then_fail(ctx: treadle.Context, state: treadle.State) -> None:
        ctx.label("stage", "half")
        raise RuntimeError("no")

    engine.register(treadle.new("halfway").step("s", label_then_fail).build())
    run_id = await engine.start("halfway")
    state = await engine.wait(run_id, timeout=10)
    assert state.status is Status.FAILED and state.labels == {}
    assert (await engine.find_runs(labels={"stage": "half"})).runs == []


@pytest.mark.parametrize(
    ("labels", "error", "says"),
    [
        ({"bad key": "x"}, InvalidId, "label key"),
        ({"k": 3}, DataError, "must be a string"),
        ({"k": ""}, DataError, "1 to 200 printable"),
        ({"k": "x" * 201}, DataError, "1 to 200 printable"),
        ({"k": "a\nb"}, DataError, "printable"),
        ({f"k{i}": "v" for i in range(33)}, DataError, "at most 32 labels"),
        (["k"], DataError, "dict of strings"),
    ],
)
async def test_bad_labels_are_refused_with_what_is_wrong(
    engine: treadle.Engine, labels: object, error: type[Exception], says: str
) -> None:
    engine.register(parked)
    with pytest.raises(error, match=says):
        await engine.start("parked", labels=labels)  # type: ignore[arg-type]
    assert await engine.runs() == []


async def test_every_filter_narrows_the_runs(
    engine: treadle.Engine, clock: treadle.FakeClock
) -> None:
    engine.register(parked)
    engine.register(broken)
    early = await engine.start("parked", labels={"customer": "c-1", "tier": "gold"})
    await engine.settle()
    clock.advance("1h")
    late = await engine.start("parked", labels={"customer": "c-1"})
    await engine.settle()
    clock.advance("1s")
    failed = await engine.start("broken", {"who": "Bob"}, labels={"customer": "c-2"})
    await engine.wait(failed, timeout=10)
    start = (await engine.status(early)).created_at

    async def ids(**fields: object) -> list[str]:
        return [s.id for s in (await engine.find_runs(**fields)).runs]

    assert await ids() == [failed, late, early]
    assert await ids(labels={"customer": "c-1"}) == [late, early]
    assert await ids(labels={"customer": "c-1", "tier": "gold"}) == [early]
    assert await ids(labels={"customer": "c-1"}, workflow="broken") == []
    assert await ids(workflow="parked", status="waiting") == [late, early]
    assert await ids(status=Status.FAILED) == [failed]
    assert await ids(error_contains="card DECLINED for bob") == [failed]
    assert await ids(created_after=start + timedelta(minutes=30)) == [failed, late]
    assert await ids(created_before=start + timedelta(minutes=30)) == [early]
    assert await ids(created_before=start) == []
    assert await ids(updated_after=start + timedelta(minutes=30), workflow="parked") == [late]
    assert await ids(updated_before=start + timedelta(minutes=30)) == [early]
    assert await ids(version="v9") == []
    assert [s.id for s in await engine.runs(labels={"customer": "c-2"})] == [failed]
    flt = RunFilter(workflow="parked", labels={"tier": "gold"})
    assert await ids() != [] and [s.id for s in (await engine.find_runs(flt)).runs] == [early]
    assert all(flt.matches(s) == (s.id == early) for s in await engine.runs())


async def test_pages_follow_the_cursor_and_do_not_shift_under_inserts(
    engine: treadle.Engine, clock: treadle.FakeClock
) -> None:
    engine.register(parked)
    made = []
    for _ in range(7):
        made.append(await engine.start("parked", labels={"batch": "b1"}))
        clock.advance("1s")
    made.reverse()  # newest first
    first = await engine.find_runs(labels={"batch": "b1"}, limit=3)
    assert [s.id for s in first.runs] == made[:3] and first.next_cursor
    await engine.start("parked", labels={"batch": "b1"})  # newer than every page: not seen
    second = await engine.find_runs(labels={"batch": "b1"}, limit=3, cursor=first.next_cursor)
    assert [s.id for s in second.runs] == made[3:6] and second.next_cursor
    last = await engine.find_runs(labels={"batch": "b1"}, limit=3, cursor=second.next_cursor)
    assert [s.id for s in last.runs] == made[6:] and last.next_cursor is None


async def test_runs_created_at_the_same_instant_page_by_id(
    engine: treadle.Engine, clock: treadle.FakeClock
) -> None:
    engine.register(parked)
    made = sorted([await engine.start("parked") for _ in range(5)], reverse=True)
    seen: list[str] = []
    cursor = None
    while True:
        page = await engine.find_runs(workflow="parked", limit=2, cursor=cursor)
        seen += [s.id for s in page.runs]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == made


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"status": "sleeping"}, "unknown status 'sleeping'"),
        ({"workflow": "no good"}, "invalid workflow name"),
        ({"colour": "red"}, "unknown filter field colour"),
        ({"limit": 0}, "limit must be a whole number from 1 to 1000"),
        ({"limit": 1001}, "limit must be a whole number from 1 to 1000"),
        ({"cursor": "garbage!"}, "not a cursor of this search"),
        ({"labels": {"k": 1}}, "must be a string"),
    ],
)
async def test_a_bad_search_says_what_is_wrong(
    engine: treadle.Engine, fields: dict[str, object], says: str
) -> None:
    with pytest.raises((DataError, InvalidId), match=says):
        await engine.find_runs(**fields)  # type: ignore[arg-type]


def _plan(conn: sqlite3.Connection, statement: str, **params: object) -> str:
    sql = queries("sqlite")[statement]
    return " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


def test_sqlite_searches_enter_through_their_indexes(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "plan.db")
    for part in queries("sqlite")["schema"].split(";\n"):
        if part.strip():
            conn.execute(part)
    params = {
        "workflow": "w", "status": "failed", "version": None, "parent_id": None,
        "label_key": "customer", "label_value": "c-1", "labels": "{}", "lo": 0.0,
        "hi": 1e12, "hi_id": "~", "updated_after": None, "updated_before": None,
        "error": None, "limit": 100,
    }  # fmt: skip
    by_label = _plan(conn, "search_runs_by_label", **params)
    assert "SEARCH first USING" in by_label and "(key=? AND value=?)" in by_label
    assert "SCAN r" not in by_label and "SCAN first" not in by_label
    by_workflow = _plan(conn, "search_runs_by_workflow", **params)
    assert "SEARCH r USING INDEX runs_workflow (workflow=? AND created_at>? AND created_at<?)" in (
        by_workflow
    ), by_workflow
    assert "SEARCH r USING INDEX runs_created" in _plan(conn, "search_runs", **params)


async def test_a_label_many_runs_have_is_searched_in_creation_order(
    engine: treadle.Engine, clock: treadle.FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from treadle.persistence import _labels

    monkeypatch.setattr(_labels, "FEW", 1)  # every label counts as one that many runs have
    engine.register(parked)
    made = []
    for n in range(5):
        made.append(await engine.start("parked", labels={"env": "prod", "n": str(n % 2)}))
        clock.advance("1s")
    first = await engine.find_runs(labels={"env": "prod", "n": "0"}, limit=2)
    assert [s.id for s in first.runs] == [made[4], made[2]]
    rest = await engine.find_runs(labels={"env": "prod", "n": "0"}, cursor=first.next_cursor)
    assert [s.id for s in rest.runs] == [made[0]] and rest.next_cursor is None


def test_postgres_searches_enter_through_their_indexes(request: pytest.FixtureRequest) -> None:
    import psycopg
    from conftest import _postgres_dsn

    from treadle._search import query_params

    dsn = _postgres_dsn(request)
    asyncio.run(_open_and_close(treadle.PostgresPersistence(dsn)))  # creates the schema
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO runs (id, workflow, definition_id, status, data, cursor, created_at, "
            "updated_at, labels) SELECT 'r-' || n, 'w' || (n % 10), 'd', "
            "CASE WHEN n % 23 = 7 THEN 'failed' ELSE 'completed' END, '{}', '{}', "
            "now() - n * interval '1 second', now(), '{}' FROM generate_series(1, 30000) AS n"
        )
        conn.execute(
            "INSERT INTO run_labels (run_id, key, value) "
            "SELECT 'r-' || n, 'customer', 'c-' || (n % 3000) FROM generate_series(1, 30000) AS n"
        )
        conn.execute("ANALYZE runs")
        conn.execute("ANALYZE run_labels")
        # 30,000 rows are few enough for a sequential scan to be cheapest: forbid it, so that
        # the plan shows which index the query can be entered through.
        conn.execute("SET enable_seqscan = off")

        def plan(statement: str, flt: RunFilter) -> str:
            sql = queries("postgres")[statement]
            params = {**query_params(flt, None), "limit": 100}
            return "\n".join(r[0] for r in conn.execute(f"EXPLAIN {sql}", params))

        by_label = plan("search_runs_by_label", RunFilter(labels={"customer": "c-42"}))
        assert "run_labels_pkey" in by_label and "Seq Scan" not in by_label, by_label
        by_workflow = plan("search_runs_by_workflow", RunFilter(workflow="w3", status="failed"))
        assert "runs_workflow" in by_workflow and "Seq Scan" not in by_workflow, by_workflow
        by_time = plan("search_runs", RunFilter(status="failed", labels={"customer": "c-1"}))
        assert "Index" in by_time and "Seq Scan" not in by_time, by_time  # PG picks by its stats


async def _open_and_close(persistence: treadle.Persistence) -> None:
    await persistence.open()
    await persistence.close()
