"""Specification of Cron: schedules in the persistence, one run per due time, catch-up,
overlap, jitter, time zones. Time is a FakeClock: nothing here waits real minutes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import treadle
from treadle.cron import Cron, Schedule, ScheduleExists, ScheduleNotFound
from treadle.cron._cron import jitter_delay, run_id_for
from treadle.testing import TestKit

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def at(hours: float = 0, minutes: float = 0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes)


def report() -> treadle.Workflow:
    return treadle.new("report").step("work", lambda ctx, state: None).build()


def gated() -> treadle.Workflow:
    """A workflow that stays active until it gets the signal "go"."""
    return treadle.new("gated").await_signal("go").build()


def make_engine(path: Path, clock: treadle.FakeClock) -> treadle.Engine:
    engine = treadle.Engine(treadle.SQLitePersistence(str(path)), clock=clock, poll_interval=0.05)
    engine.register(report())
    engine.register(gated())
    return engine


@asynccontextmanager
async def open_cron(path: Path, clock: treadle.FakeClock) -> AsyncIterator[Cron]:
    async with make_engine(path, clock) as engine:
        yield Cron(engine)


@pytest.fixture
def clock() -> treadle.FakeClock:
    return treadle.FakeClock(T0)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cron.db"


async def run_ids(cron: Cron, workflow: str = "report") -> list[str]:
    return sorted(s.id for s in await cron.engine.runs(workflow=workflow, limit=10_000))


async def scheduled_at(cron: Cron, workflow: str = "report") -> list[str]:
    runs = await cron.engine.runs(workflow=workflow, limit=10_000)
    return sorted(s.data["scheduled_at"] for s in runs)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def only(cron: Cron) -> Schedule:
    (schedule,) = await cron.list()
    return schedule


# --------------------------------------------------------------------------- invalid input

INVALID: list[tuple[dict[str, Any], type[Exception], list[str]]] = [
    ({"expression": "61 * * * *"}, ValueError, ["minute", "61", "out of range"]),
    ({"expression": "* 25 * * *"}, ValueError, ["hour", "25", "out of range"]),
    ({"expression": "* * * *"}, ValueError, ["wrong number of fields"]),
    ({"expression": "*/0 * * * *"}, ValueError, ["step"]),
    ({"expression": "@every 0s"}, ValueError, ["@every", "greater than 0"]),
    ({"expression": "@fortnightly"}, ValueError, ["unknown macro", "@fortnightly"]),
    ({"timezone": "Mars/Olympus_Mons"}, ValueError, ["unknown time zone", "Mars/Olympus_Mons"]),
    ({"workflow": "nope"}, treadle.WorkflowNotFound, ["'nope'"]),
    ({"id": ""}, ValueError, ["schedule id"]),
    ({"id": "two words"}, ValueError, ["schedule id", "two words"]),
    ({"input": [1, 2]}, treadle.DataError, ["input of schedule", "JSON object"]),
    ({"input": {"when": b"2030"}}, treadle.DataError, ["not JSON-serialisable", "at when"]),
    ({"input": {"scheduled_at": "x"}}, ValueError, ["scheduled_at"]),
    ({"catch_up": "some"}, ValueError, ["catch_up", "'some'"]),
    ({"catch_up": "all"}, ValueError, ["catch_up='all' needs a catch_up_window"]),
    ({"catch_up": "none", "catch_up_window": "1h"}, ValueError, ["catch_up_window", "'none'"]),
    ({"catch_up_window": "soon"}, ValueError, ["catch_up_window", "'soon'"]),
    ({"catch_up_window": 0}, ValueError, ["catch_up_window", "greater than 0"]),
    ({"catch_up": "all", "catch_up_window": "1h", "overlap": "skip"}, ValueError, ["overlap"]),
    ({"overlap": "queue"}, ValueError, ["overlap", "'queue'"]),
    ({"jitter": -5}, ValueError, ["jitter", "negative"]),
    ({"jitter": "a bit"}, ValueError, ["jitter", "'a bit'"]),
]


@pytest.mark.parametrize(("change", "error", "words"), INVALID, ids=[repr(c[0]) for c in INVALID])
async def test_invalid_add_raises_naming_the_problem_and_stores_nothing(
    db: Path,
    clock: treadle.FakeClock,
    change: dict[str, Any],
    error: type[Exception],
    words: list[str],
) -> None:
    args: dict[str, Any] = {"id": "nightly", "workflow": "report", "expression": "0 2 * * *"}
    args.update(change)
    async with open_cron(db, clock) as cron:
        with pytest.raises(error) as caught:
            await cron.add(**args)
        for word in words:
            assert word in str(caught.value)
        assert await cron.list() == []


async def test_duplicate_id_raises_and_keeps_the_first_schedule(
    db: Path, clock: treadle.FakeClock
) -> None:
    async with open_cron(db, clock) as cron:
        await cron.add("nightly", "report", "0 2 * * *", {"n": 1})
        with pytest.raises(ScheduleExists, match="'nightly' already exists") as caught:
            await cron.add("nightly", "report", "@hourly", {"n": 2})
        assert isinstance(caught.value, ValueError)
        schedule = await only(cron)
        assert (schedule.expression, schedule.input) == ("0 2 * * *", {"n": 1})


async def test_unknown_ids_raise_schedule_not_found(db: Path, clock: treadle.FakeClock) -> None:
    async with open_cron(db, clock) as cron:
        for action in (cron.remove, cron.enable, cron.disable, cron.get):
            with pytest.raises(ScheduleNotFound, match="schedule 'ghost' does not exist") as caught:
                await action("ghost")
            assert isinstance(caught.value, LookupError)


async def test_add_needs_an_open_engine(clock: treadle.FakeClock) -> None:
    cron = Cron(treadle.Engine(clock=clock))
    with pytest.raises(RuntimeError, match="not open"):
        await cron.add("x", "report", "@hourly")


# --------------------------------------------------------------------------- firing


async def test_each_due_time_starts_exactly_one_run_with_input_and_scheduled_at(
    db: Path, clock: treadle.FakeClock
) -> None:
    async with open_cron(db, clock) as cron:
        added = await cron.add("hourly", "report", "@hourly", {"format": "pdf"})
        assert added.next_run == at(1)
        assert await cron.tick() == []
        clock.advance("59m")
        assert await cron.tick() == []
        clock.advance("1m")
        started = await cron.tick()
        assert started == ["cron:hourly:2030-01-01T01:00:00Z"] == [run_id_for("hourly", at(1))]
        assert await cron.tick() == []
        clock.advance("1h")
        await cron.tick()
        await cron.tick()
        assert await run_ids(cron) == [run_id_for("hourly", at(1)), run_id_for("hourly", at(2))]
        state = await cron.engine.wait(started[0], timeout=5)
        assert state.status is treadle.Status.COMPLETED
        assert state.data == {"format": "pdf", "scheduled_at": "2030-01-01T01:00:00+00:00"}


async def test_ticker_starts_runs_when_the_fake_clock_moves(
    db: Path, clock: treadle.FakeClock
) -> None:
    async with open_cron(db, clock) as cron:
        await cron.add("poll", "report", "@every 10m")
        async with cron:
            clock.advance("10m")
            await eventually(lambda: _count(cron, 1))
            clock.advance("10m")
            await eventually(lambda: _count(cron, 2))
        assert await scheduled_at(cron) == [
            "2030-01-01T00:10:00+00:00",
            "2030-01-01T00:20:00+00:00",
        ]


async def _count(cron: Cron, n: int) -> bool:
    return len(await run_ids(cron)) == n


async def test_two_engines_on_one_sqlite_file_start_one_run_per_due_time(
    db: Path, clock: treadle.FakeClock
) -> None:
    async with make_engine(db, clock) as one, make_engine(db, clock) as two:
        cron_one, cron_two = Cron(one), Cron(two)
        await cron_one.add("often", "report", "*/15 * * * *", {"k": "v"})
        async with cron_one, cron_two:
            for _ in range(12):
                clock.advance("15m")
                await asyncio.gather(*(c.tick() for c in [cron_one, cron_two] * 5))
        runs = await one.runs(workflow="report", limit=1000)
        assert len(runs) == 12
        assert sorted(r.data["scheduled_at"] for r in runs) == [
            (T0 + timedelta(minutes=15 * k)).isoformat() for k in range(1, 13)
        ]
        schedule = await only(cron_two)
        assert schedule.next_run == at(3, 15)
        assert schedule.last_run == at(3)


async def test_a_workflow_unknown_to_this_engine_is_left_to_another(
    db: Path, clock: treadle.FakeClock
) -> None:
    other = treadle.new("elsewhere").step("s", lambda ctx, state: None).build()
    async with make_engine(db, clock) as knows, make_engine(db, clock) as lacks:
        knows.register(other)
        await Cron(knows).add("x", "elsewhere", "@hourly")
        clock.advance("1h")
        assert await Cron(lacks).tick() == []
        assert (await only(Cron(lacks))).next_run == at(1)
        assert await Cron(knows).tick() == [run_id_for("x", at(1))]


# --------------------------------------------------------------------------- restart and catch-up


async def _down_for_5h30m(db: Path, clock: treadle.FakeClock, **options: Any) -> Cron:
    async with open_cron(db, clock) as cron:
        await cron.add("hourly", "report", "@hourly", **options)
    clock.advance("5h30m")
    return cron


async def test_schedules_survive_a_restart(db: Path, clock: treadle.FakeClock) -> None:
    async with open_cron(db, clock) as cron:
        await cron.add("nightly", "report", "0 2 * * *", {"a": 1}, timezone="Europe/Berlin")
    async with open_cron(db, clock) as cron:
        schedule = await only(cron)
        assert (schedule.id, schedule.input, schedule.timezone) == (
            "nightly",
            {"a": 1},
            "Europe/Berlin",
        )
        assert schedule.next_run == at(1)  # 02:00 CET


async def test_restart_catch_up_one_starts_one_run_for_the_latest_missed_time(
    db: Path, clock: treadle.FakeClock
) -> None:
    await _down_for_5h30m(db, clock)  # catch_up="one" is the default
    async with open_cron(db, clock) as cron, cron:
        await eventually(lambda: _count(cron, 1))
        # Engine.settle() does not wait for the ticker; a tick waits for the one under way, and
        # one that began after the catch-up has nothing left to start.
        assert await cron.tick() == []
        assert await scheduled_at(cron) == [at(5).isoformat()]
        assert (await only(cron)).next_run == at(6)


async def test_restart_catch_up_none_starts_nothing(db: Path, clock: treadle.FakeClock) -> None:
    await _down_for_5h30m(db, clock, catch_up="none")
    async with open_cron(db, clock) as cron:
        assert await cron.tick() == []
        assert (await only(cron)).next_run == at(6)
        clock.advance("30m")
        assert await cron.tick() == [run_id_for("hourly", at(6))]


async def test_restart_catch_up_all_starts_each_missed_time_within_the_window(
    db: Path, clock: treadle.FakeClock
) -> None:
    await _down_for_5h30m(db, clock, catch_up="all", catch_up_window="3h")
    async with open_cron(db, clock) as cron:
        started = await cron.tick()
        assert started == [run_id_for("hourly", at(h)) for h in (3, 4, 5)]
        assert await cron.tick() == []
        schedule = await only(cron)
        assert (schedule.next_run, schedule.last_run) == (at(6), at(5))


async def test_restart_catch_up_one_drops_a_time_older_than_its_window(
    db: Path, clock: treadle.FakeClock
) -> None:
    await _down_for_5h30m(db, clock, catch_up_window="10m")
    async with open_cron(db, clock) as cron:
        assert await cron.tick() == []
        assert (await only(cron)).next_run == at(6)


async def test_a_long_downtime_is_caught_up_without_visiting_each_missed_time(
    db: Path, clock: treadle.FakeClock
) -> None:
    async with open_cron(db, clock) as cron:
        await cron.add("minutely", "report", "* * * * *")
        await cron.add("every", "report", "@every 7s")
    clock.advance(timedelta(days=400, seconds=30))
    async with open_cron(db, clock) as cron:
        started = await cron.tick()
        now = clock.now()
        assert sorted(started) == sorted(
            [
                run_id_for("every", now - timedelta(seconds=(400 * 86400 + 30) % 7)),
                run_id_for("minutely", now - timedelta(seconds=30)),
            ]
        )
        every, minutely = await cron.list()
        assert every.next_run is not None and now < every.next_run <= now + timedelta(seconds=7)
        assert minutely.next_run == now + timedelta(seconds=30)


# --------------------------------------------------------------------------- overlap


async def test_overlap_allow_starts_while_the_last_run_is_active(
    db: Path, clock: treadle.FakeClock
) -> None:
    async with open_cron(db, clock) as cron:
        await cron.add("g", "gated", "@hourly")
        for _ in range(2):
            clock.advance("1h")
            await cron.tick()
        assert len(await run_ids(cron, "gated")) == 2


def open_kit(path: Path) -> TestKit:
    return TestKit(report(), gated(), persistence=treadle.SQLitePersistence(str(path)), now=T0)


async def first_gated_run(kit: TestKit, overlap: str) -> str:
    """Schedule "gated" hourly with ``overlap`` and advance to its first run, which waits."""
    await kit.cron.add("g", "gated", "@hourly", overlap=overlap)
    await kit.advance("1h")
    first = run_id_for("g", at(1))
    assert await _status(kit.cron, first, treadle.Status.WAITING)
    return first


async def test_overlap_skip_drops_due_times_while_the_last_run_is_active(db: Path) -> None:
    async with open_kit(db) as kit:
        first = await first_gated_run(kit, "skip")
        await kit.advance("1h")
        assert await run_ids(kit.cron, "gated") == [first]
        assert (await only(kit.cron)).next_run == at(3)
        await kit.engine.signal(first, "go")
        await kit.run_until_idle()
        await kit.advance("1h")
        assert await run_ids(kit.cron, "gated") == [first, run_id_for("g", at(3))]


async def test_overlap_buffer_one_holds_one_due_time_until_the_last_run_ends(db: Path) -> None:
    async with open_kit(db) as kit:
        first = await first_gated_run(kit, "buffer_one")
        await kit.advance("2h")  # 02:00 and 03:00 come due while the first run waits
        assert await run_ids(kit.cron, "gated") == [first]
        assert (await only(kit.cron)).next_run == at(2)  # held
        await kit.advance("30m")
        await kit.engine.signal(first, "go")
        await kit.run_until_idle()  # the first run ends, and the held due time starts
        second = run_id_for("g", at(2))  # the buffered one; 03:00 was dropped
        assert await run_ids(kit.cron, "gated") == [first, second]
        schedule = await only(kit.cron)
        assert (schedule.next_run, schedule.last_run_id) == (at(4), second)
        assert await _status(kit.cron, second, treadle.Status.WAITING)
        await kit.advance("30m")
        assert await run_ids(kit.cron, "gated") == [first, second]  # 04:00 is held behind it


async def _status(cron: Cron, run_id: str, status: treadle.Status) -> bool:
    return (await cron.engine.status(run_id)).status is status


# --------------------------------------------------------------------------- jitter


def test_jitter_is_deterministic_bounded_and_spread() -> None:
    hour = timedelta(hours=1)
    delays = [jitter_delay("j", at(h), timedelta(minutes=10), hour) for h in range(50)]
    assert delays == [jitter_delay("j", at(h), timedelta(minutes=10), hour) for h in range(50)]
    assert all(timedelta(0) <= d < timedelta(minutes=10) for d in delays)
    assert len(set(delays)) > 40
    assert jitter_delay("j", at(1), None, hour) == timedelta(0)
    # Never more than half the way to the next due time, so runs stay in order.
    assert jitter_delay("j", at(1), hour, timedelta(minutes=1)) < timedelta(seconds=30)


async def test_jitter_delays_the_run_within_the_bound(db: Path, clock: treadle.FakeClock) -> None:
    async with open_cron(db, clock) as cron:
        await cron.add("j", "report", "@hourly", jitter="10m")
        expected = jitter_delay("j", at(1), timedelta(minutes=10), timedelta(hours=1))
        clock.set(at(1) + expected - timedelta(seconds=1))
        assert await cron.tick() == []
        clock.set(at(1) + expected)
        assert await cron.tick() == [run_id_for("j", at(1))]
        assert await scheduled_at(cron) == [at(1).isoformat()]
        assert (await only(cron)).jitter == timedelta(minutes=10)


# ------------------------------------------------------------------- enable, disable, remove


async def test_disable_enable_and_remove(db: Path, clock: treadle.FakeClock) -> None:
    async with open_cron(db, clock) as cron:
        await cron.add("h", "report", "@hourly")
        await cron.disable("h")
        schedule = await only(cron)
        assert (schedule.enabled, schedule.next_run) == (False, None)
        clock.advance("2h30m")
        assert await cron.tick() == []
        await cron.enable("h")
        await cron.enable("h")  # enabling an enabled schedule changes nothing
        schedule = await only(cron)
        assert (schedule.enabled, schedule.next_run) == (True, at(3))
        clock.advance("30m")
        assert await cron.tick() == [run_id_for("h", at(3))]
        await cron.remove("h")
        assert await cron.list() == []
        clock.advance("1h")
        assert await cron.tick() == []
        assert len(await run_ids(cron)) == 1


async def test_list_shows_next_and_last_run_and_the_last_run_status(
    db: Path, clock: treadle.FakeClock
) -> None:
    async with open_cron(db, clock) as cron:
        await cron.add(
            "b", "report", "*/30 * * * *", {"x": 1}, catch_up_window="2h", jitter=timedelta(0)
        )
        await cron.add("a", "gated", "@daily", overlap="skip", timezone="America/New_York")
        a, b = await cron.list()
        assert a == Schedule(
            id="a",
            workflow="gated",
            expression="@daily",
            input=None,
            enabled=True,
            timezone="America/New_York",
            next_run=datetime(2030, 1, 1, 5, tzinfo=UTC),
            last_run=None,
            last_run_id=None,
            last_run_status=None,
            catch_up="one",
            overlap="skip",
            jitter=None,
            catch_up_window=None,
        )
        assert (b.next_run, b.catch_up_window, b.input) == (at(0, 30), timedelta(hours=2), {"x": 1})
        clock.advance("30m")
        (run_id,) = await cron.tick()
        await cron.engine.wait(run_id, timeout=5)
        _, b = await cron.list()
        assert (b.last_run, b.last_run_id, b.next_run) == (at(0, 30), run_id, at(1))
        assert b.last_run_status is treadle.Status.COMPLETED


# --------------------------------------------------------------------------- time zones


async def test_timezone_schedule_fires_on_the_local_wall_clock(
    db: Path, clock: treadle.FakeClock
) -> None:
    async with open_cron(db, clock) as cron:
        await cron.add("berlin", "report", "0 2 * * *", timezone="Europe/Berlin")
        assert (await only(cron)).next_run == at(1)  # 02:00 CET is 01:00 UTC
        clock.advance("1h")
        (run_id,) = await cron.tick()
        state = await cron.engine.wait(run_id, timeout=5)
        assert state.data["scheduled_at"] == "2030-01-01T02:00:00+01:00"
        clock.set(datetime(2030, 7, 1, 12, tzinfo=UTC))  # summer: 02:00 CEST is 00:00 UTC
        assert await cron.tick() == [run_id_for("berlin", datetime(2030, 7, 1, 0, tzinfo=UTC))]
        assert (await only(cron)).next_run == datetime(2030, 7, 2, 0, tzinfo=UTC)


def test_package_exports() -> None:
    assert treadle.Cron is Cron
    assert treadle.Schedule is Schedule
    assert treadle.next_fire("@hourly", at(0, 5)) == at(1)
