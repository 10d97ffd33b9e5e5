"""Debounced starts (API.md "Priority and debounce"): starts of one workflow with one debounce
key collapse into one run until it begins; it begins ``debounce`` after the last of them (a
trailing window, bounded by ``debounce_max``) with the last one's data, and every start returns
its id. Time is the test kit's FakeClock. Several processes: test_debounce_processes.py.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from enginekit import EngineFactory, until

import treadle
from treadle import Context, State, Status
from treadle.testing import TestKit

STARTER = Path(__file__).parent / "workers" / "debounce_starter.py"
DEADLINE = 20.0


class Seen:
    """The data each run's step saw, by run id."""

    def __init__(self) -> None:
        self.data: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def note(self, ctx: Context, state: State) -> None:
        with self._lock:
            self.data.setdefault(ctx.run_id, []).append(dict(state.data))


def burst(seen: Seen) -> treadle.Workflow:
    return treadle.new("burst").step("note", seen.note).build()


async def test_starts_within_the_window_collapse_into_one_run_with_the_last_data(
    kit: TestKit,
) -> None:
    seen = Seen()
    kit.register(burst(seen))
    engine, t0 = kit.engine, kit.clock.now()
    first = await engine.start(
        "burst", {"n": 1}, debounce_key="cust-42", debounce="30s", labels={"from": "a"}
    )
    state = await engine.status(first)
    assert state.status is Status.WAITING
    assert state.waiting_for == ["debounce:cust-42 until 2030-01-01T00:00:30.000+00:00"]

    await kit.advance("10s")
    second = await engine.start(
        "burst", {"n": 2}, debounce_key="cust-42", debounce="30s", labels={"from": "b"}, priority=3
    )
    other_key = await engine.start("burst", {"n": 9}, debounce_key="cust-7", debounce="30s")
    assert second == first and other_key != first
    state = await engine.status(first)
    assert (state.data, state.labels, state.priority) == ({"n": 2}, {"from": "b"}, 3)
    assert state.waiting_for == ["debounce:cust-42 until 2030-01-01T00:00:40.000+00:00"]
    assert [r.id for r in (await engine.find_runs(labels={"from": "a"})).runs] == []

    await kit.advance("29s")  # 39 s: the window runs from the last start
    assert (await engine.status(first)).status is Status.WAITING
    assert seen.data.get(first) is None
    await kit.advance("1s")
    state = await engine.status(first)
    assert state.status is Status.COMPLETED
    assert seen.data[first] == [{"n": 2}]  # one execution, with the last start's data
    assert state.updated_at == t0 + timedelta(seconds=40)
    kinds = [e.kind for e in await engine.history(first)]
    assert kinds == ["created", "debounced", "step_completed", "run_completed"]

    again = await engine.start("burst", {"n": 3}, debounce_key="cust-42", debounce="30s")
    assert again != first  # it had begun: a new run
    await kit.advance("30s")
    assert seen.data[again] == [{"n": 3}]


async def test_debounce_max_bounds_how_long_starts_put_the_run_off(kit: TestKit) -> None:
    seen = Seen()
    kit.register(burst(seen))
    run_id = ""
    for n in range(6):  # a start every 10 s, each pushing the 30 s window
        run_id = await kit.engine.start(
            "burst", {"n": n}, debounce_key="k", debounce="30s", debounce_max="45s"
        )
        if n < 4:
            await kit.advance("10s")
    # Starts at 0..40 s; without the bound the run would begin at 70 s.
    state = await kit.engine.status(run_id)
    assert state.waiting_for == ["debounce:k until 2030-01-01T00:00:45.000+00:00"]
    await kit.advance("5s")
    assert (await kit.engine.status(run_id)).status is Status.COMPLETED
    assert seen.data[run_id] == [{"n": 5}]


async def test_a_cancelled_debounced_run_takes_no_more_starts(kit: TestKit) -> None:
    seen = Seen()
    kit.register(burst(seen))
    first = await kit.engine.start("burst", {"n": 1}, debounce_key="k", debounce="30s")
    await kit.engine.cancel(first)
    second = await kit.engine.start("burst", {"n": 2}, debounce_key="k", debounce="30s")
    assert second != first
    await kit.advance("30s")
    assert (await kit.engine.status(first)).status is Status.CANCELLED
    assert seen.data == {second: [{"n": 2}]}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"debounce_key": "k"}, "debounce_key 'k' needs debounce: a duration"),
        ({"debounce": "30s"}, "debounce needs a debounce_key"),
        ({"debounce_max": "1m"}, "debounce needs a debounce_key"),
        ({"debounce_key": "a b", "debounce": "1s"}, "debounce key"),
        ({"debounce_key": "k", "debounce": "0s"}, "debounce must be longer than 0"),
        ({"debounce_key": "k", "debounce": "-1s"}, "negative duration"),
        ({"debounce_key": "k", "debounce": "1m", "debounce_max": "30s"}, "at least debounce"),
        ({"debounce_key": "k", "debounce": "1s", "run_id": "r-1"}, "cannot name its run_id"),
    ],
)
async def test_a_debounce_missing_a_part_or_with_a_bad_one_is_refused(
    kit: TestKit, options: dict[str, Any], message: str
) -> None:
    kit.register(burst(Seen()))
    with pytest.raises(ValueError, match=message):
        await kit.engine.start("burst", {"n": 1}, **options)
    assert await kit.engine.runs() == []


async def test_a_collapsed_start_stores_its_data_through_the_engines_codec(tmp_path: Any) -> None:
    from sample_codec import Base64Codec

    path = tmp_path / "coded.db"
    seen = Seen()
    persistence = treadle.SQLitePersistence(str(path))
    async with TestKit(burst(seen), persistence=persistence) as kit:
        kit.engine.persistence.codec = Base64Codec()  # type: ignore[attr-defined]
        first = await kit.engine.start("burst", {"n": 1}, debounce_key="k", debounce="1s")
        await kit.engine.start("burst", {"n": "secret"}, debounce_key="k", debounce="1s")
        assert (await kit.engine.status(first)).data == {"n": "secret"}
        with sqlite3.connect(path) as db:
            [(stored,)] = db.execute("SELECT data FROM runs").fetchall()
        assert stored.startswith("~codec:") and "secret" not in stored
        await kit.advance("1s")
        assert seen.data[first] == [{"n": "secret"}]


async def test_a_start_while_the_debounced_run_executes_makes_a_new_run(
    make_engine: EngineFactory,
) -> None:
    release, began = threading.Event(), threading.Event()

    def hold(ctx: Context, state: State) -> None:
        began.set()
        release.wait(10)

    clock = treadle.FakeClock()
    engine = await make_engine(treadle.new("held").step("hold", hold).build(), clock=clock)
    first = await engine.start("held", {"n": 1}, debounce_key="k", debounce="30s")
    clock.advance("30s")
    await until(engine, first, lambda s: s.status is Status.RUNNING and began.is_set())
    second = await engine.start("held", {"n": 2}, debounce_key="k", debounce="30s")
    assert second != first
    assert (await engine.status(second)).status is Status.WAITING
    release.set()
    assert (await engine.wait(first, timeout=10)).data == {"n": 1}
    clock.advance("30s")
    assert (await engine.wait(second, timeout=10)).data == {"n": 2}
