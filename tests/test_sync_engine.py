"""The synchronous facade (API.md "Synchronous facade"): a SyncEngine runs one async Engine on an
event loop in a daemon thread of its own, and plain threads call it with blocking methods.

Nothing here sleeps to wait: runs are awaited with ``wait``/``settle``, threads with events and
barriers; the SIGKILL test reuses the harness of tests/test_recovery.py.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from recoverykit import Harness

import treadle
from treadle import Context, EngineNotOpen, State, Status, SyncEngine, WrongEventLoop
from treadle._engine.sync import _EngineOptions

OPTIONS: dict[str, Any] = {"poll_interval": 0.2}


def portal_threads() -> list[str]:
    """The names of the SyncEngine loop threads alive now."""
    return [t.name for t in threading.enumerate() if t.name.startswith("treadle-sync-")]


@pytest.fixture(params=["memory", "sqlite"])
def make_sync(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], SyncEngine]]:
    """A factory of SyncEngines (not open) on the backend under test; all closed after."""
    made: list[SyncEngine] = []

    def make() -> SyncEngine:
        persistence: treadle.Persistence = (
            treadle.MemoryPersistence()
            if request.param == "memory"
            else treadle.SQLitePersistence(str(tmp_path / "runs.db"))
        )
        made.append(SyncEngine(persistence, **OPTIONS))
        return made[-1]

    yield make
    for sync in made:
        sync.close(drain=0.5)
    assert portal_threads() == [], "a closed SyncEngine left its thread behind"


def remember(ctx: Context, state: State) -> Any:
    return state.data.get("n")


ORDER = (
    treadle.new("order")
    .step("begin", remember)
    .await_signal("go")
    .await_approval("ok", ["alice"])
    .step("end", remember)
    .build()
)


# Life cycle ------------------------------------------------------------------------------------


def test_a_run_goes_from_start_to_end_through_blocking_calls(
    make_sync: Callable[[], SyncEngine],
) -> None:
    with make_sync() as engine:
        engine.register(ORDER)
        run_id = engine.start("order", {"n": 7}, run_id="order-1")
        assert engine.start("order", {"n": 7}, run_id="order-1") == "order-1"  # idempotent
        engine.signal(run_id, "go", {"paid": True})
        engine.approve(run_id, "ok", by="alice", comment="fine")
        final = engine.wait(run_id, timeout=5)
        assert final.status is Status.COMPLETED
        assert final.data["go"] == {"paid": True} and final.data["end"] == 7
        stored = engine.status(run_id)
        assert (stored.status, stored.data) == (final.status, final.data)
        kinds = [e.kind for e in engine.history(run_id)]
        assert kinds[0] == "created" and kinds[-1] == "run_completed"
        assert [s.id for s in engine.runs(workflow="order", status="completed")] == [run_id]
        assert engine.definition(run_id)["name"] == "order"
        assert engine.workflows == {"order": ORDER}
        assert engine.metrics is engine.engine.metrics
        assert engine.persistence is engine.engine.persistence
        assert engine.clock is engine.engine.clock
        assert portal_threads() != []


def test_open_and_close_by_hand_and_open_again(make_sync: Callable[[], SyncEngine]) -> None:
    engine = make_sync()
    engine.open()
    engine.register(ORDER)  # after open: saved on the engine's loop
    assert engine.status(engine.start("order")).workflow == "order"
    engine.close()
    assert portal_threads() == []
    engine.close()  # closing again does nothing, as on Engine

    engine.open()  # a closed SyncEngine opens again, on a new loop
    run_id = engine.start("order", {"n": 1})
    engine.settle()
    assert engine.status(run_id).waiting_for == ["signal:go"]
    engine.pause(run_id)
    assert engine.status(run_id).status is Status.PAUSED
    engine.resume(run_id)
    engine.cancel(run_id)
    assert engine.wait(run_id, timeout=5).status is Status.CANCELLED
    engine.close()


def test_a_rejection_and_the_timeout_of_wait_come_back_to_the_caller(
    make_sync: Callable[[], SyncEngine],
) -> None:
    with make_sync() as engine:
        engine.register(ORDER)
        run_id = engine.start("order")
        engine.signal(run_id, "go")
        with pytest.raises(TimeoutError, match="still"):
            engine.wait(run_id, timeout=0.05)
        with pytest.raises(treadle.NotAnApprover):
            engine.approve(run_id, "ok", by="mallory")
        engine.reject(run_id, "ok", by="alice", reason="too dear")
        final = engine.wait(run_id, timeout=5)
        assert final.status is Status.FAILED and "too dear" in (final.error or "")
        with pytest.raises(treadle.RunNotFound):
            engine.status("no-such-run")


CALLS: list[tuple[str, Callable[[SyncEngine], object]]] = [
    ("start", lambda e: e.start("order")),
    ("status", lambda e: e.status("r")),
    ("runs", lambda e: e.runs()),
    ("history", lambda e: e.history("r")),
    ("wait", lambda e: e.wait("r", timeout=1)),
    ("pause", lambda e: e.pause("r")),
    ("resume", lambda e: e.resume("r")),
    ("cancel", lambda e: e.cancel("r")),
    ("signal", lambda e: e.signal("r", "go")),
    ("approve", lambda e: e.approve("r", "ok", by="alice")),
    ("reject", lambda e: e.reject("r", "ok", by="alice")),
    ("definition", lambda e: e.definition("r")),
    ("settle", lambda e: e.settle()),
]


@pytest.mark.parametrize(("name", "call"), CALLS, ids=[name for name, _ in CALLS])
def test_every_call_before_open_and_after_close_says_how_to_open(
    make_sync: Callable[[], SyncEngine], name: str, call: Callable[[SyncEngine], object]
) -> None:
    engine = make_sync()
    engine.register(ORDER)  # allowed before open
    for _ in ("before open", "after close"):
        with pytest.raises(EngineNotOpen, match=r"call open\(\) first .* 'with SyncEngine"):
            call(engine)
        engine.open()
        engine.close()
    assert issubclass(EngineNotOpen, RuntimeError)


def test_opening_an_open_sync_engine_raises_and_keeps_it_working(
    make_sync: Callable[[], SyncEngine],
) -> None:
    with make_sync() as engine:
        with pytest.raises(WrongEventLoop, match=r"already open .*treadle-sync-"):
            engine.open()
        with pytest.raises(WrongEventLoop, match="already open"), engine:
            pass
        assert engine.runs() == []
        assert len(portal_threads()) == 1


def test_an_error_of_opening_is_raised_by_open_and_leaves_no_thread(tmp_path: Path) -> None:
    engine = SyncEngine(treadle.SQLitePersistence(str(tmp_path / "missing" / "runs.db")))
    with pytest.raises(treadle.PersistenceError, match="cannot open SQLite database"):
        engine.open()
    assert portal_threads() == []
    with pytest.raises(EngineNotOpen):
        engine.status("r")


def test_wrap_takes_an_engine_made_elsewhere_and_options_reach_the_engine() -> None:
    made = treadle.Engine(max_concurrent_runs=7, lease=12.0)
    with SyncEngine.wrap(made) as engine:
        assert engine.engine is made
        assert engine.runs() == []
    assert SyncEngine(step_threads=3, poll_interval=0.5).engine.step_threads == 3
    keywords = {
        name
        for name, p in inspect.signature(treadle.Engine).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert set(_EngineOptions.__annotations__) == keywords


def test_an_open_async_engine_cannot_be_wrapped_open() -> None:
    async def main() -> None:
        async with made:
            with pytest.raises(WrongEventLoop, match="already open"):
                SyncEngine.wrap(made).open()

    made = treadle.Engine()
    asyncio.run(main())
    assert portal_threads() == []


# The deadlock guard ------------------------------------------------------------------------


INSIDE: list[tuple[str, Callable[[SyncEngine, str], object]]] = [
    ("status", lambda e, run_id: e.status(run_id)),
    ("signal", lambda e, run_id: e.signal(run_id, "go")),
    ("register", lambda e, run_id: e.register(ORDER)),
    ("open", lambda e, run_id: e.open()),
    ("close", lambda e, run_id: e.close()),
]


@pytest.mark.parametrize(("name", "call"), INSIDE, ids=[name for name, _ in INSIDE])
def test_an_async_step_calling_its_sync_engine_fails_with_the_deadlock_message(
    make_sync: Callable[[], SyncEngine], name: str, call: Callable[[SyncEngine, str], object]
) -> None:
    engine = make_sync()

    async def inside(ctx: Context, state: State) -> None:  # runs on the SyncEngine's loop
        call(engine, ctx.run_id)

    engine.register(treadle.new("inside").step("call", inside).build())
    with engine:
        final = engine.wait(engine.start("inside"), timeout=5)
        assert final.status is Status.FAILED
        assert "WrongEventLoop" in (final.error or "")
        assert f"SyncEngine.{name}() was called from the SyncEngine's own event loop" in (
            final.error or ""
        )
        assert f"await sync_engine.engine.{name}(...)" in (final.error or "")
        assert engine.runs(workflow="inside")[0].status is Status.FAILED  # the loop still runs


def test_a_plain_step_may_call_its_sync_engine_from_its_worker_thread(
    make_sync: Callable[[], SyncEngine],
) -> None:
    engine = make_sync()

    def look(ctx: Context, state: State) -> Any:
        return engine.status(ctx.run_id).status.value

    engine.register(treadle.new("look").step("look", look).build())
    with engine:
        final = engine.wait(engine.start("look"), timeout=5)
        assert final.status is Status.COMPLETED and final.data["look"] == "running"


def test_a_wait_in_another_thread_ends_with_engine_not_open_when_closed(
    make_sync: Callable[[], SyncEngine],
) -> None:
    engine = make_sync()
    engine.register(ORDER)
    engine.open()
    run_id = engine.start("order")
    outcome: list[BaseException] = []
    entered = threading.Event()

    def waiter() -> None:
        entered.set()
        try:
            engine.wait(run_id)  # the run waits for a signal that never comes
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    entered.wait(5)
    engine.close(drain=0.5)
    thread.join(5)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], EngineNotOpen)


# Many threads at once -------------------------------------------------------------------------


def test_sixteen_threads_start_signal_approve_read_and_wait_at_once(
    make_sync: Callable[[], SyncEngine],
) -> None:
    threads = 16
    barrier = threading.Barrier(threads)
    engine = make_sync()
    engine.register(ORDER)

    def client(n: int) -> tuple[State, list[str]]:
        barrier.wait(5)
        run_id = engine.start("order", {"n": n}, run_id=f"run-{n}")
        assert engine.status(run_id).id == run_id
        engine.signal(run_id, "go", {"from": n})
        barrier.wait(5)  # every thread signals before any approves
        engine.approve(run_id, "ok", by="alice")
        final = engine.wait(run_id, timeout=10)
        return final, [e.kind for e in engine.history(run_id)]

    with engine, ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(client, range(threads)))

    for n, (final, kinds) in enumerate(results):
        assert final.status is Status.COMPLETED, final
        assert final.data["go"] == {"from": n}
        assert final.data["begin"] == final.data["end"] == n
        assert final.data["ok"]["by"] == ["alice"]
        assert kinds.count("signal_consumed") == 1 and kinds[-1] == "run_completed"


# Damage: SIGKILL ------------------------------------------------------------------------------


async def test_a_sync_engine_killed_mid_step_resumes_without_running_completed_steps(
    harness: Harness,
) -> None:
    harness.spawn(start=("chain=sync-1",), block=("s2",), sync=True)
    await harness.until(lambda: harness.count("sync-1", "s2") == 1, "s2 in flight")
    harness.kill()
    assert harness.counts("sync-1") == {("s1", "do"): 1, ("s2", "do"): 1}

    harness.spawn(sync=True)  # a fresh SyncEngine on the same file
    final = await harness.finished("sync-1")
    assert final.status is Status.COMPLETED
    assert set(final.data) == {"s1", "s2", "s3"}
    assert harness.counts("sync-1") == {
        ("s1", "do"): 1,  # completed before the kill: never again
        ("s2", "do"): 2,  # in flight: once more
        ("s3", "do"): 1,
    }
