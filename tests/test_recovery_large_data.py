"""A loop and a parallel map over 1,500 elements survive SIGKILL in their middle: their lists are
longer than a chunk, so the run's data has values stored beside the run (``run_values``, the
list in chunks, only changed chunks written). After a restart, no completed iteration runs
again, the one that was running runs once more with its idempotency key, and the data is
complete: every element appended once, in order, and every map result in its place."""

from __future__ import annotations

import sqlite3

from recoverykit import Harness

from treadle import Status

BIG = 1500
BLOCKED = 1200


def aside(harness: Harness, run_id: str) -> tuple[str, int]:
    """How ``runs.data`` of a run starts, and how many rows it has beside it."""
    with sqlite3.connect(harness.db) as conn:
        data = conn.execute("SELECT data FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
        rows = conn.execute("SELECT COUNT(*) FROM run_values WHERE run_id = ?", (run_id,))
        return data[:7], rows.fetchone()[0]


def runs_per_iteration(harness: Harness, run_id: str, step: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for effect in harness.effects(run_id):
        if effect.step == step:
            i = int(effect.key.rsplit("#", 1)[1].split("/")[0])
            counts[i] = counts.get(i, 0) + 1
    return counts


async def test_a_large_loop_and_map_killed_midway_keep_their_data_exact(
    harness: Harness,
) -> None:
    harness.spawn(
        start=("biglooper=loop-1", "bigmapper=map-1"),
        block=(f"tick:{BLOCKED}", f"put:{BLOCKED}"),
    )
    await harness.until(
        lambda: (
            any(e.key.endswith(f"#{BLOCKED}/tick") for e in harness.effects("loop-1"))
            and len(runs_per_iteration(harness, "map-1", "put")) == BIG
        ),
        f"the loop at element {BLOCKED}, and every map iteration started",
    )
    # The map's other iterations are done and checkpointed before the kill.
    await harness.until_state(
        "map-1",
        lambda s: sum(r is not None for r in s.data["cells"]) == BIG - 1,
        "every map result but the blocked one stored",
    )
    assert aside(harness, "loop-1")[0] == "~aside:", "the loop's lists are stored beside it"
    harness.kill()

    harness.spawn()
    looped = await harness.finished("loop-1")
    mapped = await harness.finished("map-1")
    assert looped.status is Status.COMPLETED, looped.error
    assert mapped.status is Status.COMPLETED, mapped.error

    assert looped.data["seen"] == list(range(BIG)), "every element appended once, in order"
    assert looped.data["items"] == list(range(BIG))
    ticks = runs_per_iteration(harness, "loop-1", "tick")
    assert {i for i, n in ticks.items() if n != 1} == {BLOCKED}, "only the running one again"
    assert ticks[BLOCKED] == 2
    assert harness.count("loop-1", "after") == 1

    assert mapped.data["cells"] == [{"item": i} for i in range(BIG)], "every result in place"
    puts = runs_per_iteration(harness, "map-1", "put")
    assert {i for i, n in puts.items() if n != 1} == {BLOCKED}
    assert puts[BLOCKED] == 2
    assert harness.count("map-1", "after") == 1
    prefix, rows = aside(harness, "map-1")
    assert prefix == "~aside:" and rows >= 2, "the results list is stored in chunks"
