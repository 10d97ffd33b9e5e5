"""What a caller hands the engine is checked where it comes in: one id rule, storable text, one
event loop per engine; and what a finished run can no longer consume is dropped, recorded."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from enginekit import waiting_for

import treadle
from treadle import Status


def _waits() -> treadle.Workflow:
    return (
        treadle.new("inputs")
        .await_signal("go")
        .await_approval("ok", [])
        .step("done", lambda ctx, state: None)
        .build()
    )


@pytest.mark.parametrize("bad", ["", "a b", "a/b", "x" * 10_000, 123, "-leading"])
async def test_run_ids_outside_the_id_rule_are_refused_naming_the_id(
    engine: treadle.Engine, bad: Any
) -> None:
    engine.register(_waits())
    with pytest.raises(treadle.InvalidId, match="run id") as caught:
        await engine.start("inputs", run_id=bad)
    assert caught.value.value == bad
    assert await engine.runs() == []  # nothing was started
    with pytest.raises(ValueError, match="run id"):
        await engine.status(bad)


async def test_a_given_run_id_is_kept_as_given(engine: treadle.Engine) -> None:
    engine.register(_waits())
    assert await engine.start("inputs", run_id="order-42:a.b@c") == "order-42:a.b@c"
    assert (await engine.status("order-42:a.b@c")).status is not Status.FAILED


@pytest.mark.parametrize("text", ["nul \x00 inside", "cannot open \udcff.csv"])
async def test_unstorable_text_from_a_caller_is_a_data_error_naming_the_field(
    engine: treadle.Engine, text: str
) -> None:
    engine.register(_waits())
    with pytest.raises(treadle.DataError, match="start"):
        await engine.start("inputs", {"name": text})
    run_id = await engine.start("inputs")
    await waiting_for(engine, run_id, "signal:go")
    with pytest.raises(treadle.DataError, match="signal 'go'"):
        await engine.signal(run_id, "go", {"note": text})
    await engine.signal(run_id, "go", "fine")
    await waiting_for(engine, run_id, "approval:ok")
    with pytest.raises(treadle.DataError, match="approval 'ok'"):
        await engine.approve(run_id, "ok", comment=text)
    with pytest.raises(treadle.DataError, match="approval 'ok'"):
        await engine.reject(run_id, "ok", reason=text)
    await engine.approve(run_id, "ok", comment="all good")
    final = await engine.wait(run_id, 10)
    assert final.status is Status.COMPLETED
    assert final.data["go"] == "fine" and final.data["ok"]["comment"] == "all good"


async def test_data_nested_too_deep_is_a_data_error_not_a_recursion_error(
    engine: treadle.Engine,
) -> None:
    engine.register(_waits())
    deep: Any = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(treadle.DataError, match="nested"):
        await engine.start("inputs", {"deep": deep})


async def test_a_signal_left_in_the_inbox_is_dropped_when_the_run_finishes(
    engine: treadle.Engine,
) -> None:
    engine.register(_waits())
    run_id = await engine.start("inputs")
    await waiting_for(engine, run_id, "signal:go")
    await engine.signal(run_id, "go", 1)
    await engine.signal(run_id, "go", 2)  # its wait is passed once the first is consumed
    await waiting_for(engine, run_id, "approval:ok")
    await engine.approve(run_id, "ok")
    final = await engine.wait(run_id, 10)
    assert final.status is Status.COMPLETED and final.data["go"] == 1
    dropped = [e for e in await engine.history(run_id) if e.kind == "signals_dropped"]
    assert len(dropped) == 1
    assert dropped[0].detail == {"dropped": {"signal:go": 1}}


async def test_an_engine_used_from_another_event_loop_says_so_at_once(
    engine: treadle.Engine,
) -> None:
    engine.register(_waits())
    outcome: list[BaseException] = []

    def other_thread() -> None:
        try:
            asyncio.run(engine.start("inputs"))
        except BaseException as exc:  # the test reads it back
            outcome.append(exc)

    thread = threading.Thread(target=other_thread, name="request-1")
    thread.start()
    await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], treadle.WrongEventLoop)
    assert isinstance(outcome[0], RuntimeError)
    assert "request-1" in str(outcome[0]) and "one engine per event loop" in str(outcome[0])
    assert await engine.runs() == []  # nothing was started


async def test_opening_an_open_engine_again_is_refused(engine: treadle.Engine) -> None:
    with pytest.raises(treadle.WrongEventLoop, match="already open"):
        async with engine:
            pass
    assert await engine.runs() == []  # still open and usable
