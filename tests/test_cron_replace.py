"""``Cron.add(..., replace=True)``, the deploy pattern; schedule ids under the id rule; the
shortest ``@every``; the cron errors importable from ``treadle``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import treadle
from treadle.cron import Cron

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@asynccontextmanager
async def deployed(path: Path, clock: treadle.FakeClock) -> AsyncIterator[Cron]:
    """A cron on a fresh engine over the same file: one deploy of the application."""
    engine = treadle.Engine(treadle.SQLitePersistence(str(path)), clock=clock)
    engine.register(treadle.new("report").step("work", lambda ctx, state: None).build())
    async with engine:
        yield Cron(engine)


@pytest.fixture
def clock() -> treadle.FakeClock:
    return treadle.FakeClock(T0)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cron.db"


async def test_the_cron_errors_are_importable_from_treadle() -> None:
    from treadle.cron import CronError, ScheduleExists, ScheduleNotFound

    assert (treadle.CronError, treadle.ScheduleExists, treadle.ScheduleNotFound) == (
        CronError,
        ScheduleExists,
        ScheduleNotFound,
    )
    assert {"CronError", "ScheduleExists", "ScheduleNotFound"} <= set(treadle.__all__)


async def test_adding_an_unchanged_schedule_again_with_replace_changes_nothing(
    db: Path, clock: treadle.FakeClock
) -> None:
    async with deployed(db, clock) as cron:
        await cron.add("hourly", "report", "@hourly", {"n": 1})
        clock.advance("1h")
        (started,) = await cron.tick()
        await cron.engine.wait(started, timeout=10)
        before = await cron.get("hourly")
    clock.advance("10m")
    async with deployed(db, clock) as cron:
        again = await cron.add("hourly", "report", "@hourly", {"n": 1}, replace=True)
        assert again == before == await cron.get("hourly")
        assert (again.last_run_id, again.next_run) == (started, T0 + timedelta(hours=2))


async def test_replace_updates_a_changed_schedule_in_place_keeping_its_history(
    db: Path, clock: treadle.FakeClock
) -> None:
    async with deployed(db, clock) as cron:
        await cron.add("hourly", "report", "@hourly", {"n": 1})
        clock.advance("1h")
        (first,) = await cron.tick()
    async with deployed(db, clock) as cron:
        changed = await cron.add("hourly", "report", "@hourly", {"n": 2}, replace=True)
        assert changed.input == {"n": 2}
        assert (changed.last_run, changed.last_run_id) == (T0 + timedelta(hours=1), first)
        assert changed.next_run == T0 + timedelta(hours=2)  # the pending due time is kept
        clock.advance("1h")
        (second,) = await cron.tick()
        assert (await cron.engine.status(second)).data["n"] == 2
        assert [s.id for s in await cron.list()] == ["hourly"]


async def test_replace_with_a_new_expression_moves_the_next_due_time(
    db: Path, clock: treadle.FakeClock
) -> None:
    async with deployed(db, clock) as cron:
        await cron.add("report", "report", "@hourly")
        clock.advance("1h")
        (first,) = await cron.tick()
        clock.advance("5m")
        changed = await cron.add("report", "report", "0 2 * * *", replace=True)
        assert changed.expression == "0 2 * * *"
        assert changed.next_run == datetime(2030, 1, 1, 2, tzinfo=UTC)
        assert changed.last_run_id == first


async def test_replace_keeps_a_disabled_schedule_disabled(
    db: Path, clock: treadle.FakeClock
) -> None:
    async with deployed(db, clock) as cron:
        await cron.add("hourly", "report", "@hourly", {"n": 1})
        await cron.disable("hourly")
        changed = await cron.add("hourly", "report", "@hourly", {"n": 2}, replace=True)
        assert (changed.enabled, changed.next_run, changed.input) == (False, None, {"n": 2})


async def test_replace_of_a_new_id_adds_it_and_without_replace_a_taken_id_still_raises(
    db: Path, clock: treadle.FakeClock
) -> None:
    async with deployed(db, clock) as cron:
        added = await cron.add("fresh", "report", "@daily", replace=True)
        assert added.next_run == datetime(2030, 1, 2, tzinfo=UTC)
        with pytest.raises(treadle.ScheduleExists, match="replace=True"):
            await cron.add("fresh", "report", "@hourly")
        assert (await cron.get("fresh")).expression == "@daily"


async def test_replace_is_checked_like_add_before_anything_changes(
    db: Path, clock: treadle.FakeClock
) -> None:
    async with deployed(db, clock) as cron:
        await cron.add("hourly", "report", "@hourly")
        with pytest.raises(treadle.CronError):
            await cron.add("hourly", "report", "61 * * * *", replace=True)
        assert (await cron.get("hourly")).expression == "@hourly"


@pytest.mark.parametrize("bad", ["", "two words", "a/b", "s" * 161, 123])
async def test_schedule_ids_follow_the_id_rule(
    db: Path, clock: treadle.FakeClock, bad: Any
) -> None:
    async with deployed(db, clock) as cron:
        with pytest.raises(treadle.InvalidId, match="invalid schedule id") as caught:
            await cron.add(bad, "report", "@hourly")
        assert "letters, digits and '._:@-'" in str(caught.value)
        assert await cron.list() == []


async def test_the_longest_schedule_id_starts_runs_with_valid_ids(
    db: Path, clock: treadle.FakeClock
) -> None:
    longest = "s" * 160
    async with deployed(db, clock) as cron:
        await cron.add(longest, "report", "@every 1s")
        clock.advance("1s")
        (run_id,) = await cron.tick()
        assert treadle.check_id(run_id) == run_id


@pytest.mark.parametrize("expression", ["@every 1ms", "@every 999ms", "@every 0.5s"])
async def test_every_below_one_second_is_refused_saying_the_minimum(
    db: Path, clock: treadle.FakeClock, expression: str
) -> None:
    async with deployed(db, clock) as cron:
        with pytest.raises(treadle.CronError, match="the minimum is 1s"):
            await cron.add("fast", "report", expression)
        assert await cron.list() == []
