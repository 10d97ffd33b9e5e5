"""Recovery after SIGKILL: a worker process (tests/workers/core_worker.py) runs workflows on a
SQLite file and records every side effect in a file; the test kills it at awkward moments,
starts it again and counts exactly which side effects happened how often.

The guarantee under test (API.md "Semantics"): completed steps are never run again; the step
that was running when the process died runs again at most once more, with the same
idempotency key; compensation goes on where it stopped; waiting runs (signal, timer, retry
backoff, child run) survive the restart.
"""

from __future__ import annotations

import asyncio

from recoverykit import Harness

from treadle import Status


async def test_completed_steps_never_run_again_and_the_step_in_flight_runs_once_more(
    harness: Harness,
) -> None:
    harness.spawn(start=("chain=c-1",), block=("s2",))
    await harness.until(lambda: harness.count("c-1", "s2") == 1, "s2 in flight")
    harness.kill()
    assert harness.counts("c-1") == {("s1", "do"): 1, ("s2", "do"): 1}

    harness.spawn()
    final = await harness.finished("c-1")
    assert final.status is Status.COMPLETED
    assert set(final.data) == {"s1", "s2", "s3"}
    counts = harness.counts("c-1")
    assert counts[("s1", "do")] == 1, "a completed step ran again"
    assert counts[("s2", "do")] == 2, "the step in flight runs again exactly once more"
    assert counts[("s3", "do")] == 1
    keys = {e.key for e in harness.effects("c-1") if e.step == "s2"}
    assert len(keys) == 1, f"the recovered step got another idempotency key: {keys}"


async def test_compensation_interrupted_by_a_kill_resumes_where_it_stopped(
    harness: Harness,
) -> None:
    harness.spawn(start=("saga=s-1",), block=("undo:c2",))
    await harness.until(lambda: harness.count("s-1", "c2", "undo") == 1, "undo of c2 in flight")
    harness.kill()
    assert harness.counts("s-1") == {
        ("c1", "do"): 1,
        ("c2", "do"): 1,
        ("c3", "do"): 1,
        ("boom", "do"): 1,
        ("c3", "undo"): 1,
        ("c2", "undo"): 1,
    }

    harness.spawn()
    final = await harness.finished("s-1")
    assert final.status is Status.FAILED
    assert final.error is not None and "boom" in final.error
    assert harness.counts("s-1") == {
        ("c1", "do"): 1,
        ("c2", "do"): 1,
        ("c3", "do"): 1,
        ("boom", "do"): 1,  # the failed step is not run again either
        ("c3", "undo"): 1,  # compensated before the kill: never again
        ("c2", "undo"): 2,  # in flight: once more
        ("c1", "undo"): 1,
    }
    undo_order = [e.step for e in harness.effects("s-1") if e.phase == "undo"]
    assert undo_order == ["c3", "c2", "c2", "c1"]
    keys = {e.key for e in harness.effects("s-1") if e.step == "c2" and e.phase == "undo"}
    assert len(keys) == 1


async def test_runs_waiting_for_signals_survive_a_kill(harness: Harness) -> None:
    harness.spawn(start=("waiter=w-1", "waiter=w-2"))
    await harness.waiting("w-1", "signal:go")
    await harness.waiting("w-2", "signal:go")
    harness.kill()

    await harness.client.signal("w-2", "go", {"sent": "while dead"})
    harness.spawn()
    final = await harness.finished("w-2")
    assert final.status is Status.COMPLETED
    assert final.data["go"] == {"sent": "while dead"}
    assert (await harness.client.status("w-1")).status is Status.WAITING
    assert "signal_consumed" not in [e.kind for e in await harness.client.history("w-1")]

    await harness.client.signal("w-1", "go", {"sent": "after restart"})
    final = await harness.finished("w-1")
    assert final.status is Status.COMPLETED
    assert final.data["go"] == {"sent": "after restart"}
    for run_id in ("w-1", "w-2"):
        assert harness.counts(run_id) == {("w1", "do"): 1, ("w2", "do"): 1}


async def test_a_step_killed_right_after_a_signal_resumed_it_runs_again_with_that_signal(
    harness: Harness,
) -> None:
    # The step after a signal starts without a checkpoint of its own (the consumed message
    # stays in the inbox until the step's checkpoint): a kill must not lose or swap the signal.
    harness.spawn(start=("waiter=w-3",), block=("w2",))
    await harness.waiting("w-3", "signal:go")
    await harness.client.signal("w-3", "go", {"n": 1})
    await harness.until(lambda: harness.count("w-3", "w2") == 1, "w2 in flight")
    harness.kill()
    await harness.client.signal("w-3", "go", {"n": 2})  # a later one must not take its place

    harness.spawn()
    final = await harness.finished("w-3")
    assert final.status is Status.COMPLETED
    assert final.data["go"] == {"n": 1}
    assert harness.counts("w-3") == {("w1", "do"): 1, ("w2", "do"): 2}
    kinds = [e.kind for e in await harness.client.history("w-3")]
    assert kinds.count("signal_consumed") == 1
    assert kinds.count("signal_received") == 2


async def test_durable_timers_survive_a_kill(harness: Harness) -> None:
    harness.spawn(start=("napper=n-1",))
    await harness.waiting("n-1", "timer:nap")
    harness.kill()
    harness.spawn()
    final = await harness.finished("n-1")
    assert final.status is Status.COMPLETED
    assert harness.counts("n-1") == {("n1", "do"): 1, ("n2", "do"): 1}
    assert "timer_fired" in [e.kind for e in await harness.client.history("n-1")]


async def test_retry_backoff_survives_a_kill(harness: Harness) -> None:
    harness.spawn(start=("retrier=r-1",))
    await harness.waiting("r-1", "retry:r1")
    harness.kill()
    harness.spawn()
    final = await harness.finished("r-1")
    assert final.status is Status.COMPLETED
    r1 = [e for e in harness.effects("r-1") if e.step == "r1"]
    assert [e.attempt for e in r1] == [1, 2]
    assert len({e.key for e in r1}) == 1
    assert harness.count("r-1", "r2") == 1


async def test_a_parent_recovered_while_its_child_waits_never_starts_a_second_child(
    harness: Harness,
) -> None:
    harness.spawn(start=("family=f-1",))
    parent = await harness.until_state(
        "f-1", lambda s: s.status is Status.WAITING, "parent waiting for its child"
    )
    child_id = parent.waiting_for[0].removeprefix("run:")
    await harness.waiting(child_id, "signal:go")
    harness.kill()
    harness.spawn()
    await harness.client.signal(child_id, "go", 1)
    final = await harness.finished("f-1")
    assert final.status is Status.COMPLETED
    assert final.data["child"]["go"] == 1
    children = await harness.client.runs(workflow="kid")
    assert [c.id for c in children] == [child_id]
    assert harness.counts("f-1") == {("p1", "do"): 1, ("p2", "do"): 1}
    assert harness.counts(child_id) == {("k1", "do"): 1, ("k2", "do"): 1}


async def test_a_loop_killed_mid_iteration_goes_on_with_that_iteration(harness: Harness) -> None:
    harness.spawn(start=("looper=l-1",), block=("item:b",))
    await harness.until(lambda: harness.count("l-1", "item") == 2, "iteration b in flight")
    harness.kill()
    harness.spawn()
    final = await harness.finished("l-1")
    assert final.status is Status.COMPLETED
    items = [e.key for e in harness.effects("l-1") if e.step == "item"]
    assert len(items) == 4, "a, b (in flight), b again, c"
    assert items[1] == items[2], "the iteration in flight keeps its idempotency key"
    assert len(set(items)) == 3
    assert harness.count("l-1", "after") == 1


async def test_a_completed_branch_of_a_parallel_killed_midway_is_not_run_again(
    harness: Harness,
) -> None:
    harness.spawn(start=("fan=p-1",), block=("slow",))
    await harness.until(
        lambda: harness.count("p-1", "slow") == 1 and harness.count("p-1", "quick") == 1,
        "quick done while slow is in flight",
    )
    # The kill comes once the completed branch is stored (its step_completed event is written
    # with its checkpoint), not after a guessed time.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not any(
        e.kind == "step_completed" and e.step == "quick"
        for e in await harness.client.history("p-1")
    ):
        assert loop.time() < deadline, "the completed branch was never checkpointed"
        await asyncio.sleep(0.01)
    harness.kill()
    harness.spawn()
    final = await harness.finished("p-1")
    assert final.status is Status.COMPLETED
    assert harness.count("p-1", "quick") == 1, "a completed step ran again"
    assert harness.count("p-1", "slow") == 2
    assert harness.count("p-1", "joined") == 1


async def test_sigkill_while_compensating_after_a_deadline_resumes_the_compensation(
    harness: Harness,
) -> None:
    run_id = "expiring-1"
    harness.spawn(start=(f"expiring={run_id}",), block=("undo:d2",))
    # The run waits for a signal that never comes; at its deadline (1s) it is woken, cancelled
    # and compensates d2 first, which blocks: kill the worker in the middle of it.
    await harness.until(lambda: harness.count(run_id, "d2", "undo") == 1, "d2 being undone")
    harness.kill()
    assert (await harness.client.status(run_id)).status is not Status.CANCELLED
    harness.spawn()
    state = await harness.finished(run_id)
    assert state.status is Status.CANCELLED
    assert (state.error or "").startswith("DeadlineExceeded: ")
    counts = harness.counts(run_id)
    assert counts[("d1", "do")] == counts[("d2", "do")] == 1
    assert counts[("d2", "undo")] == 2  # the one under way runs once more, at most
    assert counts[("d1", "undo")] == 1
    undone = [e.step for e in harness.effects(run_id) if e.phase == "undo"]
    assert undone == ["d2", "d2", "d1"]


async def test_a_label_set_by_a_step_killed_before_its_checkpoint_is_not_kept(
    harness: Harness,
) -> None:
    harness.spawn(start=("labeller=l-1",), block=("tag2",))
    await harness.until(lambda: harness.count("l-1", "tag2") == 1, "tag2 in flight")
    harness.kill()
    state = await harness.client.status("l-1")
    assert state.labels == {"tag1": "attempt-1"}  # tag2 labelled, then died: not kept
    assert (await harness.client.find_runs(labels={"tag2": "attempt-1"})).runs == []

    harness.spawn()
    final = await harness.finished("l-1")
    assert harness.count("l-1", "tag2") == 2  # it ran again (a crash is not a failed attempt)
    assert final.labels == {"tag1": "attempt-1", "tag2": "attempt-1"}
    found = await harness.client.find_runs(labels={"tag2": "attempt-1"})
    assert [s.id for s in found.runs] == ["l-1"]
