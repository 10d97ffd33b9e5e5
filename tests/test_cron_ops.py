"""Specification of the cron's manual operations: trigger a run now, backfill a range of due
times exactly once (repeated, overlapping, across engines, after a SIGKILL), and schedules that
pause themselves after a failed run. On every backend; time is a FakeClock except in the
subprocess test."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from enginekit import EngineFactory

import treadle
from treadle.cron import Cron
from treadle.cron._cron import run_id_for
from treadle.cron._operations import MAX_BACKFILL
from treadle.web import Identity, create_app

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _fail(ctx: treadle.Context, state: treadle.State) -> None:
    if state.data.get("fail"):
        raise treadle.NonRetryableError("the report server is down")


REPORT = treadle.new("report").step("work", _fail).build()


@pytest.fixture
def clock() -> treadle.FakeClock:
    return treadle.FakeClock(T0 + timedelta(days=2))


@pytest.fixture
async def cron(engine: treadle.Engine, clock: treadle.FakeClock) -> Cron:
    engine.register(REPORT)
    return Cron(engine)


async def cron_runs(engine: treadle.Engine) -> list[treadle.State]:
    return [s for s in await engine.runs(workflow="report", limit=10_000)]


# Backfill ----------------------------------------------------------------------------------


async def test_backfill_starts_one_run_per_due_time_and_repeating_it_starts_nothing(
    cron: Cron,
) -> None:
    await cron.add("hourly", "report", "0 * * * *", {"format": "pdf"})
    done = await cron.backfill("hourly", T0, T0 + timedelta(hours=5))
    hours = [T0 + timedelta(hours=h) for h in range(5)]
    assert done.due_times == hours
    assert done.run_ids == [run_id_for("hourly", h) for h in hours]
    assert done.started == 5
    again = await cron.backfill("hourly", T0 - timedelta(hours=1), T0 + timedelta(hours=3))
    assert again.started == 1  # only the hour before T0 is new
    runs = await cron_runs(cron.engine)
    assert len(runs) == 6
    one = await cron.engine.status(run_id_for("hourly", T0))
    assert one.data == {"format": "pdf", "scheduled_at": "2030-01-01T00:00:00+00:00"}


async def test_backfill_and_the_schedules_own_fires_start_each_due_time_once(
    cron: Cron, clock: treadle.FakeClock
) -> None:
    await cron.add("hourly", "report", "0 * * * *")
    clock.advance("1h")  # the next due time comes: the tick starts it
    (fired,) = await cron.tick()
    schedule = await cron.get("hourly")
    assert schedule.last_run_id == fired
    now = clock.now()
    done = await cron.backfill("hourly", now - timedelta(hours=3), now + timedelta(minutes=1))
    assert fired in done.run_ids and done.started == len(done.run_ids) - 1
    assert (await cron.get("hourly")).next_run == schedule.next_run  # backfill moves nothing
    assert len(await cron_runs(cron.engine)) == len(done.run_ids)


async def test_two_engines_backfilling_overlapping_ranges_start_each_due_time_once(
    make_engine: EngineFactory, clock: treadle.FakeClock
) -> None:
    a, b = await make_engine(REPORT, clock=clock), await make_engine(REPORT, clock=clock)
    await Cron(a).add("quarter", "report", "*/15 * * * *")
    first = Cron(a).backfill("quarter", T0, T0 + timedelta(hours=10))
    second = Cron(b).backfill("quarter", T0 + timedelta(hours=5), T0 + timedelta(hours=15))
    one, two = await asyncio.gather(first, second)
    due = {*one.due_times, *two.due_times}
    assert len(due) == 60
    runs = await a.runs(workflow="report", limit=10_000)
    assert sorted(r.id for r in runs) == sorted(run_id_for("quarter", d) for d in due)
    assert 60 <= one.started + two.started <= 80  # both may find a due time free at once


async def test_backfill_refuses_empty_future_and_oversized_ranges(
    cron: Cron, clock: treadle.FakeClock
) -> None:
    await cron.add("minutely", "report", "* * * * *")
    with pytest.raises(ValueError, match="range is empty"):
        await cron.backfill("minutely", T0, T0)
    with pytest.raises(ValueError, match="past due times only"):
        await cron.backfill("minutely", clock.now(), clock.now() + timedelta(hours=1))
    with pytest.raises(ValueError, match=f"more than {MAX_BACKFILL} due times: split it"):
        await cron.backfill("minutely", T0 - timedelta(days=30), T0)
    with pytest.raises(treadle.ScheduleNotFound):
        await cron.backfill("nope", T0, T0 + timedelta(hours=1))
    assert await cron_runs(cron.engine) == []


async def test_backfill_reads_naive_times_in_the_schedules_zone(cron: Cron) -> None:
    await cron.add("paris", "report", "0 9 * * *", timezone="Europe/Paris")
    done = await cron.backfill("paris", datetime(2030, 1, 1), datetime(2030, 1, 2, 9))
    assert done.due_times == [datetime(2030, 1, 1, 8, tzinfo=UTC)]  # 09:00 in Paris


# Trigger -----------------------------------------------------------------------------------


async def test_trigger_with_a_key_starts_once_and_counts_as_the_last_run(cron: Cron) -> None:
    await cron.add("nightly", "report", "0 2 * * *")
    run_id = await cron.trigger("nightly", key="deploy-42")
    assert run_id == "cron:nightly:trigger:deploy-42"
    assert await cron.trigger("nightly", key="deploy-42") == run_id
    assert (await cron.get("nightly")).last_run_id == run_id
    other = await cron.trigger("nightly")  # without a key: a new run each time
    assert other != run_id and other.startswith("cron:nightly:trigger:")
    assert len(await cron_runs(cron.engine)) == 2
    await cron.engine.settle()
    assert (await cron.engine.status(run_id)).status is treadle.Status.COMPLETED
    with pytest.raises(treadle.InvalidId):
        await cron.trigger("nightly", key="no spaces")


async def test_trigger_starts_a_run_of_a_disabled_schedule(cron: Cron) -> None:
    await cron.add("nightly", "report", "0 2 * * *")
    await cron.disable("nightly")
    run_id = await cron.trigger("nightly", key="once")
    assert (await cron.engine.status(run_id)).data["scheduled_at"].startswith("2030-01-03")


# Pause on failure --------------------------------------------------------------------------


async def test_a_schedule_pauses_itself_after_its_run_fails_until_enabled(
    cron: Cron, clock: treadle.FakeClock
) -> None:
    await cron.add("nightly", "report", "@every 1h", {"fail": True}, pause_on_failure=True)
    clock.advance("1h")
    (failed,) = await cron.tick()
    await cron.engine.settle()
    assert (await cron.engine.status(failed)).status is treadle.Status.FAILED
    clock.advance("1h")
    assert await cron.tick() == []  # it pauses instead of starting another
    paused = await cron.get("nightly")
    assert not paused.enabled and paused.next_run is None
    assert paused.paused_reason == (
        f"run {failed} failed: step 'work' failed: NonRetryableError: the report server is down"
    )
    # Re-adding the same definition (a deploy) keeps it paused, reason and all.
    await cron.add(
        "nightly", "report", "@every 1h", {"fail": True}, pause_on_failure=True, replace=True
    )
    assert (await cron.get("nightly")).paused_reason == paused.paused_reason
    await cron.enable("nightly")
    resumed = await cron.get("nightly")
    assert resumed.enabled and resumed.paused_reason is None and resumed.pause_on_failure


async def test_without_pause_on_failure_a_failed_run_changes_nothing(
    cron: Cron, clock: treadle.FakeClock
) -> None:
    await cron.add("nightly", "report", "@every 1h", {"fail": True})
    clock.advance("1h")
    await cron.tick()
    await cron.engine.settle()
    clock.advance("1h")
    assert len(await cron.tick()) == 1
    assert (await cron.get("nightly")).enabled


# HTTP --------------------------------------------------------------------------------------

TOKENS = {"tok-rw": Identity("ops", True), "tok-ro": Identity("viewer", False)}


@pytest.fixture
async def http(cron: Cron) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(cron.engine, tokens=TOKENS, cron=cron)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"type", "message"}
    return error


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_http_trigger_and_backfill_need_a_read_write_token(
    cron: Cron, http: httpx.AsyncClient
) -> None:
    await cron.add("hourly", "report", "0 * * * *", pause_on_failure=True)
    rw, ro = {"Authorization": "Bearer tok-rw"}, {"Authorization": "Bearer tok-ro"}
    url = "/api/schedules/hourly"
    assert error_of(await http.post(f"{url}/trigger", headers=ro), 403)["type"] == "Forbidden"
    response = await http.post(f"{url}/trigger", headers=rw, json={"key": "k1"})
    assert response.status_code == 201, response.text
    assert response.json() == {"schedule_id": "hourly", "run_id": "cron:hourly:trigger:k1"}
    span = {"from": "2030-01-01T00:00:00Z", "to": "2030-01-01T03:00:00+00:00"}
    response = await http.post(f"{url}/backfill", headers=rw, json=span)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["started"] == 3 and body["run_ids"][0] == "cron:hourly:2030-01-01T00:00:00Z"
    assert body["due_times"][2] == "2030-01-01T02:00:00+00:00"
    shown = (await http.get(url, headers=ro)).json()
    assert shown["pause_on_failure"] is True and shown["paused_reason"] is None
    bad = await http.post(f"{url}/backfill", headers=rw, json={"from": span["from"]})
    assert "'to'" in error_of(bad, 400)["message"]
    late = {"from": "2030-01-01T00:00:00Z", "to": "2031-01-01T00:00:00Z"}
    assert (
        "past due times only"
        in error_of(await http.post(f"{url}/backfill", headers=rw, json=late), 400)["message"]
    )
    missing = await http.post("/api/schedules/nope/trigger", headers=rw)
    assert error_of(missing, 404)["type"] == "ScheduleNotFound"


# CLI and SIGKILL ---------------------------------------------------------------------------

DUE_TIMES = 3000


def _runs_in(db: Path) -> list[tuple[str, int]]:
    """Each cron run with its number of 'created' events (a whole run has exactly one)."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT r.id, (SELECT count(*) FROM events h WHERE h.run_id = r.id"
            " AND h.kind = 'created') FROM runs r WHERE r.id LIKE 'cron:minutely:%'"
        ).fetchall()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "treadle", *args]


def test_a_backfill_killed_midway_and_repeated_starts_every_due_time_exactly_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "cron.db"
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=DUE_TIMES)

    async def setup() -> None:
        persistence = treadle.SQLitePersistence(str(db))
        async with treadle.Engine(persistence, max_concurrent_runs=0) as engine:
            engine.register(REPORT)
            await Cron(engine).add("minutely", "report", "* * * * *")

    asyncio.run(setup())
    span = ["--from", f"{start:%Y-%m-%dT%H:%M:%S}", "--to", f"{now:%Y-%m-%dT%H:%M:%S}"]
    args = _cli("cron", "backfill", "minutely", *span, "--db", f"sqlite:///{db}")
    with (tmp_path / "backfill.log").open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=log, env=os.environ)
    try:
        deadline = time.monotonic() + 30
        while len(_runs_in(db)) < 200:
            assert proc.poll() is None, (tmp_path / "backfill.log").read_text()
            assert time.monotonic() < deadline, "the backfill started no runs"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    halfway = _runs_in(db)
    assert 0 < len(halfway) < DUE_TIMES
    assert {created for _, created in halfway} == {1}  # each run stored whole, with its event

    done = subprocess.run(args, capture_output=True, text=True, timeout=120, env=os.environ)
    assert done.returncode == 0, done.stderr
    assert f"{DUE_TIMES} due times, {DUE_TIMES - len(halfway)} runs started" in done.stdout
    after = _runs_in(db)
    expected = {run_id_for("minutely", start + timedelta(minutes=m)) for m in range(DUE_TIMES)}
    assert {run_id for run_id, _ in after} == expected and len(after) == DUE_TIMES
    assert {created for _, created in after} == {1}


def test_cli_trigger_backfill_and_list_show_a_paused_schedule(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cron.db'}"

    async def setup() -> str:
        persistence = treadle.SQLitePersistence(str(tmp_path / "cron.db"))
        async with treadle.Engine(persistence, poll_interval=0.05) as engine:
            engine.register(REPORT)
            cron = Cron(engine)
            await cron.add("nightly", "report", "@every 1h", {"fail": True}, pause_on_failure=True)
            run_id = await cron.trigger("nightly", key="first")
            await engine.wait(run_id)
            await cron.tick()  # sees the failed run: pauses
            return run_id

    failed = asyncio.run(setup())
    env = {**os.environ, "TREADLE_DB": db}
    listed = subprocess.run(_cli("cron", "list"), capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "paused" in listed.stdout
    assert f"nightly paused: run {failed} failed: step 'work' failed" in listed.stdout
    again = subprocess.run(
        _cli("cron", "trigger", "nightly", "--key", "first"),
        capture_output=True,
        text=True,
        env=env,
    )
    assert again.stdout.strip() == f"schedule 'nightly': run {failed} started"
    bad = subprocess.run(
        _cli("cron", "backfill", "nightly", "--from", "2030-01-02", "--to", "2030-01-01"),
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        "Error: backfill range is empty: from 2030-01-02T00:00:00Z must be before to"
        " 2030-01-01T00:00:00Z"
    ]
    usage = subprocess.run(
        _cli("cron", "backfill", "nightly", "--from", "2030-01-01"), capture_output=True, env=env
    )
    assert usage.returncode == 2
