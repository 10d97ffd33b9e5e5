"""treadle.testing: the test kit's engine, its time, its failures and its history helpers."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import treadle
import treadle.testing
from treadle import Context, State, Status
from treadle.testing import InjectedFailure, TestKit

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def noop(ctx: Context, state: State) -> None:
    """A step that does nothing."""


def record(ctx: Context, state: State) -> None:
    state.data.setdefault("done", []).append(ctx.step)


def backoff(initial: str, most: str, attempts: int = 3) -> treadle.RetryPolicy:
    return treadle.RetryPolicy().attempts(attempts).backoff(initial, most)


async def first(kit: TestKit, run_id: str, kind: str, step: str | None = None) -> treadle.Event:
    """The first event of ``kind`` (of ``step``) in the run's history."""
    found = [e for e in await kit.events(run_id, kind) if step is None or e.step == step]
    assert found, f"no {kind} event for {step or 'the run'}"
    return found[0]


# Time ----------------------------------------------------------------------------------------


async def test_advance_72h_fires_a_durable_sleep_of_three_days_at_its_time() -> None:
    wf = treadle.new("cool").step("order", record).sleep("cool-off", "3d").step("ship", record)
    async with TestKit(wf.build()) as kit:
        run_id = await kit.start("cool")
        await kit.run_until_idle()
        assert (await kit.engine.status(run_id)).waiting_for == ["timer:cool-off"]

        await kit.advance("71h59m")
        assert (await kit.engine.status(run_id)).status is Status.WAITING

        await kit.advance("1m")
        state = await kit.engine.status(run_id)
        assert state.status is Status.COMPLETED
        assert state.data["done"] == ["order", "ship"]
        assert (await first(kit, run_id, "timer_fired")).at == T0 + timedelta(hours=72)
        assert kit.clock.now() == T0 + timedelta(hours=72)


async def test_advance_fires_a_retry_backoff_and_the_step_succeeds() -> None:
    calls: list[int] = []

    def charge(ctx: Context, state: State) -> None:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("card network down")

    wf = treadle.new("pay").step("charge", charge, retry=backoff("1m", "1h")).build()
    async with TestKit(wf) as kit:
        run_id = await kit.start("pay")
        await kit.run_until_idle()
        assert (await kit.engine.status(run_id)).waiting_for == ["retry:charge"]

        await kit.advance("1h")
        assert (await kit.engine.status(run_id)).status is Status.COMPLETED
        assert calls == [1, 2, 3]
        assert await kit.attempts(run_id, "charge") == 3
        # 1m then 2m of backoff (±10% jitter): each attempt at its own time, not at the end.
        done = (await first(kit, run_id, "step_completed", "charge")).at
        assert timedelta(minutes=2.7) <= done - T0 <= timedelta(minutes=3.3)


async def test_a_retry_scheduled_by_a_fired_sleep_fires_within_the_same_advance() -> None:
    wf = (
        treadle.new("nap")
        .sleep("nap", "1h")
        .step("call", noop, retry=backoff("30m", "30m"))
        .step("after", noop)
        .build()
    )
    async with TestKit(wf) as kit:
        kit.fail("call", on_attempt=1)
        run_id = await kit.start("nap")
        await kit.advance("72h")

        assert (await kit.engine.status(run_id)).status is Status.COMPLETED
        assert (await first(kit, run_id, "timer_fired")).at == T0 + timedelta(hours=1)
        retried = (await first(kit, run_id, "step_completed", "call")).at - T0
        assert timedelta(minutes=87) <= retried <= timedelta(minutes=93)
        assert kit.clock.now() == T0 + timedelta(hours=72)


async def test_a_signal_timeout_fails_the_run_when_advance_reaches_it() -> None:
    wf = treadle.new("paid").await_signal("payment").timeout("48h").step("ship", noop).build()
    async with TestKit(wf) as kit:
        late = await kit.start("paid")
        on_time = await kit.start("paid")
        await kit.run_until_idle()
        await kit.advance("47h")
        await kit.engine.signal(on_time, "payment", {"amount": 5})
        await kit.run_until_idle()
        assert (await kit.engine.status(on_time)).status is Status.COMPLETED
        assert (await kit.engine.status(late)).status is Status.WAITING

        await kit.advance("1h")
        state = await kit.engine.status(late)
        assert state.status is Status.FAILED
        assert "WaitTimeout" in (state.error or "")
        assert await kit.steps(late) == []


async def test_an_approval_timeout_fires_too() -> None:
    wf = treadle.new("sign").await_approval("boss", ["ann"]).timeout("1d").build()
    async with TestKit(wf) as kit:
        run_id = await kit.start("sign")
        await kit.advance("2d")
        assert (await kit.engine.status(run_id)).status is Status.FAILED


async def test_advance_fires_a_cron_schedule_once_per_due_time_in_order() -> None:
    report = treadle.new("report").step("write", record).build()
    async with TestKit(report) as kit:
        await kit.cron.add("nightly", "report", "0 2 * * *", {"format": "pdf"})
        await kit.cron.add("often", "report", "@every 6h")
        await kit.advance("72h")

        nightly = [r for r in await kit.engine.runs(workflow="report") if "nightly" in r.id]
        assert sorted(r.data["scheduled_at"] for r in nightly) == [
            f"2030-01-0{day}T02:00:00+00:00" for day in (1, 2, 3)
        ]
        runs = await kit.engine.runs(workflow="report")
        assert len(runs) == 3 + 12  # @every 6h: at 6h, 12h, ..., 72h
        assert all(r.status is Status.COMPLETED for r in runs)
        # Each run started at its own due time, not at the end of the span.
        for run in runs:
            assert run.created_at == datetime.fromisoformat(run.data["scheduled_at"])


async def test_run_until_idle_starts_a_schedule_that_is_due_now() -> None:
    report = treadle.new("report").step("write", noop).build()
    async with TestKit(report, now=T0 + timedelta(minutes=59, seconds=59)) as kit:
        await kit.cron.add("hourly", "report", "@hourly")
        kit.clock.advance("1s")  # moved by hand: run_until_idle still fires what is due
        await kit.run_until_idle()
        [run] = await kit.engine.runs()
        assert run.status is Status.COMPLETED


async def test_advance_on_sqlite_fires_timers_at_their_times(tmp_path: Path) -> None:
    wf = treadle.new("slow").sleep("a", "90m").step("b", noop, retry=backoff("1s", "1s"))
    async with TestKit(
        wf.build(), persistence=treadle.SQLitePersistence(str(tmp_path / "kit.db"))
    ) as kit:
        kit.fail("b", on_attempt=1)
        run_id = await kit.start("slow")
        await kit.advance("2h")
        assert (await kit.engine.status(run_id)).status is Status.COMPLETED
        assert (await first(kit, run_id, "timer_fired")).at == T0 + timedelta(minutes=90)
        assert await kit.attempts(run_id, "b") == 2


# Failures ------------------------------------------------------------------------------------


async def test_fail_on_the_first_attempt_makes_a_retry_happen_then_succeed() -> None:
    calls: list[int] = []

    def charge(ctx: Context, state: State) -> str:
        calls.append(ctx.attempt)
        return "charged"

    wf = treadle.new("pay").step("charge", charge, retry=backoff("5s", "5s")).build()
    async with TestKit(wf) as kit:
        fault = kit.fail("charge", on_attempt=1)
        run_id = await kit.start("pay")
        await kit.advance("5m")

        state = await kit.engine.status(run_id)
        assert state.status is Status.COMPLETED
        assert state.data["charge"] == "charged"
        assert calls == [2]  # the failed attempt did not call the step's code
        assert fault.hits == [(run_id, 1)]
        [failed] = await kit.events(run_id, "step_failed")
        assert failed.detail["attempt"] == 1
        assert "InjectedFailure" in failed.detail["error"]
        assert "retry_in" in failed.detail


async def test_fail_on_every_attempt_fails_the_run_and_compensates() -> None:
    undone: list[str] = []

    def release(ctx: Context, state: State) -> None:
        undone.append(ctx.step)

    wf = (
        treadle.new("order")
        .step("reserve", noop, compensate=release)
        .step("charge", noop, retry=backoff("1s", "10s", attempts=4))
        .build()
    )
    async with TestKit(wf) as kit:
        fault = kit.fail("charge", error=ConnectionRefusedError)
        run_id = await kit.start("order")
        await kit.advance("1m")

        state = await kit.engine.status(run_id)
        assert state.status is Status.FAILED
        assert "ConnectionRefusedError" in (state.error or "")
        assert await kit.attempts(run_id, "charge") == 4
        assert [attempt for _, attempt in fault.hits] == [1, 2, 3, 4]
        assert undone == ["reserve"]
        assert (await kit.events(run_id, "step_failed"))[-1].detail["final"] is True


async def test_a_non_retryable_error_fails_at_once_and_a_cancelled_fault_stops() -> None:
    wf = treadle.new("once").step("call", noop, retry=backoff("1s", "1s")).build()
    async with TestKit(wf) as kit:
        fault = kit.fail("call", on_attempt=[1, 2], error=treadle.NonRetryableError("no"))
        failed = await kit.start("once")
        await kit.run_until_idle()
        assert (await kit.engine.status(failed)).status is Status.FAILED
        assert await kit.attempts(failed, "call") == 1

        fault.cancel()
        fine = await kit.start("once")
        await kit.run_until_idle()
        assert (await kit.engine.status(fine)).status is Status.COMPLETED


async def test_a_fault_can_be_limited_to_one_run_and_reaches_async_and_nested_steps() -> None:
    async def fetch(ctx: Context, state: State) -> str:
        return "fetched"

    class Audit:
        name = "audit"

        async def execute(self, ctx: Context, state: State) -> None:
            state.data["audited"] = True

    inner = treadle.new("inner").step("fetch", fetch, retry=backoff("1s", "1s")).build()
    wf = (
        treadle.new("outer")
        .parallel("both", inner, Audit())
        .loop("again")
        .max_iterations(2)
        .do(treadle.step("tick", noop))
        .end()
        .build()
    )
    async with TestKit(wf) as kit:
        target = await kit.start("outer")
        other = await kit.start("outer")
        kit.fail("fetch", on_attempt=1, run_id=target)
        kit.fail("audit", on_attempt=1, run_id=target, error=treadle.NonRetryableError)
        await kit.advance("10s")

        assert (await kit.engine.status(other)).status is Status.COMPLETED
        steps = await kit.steps(other)  # the parallel branches complete in either order
        assert (sorted(steps[:2]), steps[2:]) == (["audit", "fetch"], ["tick", "tick"])
        state = await kit.engine.status(target)
        assert state.status is Status.FAILED
        assert "audit" in (state.error or "")


async def test_a_step_of_a_sub_workflow_fails_through_the_kit() -> None:
    child = treadle.new("child").step("work", noop).build()
    parent = treadle.new("parent").sub_workflow("call-child", "child").build()
    async with TestKit(child, parent) as kit:
        kit.fail("work", workflow="child")
        run_id = await kit.start("parent")
        await kit.run_until_idle()
        assert (await kit.engine.status(run_id)).status is Status.FAILED


class _Callable:
    def __call__(self, ctx: Context, state: State) -> None:
        """A step that is an object."""


def test_the_kit_registers_copies_with_the_same_definition_id() -> None:
    def add(n: int, ctx: Context, state: State) -> None:
        state.data["n"] = n

    async def nap(ctx: Context, state: State) -> None:
        """An async step."""

    wf = (
        treadle.new("shapes", version="v1")
        .step("lambda", lambda ctx, state: None, compensate=noop)
        .step("partial", functools.partial(add, 1))
        .step("object", _Callable(), retry=backoff("1s", "2s"))
        .step("async", nap)
        .if_("check", lambda s: True)
        .then(treadle.new("nested").step("deep", noop).build())
        .end()
        .build()
    )
    kit = TestKit(wf)
    copy = kit.engine.workflows["shapes"]
    assert copy is not wf
    assert copy.id == wf.id
    assert copy.legacy_id == wf.legacy_id
    assert copy.describe() == wf.describe()
    assert treadle.new("plain").step("a", noop).build().id != wf.id  # ids do tell shapes apart


def test_pytest_does_not_take_the_kit_for_a_test_class() -> None:
    assert TestKit.__test__ is False


# History -------------------------------------------------------------------------------------


async def test_steps_and_events_read_the_history_in_order() -> None:
    wf = (
        treadle.new("flow")
        .step("a", noop)
        .loop("each")
        .for_each("items")
        .do(treadle.step("item", record))
        .end()
        .await_signal("go")
        .step("z", noop)
        .build()
    )
    async with TestKit(wf) as kit:
        run_id = await kit.start("flow", {"items": [1, 2, 3]})
        await kit.run_until_idle()
        assert await kit.steps(run_id) == ["a", "item", "item", "item"]
        [waiting] = await kit.events(run_id, "waiting")
        assert waiting.detail["waits"] == ["signal:go"]

        await kit.engine.signal(run_id, "go", {"ok": True})
        await kit.run_until_idle()
        assert await kit.steps(run_id) == ["a", "item", "item", "item", "z"]
        assert [e.kind for e in await kit.events(run_id)][-1] == "run_completed"
        assert [e.detail["iteration"] for e in await kit.events(run_id, "loop_iteration")] == [
            0,
            1,
            2,
        ]
        assert await kit.attempts(run_id, "item") == 3
        assert await kit.attempts(run_id, "never") == 0


# Misuse --------------------------------------------------------------------------------------


async def test_an_unknown_event_kind_is_an_error_naming_the_kinds() -> None:
    async with TestKit(treadle.new("w").step("a", noop).build()) as kit:
        run_id = await kit.start("w")
        with pytest.raises(ValueError, match=r"unknown event kind 'step_complete'.*step_completed"):
            await kit.events(run_id, "step_complete")


@pytest.mark.parametrize(
    ("step", "options", "message"),
    [
        ("chrage", {}, r"kit.fail\('chrage'\): no step of that name .*steps: charge, wait"),
        ("wait", {}, "signal step, which runs no code"),
        ("charge", {"workflow": "other"}, "no workflow of that name .*it has: pay"),
        ("charge", {"on_attempt": 0}, "on_attempt must be an attempt number"),
        ("charge", {"on_attempt": []}, "on_attempt must be an attempt number"),
        ("charge", {"on_attempt": True}, "on_attempt must be an attempt number"),
        ("charge", {"error": "boom"}, "error must be an exception or an exception class"),
    ],
)
def test_fail_refuses_what_it_cannot_do(step: str, options: dict[str, Any], message: str) -> None:
    kit = TestKit(treadle.new("pay").step("charge", noop).await_signal("wait").build())
    with pytest.raises(ValueError, match=message):
        kit.fail(step, **options)


def test_fail_names_the_way_to_register_a_workflow_the_kit_does_not_have() -> None:
    kit = TestKit()
    kit.engine.register(treadle.new("pay").step("charge", noop).build())
    with pytest.raises(ValueError, match=r"kit.register\(...\), not with kit.engine.register"):
        kit.fail("charge")


async def test_advance_by_a_negative_duration_is_an_error() -> None:
    async with TestKit() as kit:
        for negative in ("-1h", -5, timedelta(seconds=-1)):
            with pytest.raises(ValueError, match="negative duration"):
                await kit.advance(negative)
        with pytest.raises(ValueError, match="invalid duration"):
            await kit.advance("three days")
        assert kit.clock.now() == T0


async def test_the_kit_outside_async_with_says_how_to_open_it() -> None:
    kit = TestKit(treadle.new("w").step("a", noop).build())
    calls = [
        ("start", kit.start("w")),
        ("run_until_idle", kit.run_until_idle()),
        ("advance", kit.advance("1h")),
        ("steps", kit.steps("r")),
        ("events", kit.events("r")),
        ("attempts", kit.attempts("r", "a")),
    ]
    for method, call in calls:
        with pytest.raises(treadle.EngineNotOpen, match=rf"TestKit.{method}\(\).*async with"):
            await call
    async with kit:
        await kit.start("w")
    with pytest.raises(treadle.EngineNotOpen, match="async with TestKit"):
        await kit.run_until_idle()


def test_an_injected_failure_names_the_step_and_the_attempt() -> None:
    error = InjectedFailure("charge", 2)
    assert (error.step, error.attempt) == ("charge", 2)
    assert str(error) == "failure injected by the test kit: step 'charge', attempt 2"


def test_api_md_lists_every_public_name_of_treadle_testing() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "API.md").read_text("utf-8")
    section = text[text.index("## Testing: treadle.testing") :]
    names = list(treadle.testing.__all__)
    names += [f"kit.{n}" for n in vars(TestKit) if not n.startswith("_")]
    names += [n for n in vars(treadle.testing.Fault) if not n.startswith("_")]
    names += [n for n in treadle.testing.Fault.__dataclass_fields__]
    missing = [n for n in names if f"`{n}" not in section and f" {n}" not in section]
    assert missing == []
