"""A parallel map survives SIGKILL in its middle: a worker process (tests/workers/core_worker.py)
maps over ten elements, three at a time, and is killed with some iterations done, some running
and some not started. After a restart, completed iterations never run again, the ones that were
running run once more with the same idempotency keys, the rest run once, and the results list
is complete and in order."""

from __future__ import annotations

from recoverykit import Harness

from treadle import Status


async def test_a_map_killed_midway_keeps_its_done_iterations_and_reruns_only_the_running(
    harness: Harness,
) -> None:
    harness.spawn(start=("mapper=m-1",), block=("ship:4", "ship:5", "ship:6"))
    await harness.until(
        lambda: (
            {e.key.rsplit("#", 1)[1] for e in harness.effects("m-1")}
            >= {"4/ship", "5/ship", "6/ship"}
        ),
        "iterations 4, 5 and 6 in flight",
    )
    before = harness.effects("m-1")
    harness.kill()
    started = sorted(int(e.key.rsplit("#", 1)[1].split("/")[0]) for e in before)
    assert started == [0, 1, 2, 3, 4, 5, 6], "three in flight, 7 to 9 not started"
    keys = {e.key for e in before}

    harness.spawn()
    final = await harness.finished("m-1")
    assert final.status is Status.COMPLETED, final.error
    results = final.data["lines"]
    assert [r["item"] for r in results] == list(range(10)), "results complete and in order"
    runs: dict[int, list[str]] = {}
    for effect in harness.effects("m-1"):
        if effect.step == "ship":
            runs.setdefault(int(effect.key.rsplit("#", 1)[1].split("/")[0]), []).append(effect.key)
    assert {i: len(k) for i, k in runs.items()} == {
        0: 1, 1: 1, 2: 1, 3: 1,  # done before the kill: never again
        4: 2, 5: 2, 6: 2,  # running at the kill: once more
        7: 1, 8: 1, 9: 1,  # not started: once
    }  # fmt: skip
    for i in (4, 5, 6):
        assert len(set(runs[i])) == 1, f"iteration {i} got another idempotency key"
        assert runs[i][0] in keys
    assert [r["key"] for r in results] == [runs[i][0] for i in range(10)]
    assert harness.count("m-1", "shipped") == 1
