"""The dashboard's workflow pages (API.md "HTTP API and dashboard"): the numbers of one
workflow's overview on every backend, its read rules, and the chart's geometry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_web_api import TOKENS, _client, as_, assert_error

import treadle
from treadle import Context, State, Status
from treadle.persistence._stats import WorkflowStats, percentile
from treadle.web._overview import chart, seconds_text, window


def _work(ctx: Context, state: State) -> None:
    if state.data.get("fail"):
        raise treadle.NonRetryableError(f"card {state.data['fail']} declined")


PAY = treadle.new("pay", version="v1").step("charge", _work).step("receipt", _work).build()
PAY_V2 = treadle.new("pay", version="v2").step("charge", _work).build()
OTHER = treadle.new("other").await_signal("go").build()


async def test_the_overview_counts_runs_versions_errors_and_steps(
    engine: treadle.Engine,
) -> None:
    engine.register(PAY, OTHER)
    for data in ({}, {}, {"fail": "A"}, {"fail": "A"}, {"fail": "B"}):
        await engine.wait(await engine.start("pay", data), 10)
    waiting = await engine.start("other")
    engine.register(PAY_V2)
    await engine.wait(await engine.start("pay", {}), 10)
    await engine.settle()
    now = engine.clock.now()
    stats = await engine.persistence.workflow_stats(
        "pay", since=now - timedelta(hours=1), bucket=timedelta(minutes=10), buckets=7
    )
    assert stats.totals == {"completed": 3, "failed": 3}
    assert sum(sum(b.values()) for b in stats.by_bucket) == 6
    assert stats.failure_rate == 0.5
    assert stats.errors == [
        ("step 'charge' failed: NonRetryableError: card A declined", 2),
        ("step 'charge' failed: NonRetryableError: card B declined", 1),
    ]
    assert [(v.version, v.runs) for v in stats.versions] == [("v2", 1), ("v1", 5)]
    assert {s.step: s.count for s in stats.slowest_steps} == {"charge": 3, "receipt": 2}
    assert stats.p50_s is not None and stats.p95_s is not None and stats.p50_s <= stats.p95_s
    other = await engine.persistence.workflow_stats(
        "other", since=now - timedelta(hours=1), bucket=timedelta(minutes=10), buckets=7
    )
    assert other.totals == {"waiting": 1} and other.failure_rate is None
    assert (await engine.status(waiting)).status is Status.WAITING


async def test_the_pages_render_and_follow_the_read_rules() -> None:
    engine = treadle.Engine(treadle.MemoryPersistence(), poll_interval=0.2)
    engine.register(PAY)
    async with engine:
        await engine.wait(await engine.start("pay", {"fail": "Z"}), 10)
        async with _client(engine, TOKENS) as client:
            assert_error(await client.get("/ui/workflows/pay"), 401, "Unauthorized")
            listing = await client.get("/ui/workflows", headers=as_("viewer"))
            assert listing.status_code == 200 and 'href="/workflows/pay"' in listing.text
            page = await client.get("/ui/workflows/pay?range=24h", headers=as_("viewer"))
            assert page.status_code == 200, page.text
            assert 'data-stat="failure-rate">100.0%' in page.text
            assert 'data-status="failed" data-count="1"' in page.text
            assert "card Z declined" in page.text
            assert_error(
                await client.get("/ui/workflows/nope", headers=as_("viewer")),
                404,
                "WorkflowNotFound",
            )
            assert_error(
                await client.get("/ui/workflows/pay?range=1y", headers=as_("viewer")),
                400,
                "BadRequest",
            )
            assert_error(
                await client.get("/ui/workflows/a%20b", headers=as_("viewer")), 400, "InvalidId"
            )
            shell = await client.get("/workflows/pay?range=30d")
            assert shell.status_code == 200 and "/ui/workflows/pay?range=30d" in shell.text


def test_a_window_ends_with_the_bucket_of_now() -> None:
    now = datetime(2030, 5, 6, 13, 45, tzinfo=UTC)
    since, bucket, buckets = window("24h", now)
    assert bucket == timedelta(hours=1) and buckets == 24
    assert since + bucket * (buckets - 1) == datetime(2030, 5, 6, 13, tzinfo=UTC)
    since, bucket, buckets = window("30d", now)
    assert since + bucket * buckets > now >= since + bucket * (buckets - 1)


def test_the_chart_stacks_each_bucket_and_scales_to_the_tallest() -> None:
    stats = WorkflowStats(
        workflow="w",
        since=datetime(2030, 1, 1, tzinfo=UTC),
        bucket=timedelta(hours=1),
        buckets=2,
        by_bucket=[{"completed": 2, "failed": 2}, {"completed": 1}],
        totals={"completed": 3, "failed": 2},
        versions=[],
        p50_s=None,
        p95_s=None,
        slowest_steps=[],
    )
    drawn = chart(stats, width=200, height=100)
    first = [b for b in drawn["bars"] if b.x < 100]
    assert [(b.status, b.height) for b in first] == [("completed", 50), ("failed", 50)]
    assert first[0].y == 50 and first[1].y == 0  # stacked, the tallest bar fills the height
    (second,) = [b for b in drawn["bars"] if b.x >= 100]
    assert second.height == 25 and drawn["max"] == 4


@pytest.mark.parametrize(
    ("values", "q", "expected"), [([], 0.5, None), ([3.0, 1.0, 2.0], 0.5, 2.0), ([1.0], 0.95, 1.0)]
)
def test_percentile_by_nearest_rank(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


def test_durations_read_as_people_say_them() -> None:
    assert [seconds_text(v) for v in (None, 0.25, 12.34, 600, 9000)] == [
        "—",
        "250 ms",
        "12.3 s",
        "10.0 min",
        "2.5 h",
    ]
