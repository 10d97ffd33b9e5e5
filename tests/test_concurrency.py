"""Concurrency limits: ``treadle.new(name).concurrency(limit, key=..., on_conflict=...)`` and
``singleton``, on every backend (multi-process and SIGKILL tests: test_concurrency_processes)."""

from __future__ import annotations

from typing import Any

import pytest

import treadle
from treadle import Status


def _tenant(state: treadle.State) -> str:
    return str(state.data["tenant"])


def _sync(**options: Any) -> treadle.Workflow:
    """A run that takes its slot, then waits for the signal ``go`` while holding it."""
    limit = options.pop("limit", 1)
    return (
        treadle.new("sync")
        .concurrency(limit, **options)
        .step("fetch", lambda ctx, s: "fetched")
        .await_signal("go")
        .build()
    )


async def _statuses(engine: treadle.Engine, run_ids: list[str]) -> list[tuple[str, list[str]]]:
    return [((s := await engine.status(r)).status.value, s.waiting_for) for r in run_ids]


async def test_a_run_beyond_the_limit_of_its_key_waits_until_a_slot_frees(
    engine: treadle.Engine,
) -> None:
    engine.register(_sync(key=_tenant))
    first = await engine.start("sync", {"tenant": "t-7"}, run_id="a")
    await engine.settle()
    second = await engine.start("sync", {"tenant": "t-7"}, run_id="b")
    other = await engine.start("sync", {"tenant": "t-8"}, run_id="c")
    await engine.settle()
    assert await _statuses(engine, [first, second, other]) == [
        ("waiting", ["signal:go"]),
        ("waiting", ["limit:sync[t-7]"]),
        ("waiting", ["signal:go"]),
    ]
    [use] = [u for u in await engine.limits() if u.key == "sync[t-7]"]
    assert (use.limit, use.holders, use.queued) == (1, ("a",), ("b",))
    await engine.signal(first, "go")
    await engine.wait(first, timeout=10)
    await engine.settle()
    assert await _statuses(engine, [second]) == [("waiting", ["signal:go"])]
    kinds = [e.kind for e in await engine.history(second)]
    assert kinds.count("slot_queued") == 1 and kinds.count("slot_acquired") == 1
    for run_id in (second, other):
        await engine.signal(run_id, "go")
        assert (await engine.wait(run_id, timeout=10)).status is Status.COMPLETED
    assert await engine.limits() == []


async def test_a_workflow_wide_limit_admits_that_many_runs(engine: treadle.Engine) -> None:
    engine.register(_sync(limit=2))
    runs = [await engine.start("sync", {}, run_id=f"r{i}") for i in range(4)]
    await engine.settle()
    waits = [w for _, w in await _statuses(engine, runs)]
    assert waits.count(["signal:go"]) == 2 and waits.count(["limit:sync"]) == 2
    [use] = await engine.limits()
    assert (use.key, use.limit, len(use.holders), len(use.queued)) == ("sync", 2, 2, 2)


async def test_queued_runs_get_the_slot_by_priority_then_age(engine: treadle.Engine) -> None:
    engine.register(_sync())
    holder = await engine.start("sync", {}, run_id="holder")
    await engine.settle()
    for run_id in ("q1", "q2", "q3"):
        await engine.start("sync", {}, run_id=run_id)
        await engine.settle()
    [use] = await engine.limits()
    assert use.queued == ("q1", "q2", "q3")
    await engine.signal(holder, "go")
    await engine.wait(holder, timeout=10)
    await engine.settle()
    [use] = await engine.limits()
    assert use.holders == ("q1",) and use.queued == ("q2", "q3")


async def test_a_cancelled_queued_run_leaves_the_queue(engine: treadle.Engine) -> None:
    engine.register(_sync())
    await engine.start("sync", {}, run_id="holder")
    await engine.settle()
    await engine.start("sync", {}, run_id="queued")
    await engine.settle()
    await engine.cancel("queued")
    assert (await engine.wait("queued", timeout=10)).status is Status.CANCELLED
    [use] = await engine.limits()
    assert use.holders == ("holder",) and use.queued == ()


async def test_a_failed_holder_passes_its_slot_on(engine: treadle.Engine) -> None:
    def boom(ctx: treadle.Context, state: treadle.State) -> None:
        if state.data.get("fail"):
            raise treadle.NonRetryableError("boom")

    engine.register(
        treadle.new("sync").concurrency(1).step("boom", boom).await_signal("go").build()
    )
    await engine.start("sync", {}, run_id="holder")
    await engine.settle()
    await engine.start("sync", {"fail": True}, run_id="failing")
    await engine.cancel("holder")
    assert (await engine.wait("failing", timeout=10)).status is Status.FAILED
    assert await engine.limits() == []


async def test_skip_ends_the_new_run_cancelled_naming_the_limit_and_the_holder(
    engine: treadle.Engine,
) -> None:
    engine.register(
        treadle.new("sync")
        .singleton(_tenant)
        .step("a", lambda c, s: None)
        .await_signal("go")
        .build()
    )
    await engine.start("sync", {"tenant": "t-7"}, run_id="holder")
    await engine.settle()
    skipped = await engine.start("sync", {"tenant": "t-7"}, run_id="late")
    state = await engine.wait(skipped, timeout=10)
    assert state.status is Status.CANCELLED
    assert state.error == "skipped: concurrency limit 1 of sync[t-7] is held by 'holder'"
    kinds = [e.kind for e in await engine.history(skipped)]
    assert "slot_refused" in kinds and "step_completed" not in kinds
    assert kinds[-1] == "run_cancelled"
    [use] = await engine.limits()
    assert use.holders == ("holder",) and use.queued == ()


async def test_cancel_running_cancels_the_holder_and_takes_its_slot(
    engine: treadle.Engine,
) -> None:
    undone: list[str] = []
    engine.register(
        treadle.new("sync")
        .concurrency(1, _tenant, on_conflict="cancel_running")
        .step("a", lambda c, s: None, compensate=lambda c, s: undone.append(c.run_id))
        .await_signal("go")
        .build()
    )
    await engine.start("sync", {"tenant": "t-7"}, run_id="old")
    await engine.settle()
    new = await engine.start("sync", {"tenant": "t-7"}, run_id="new")
    old = await engine.wait("old", timeout=10)
    assert old.status is Status.CANCELLED and undone == ["old"]
    await engine.settle()
    assert await _statuses(engine, [new]) == [("waiting", ["signal:go"])]
    [use] = await engine.limits()
    assert use.holders == ("new",)


async def test_a_key_function_that_fails_fails_the_run_naming_workflow_and_value(
    engine: treadle.Engine,
) -> None:
    engine.register(
        treadle.new("sync")
        .concurrency(1, key=lambda s: s.data.get("tenant"))
        .step("a", lambda c, s: None)
        .build()
    )
    state = await engine.wait(await engine.start("sync", {"tenant": 7}), timeout=10)
    assert state.status is Status.FAILED
    assert state.error == "workflow 'sync': concurrency key must return a non-empty str, not 7"
    assert await engine.limits() == []


async def test_an_async_key_is_awaited_and_recorded_once(engine: treadle.Engine) -> None:
    calls: list[str] = []

    async def key(state: treadle.State) -> str:
        calls.append(state.id)
        return "k"

    engine.register(_sync(key=key))
    run_id = await engine.start("sync", {})
    await engine.settle()
    await engine.signal(run_id, "go")
    assert (await engine.wait(run_id, timeout=10)).status is Status.COMPLETED
    assert calls == [run_id]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limit": 0}, "concurrency limit must be an integer >= 1, not 0"),
        ({"limit": True}, "concurrency limit must be an integer >= 1, not True"),
        ({"limit": "2"}, "concurrency limit must be an integer >= 1, not '2'"),
        ({"limit": 1, "key": "tenant"}, "key must be a function of the state returning a str"),
        ({"limit": 1, "on_conflict": "drop"}, "on_conflict must be one of 'queue', 'skip'"),
    ],
)
def test_concurrency_misuse_is_a_definition_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(treadle.DefinitionError, match="workflow 'sync': ") as caught:
        treadle.new("sync").concurrency(**options)
    assert message in str(caught.value)


def test_singleton_is_a_limit_of_one_that_skips() -> None:
    built = treadle.new("s").singleton().step("a", lambda c, s: None).build()
    assert built.concurrency is not None
    assert (built.concurrency.limit, built.concurrency.on_conflict) == (1, "skip")
    with pytest.raises(treadle.DefinitionError, match="on_conflict"):
        treadle.new("s").singleton(on_conflict="wait")


def test_a_limit_is_not_part_of_the_fingerprint() -> None:
    plain = treadle.new("s").step("a", print).build()
    assert treadle.new("s").concurrency(3).step("a", print).build().id == plain.id
