"""A database written by an older treadle (``tests/data/runs-v0.db``, before the cursor had types
and a version) opens with today's code, and every run in it goes on to its end."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
from pathlib import Path
from types import ModuleType

import treadle
from treadle import Status

DATA = Path(__file__).parent / "data"


def _fixture() -> ModuleType:
    spec = importlib.util.spec_from_file_location("runs_v0", DATA / "runs_v0.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_fixture_holds_cursors_of_the_old_format() -> None:
    with sqlite3.connect(DATA / "runs-v0.db") as conn:
        cursors = [json.loads(row[0]) for row in conn.execute("SELECT cursor FROM runs")]
    assert len(cursors) == 10
    assert all(set(cursor) == {"n", "c", "f"} for cursor in cursors)  # no version field


async def test_runs_left_by_the_old_cursor_format_go_on_to_their_end(tmp_path: Path) -> None:
    fixture = _fixture()
    path = tmp_path / "runs-v0.db"
    shutil.copy(DATA / "runs-v0.db", path)
    clock = treadle.FakeClock(fixture.START)
    # Written under schema 1, by a treadle whose fingerprints left out timeouts and backoffs:
    # the upgrade adds what versions need, and the runs are found by their old fingerprints.
    said = await treadle.SQLitePersistence(str(path)).upgrade()
    assert "from version 1 to" in said
    engine = treadle.Engine(treadle.SQLitePersistence(str(path)), clock=clock, poll_interval=0.2)
    for workflow in fixture.workflows():
        engine.register(workflow)
    async with engine:
        await engine.settle()
        before = {s.id: (s.status, s.waiting_for) for s in await engine.runs()}
        by_name = {w.name: w for w in fixture.workflows()}
        for state in await engine.runs():
            # Still on the old fingerprint, unless it has executed here: then moved onto the
            # same definition's new one.
            moved = state.id == "interrupted-1"
            assert state.definition_id == (
                by_name[state.workflow].id if moved else by_name[state.workflow].legacy_id
            )
        child = "parent-1.kid.833c9337de20"
        assert before == {
            "fan-1": (Status.WAITING, ["signal:go"]),
            "each-1": (Status.WAITING, ["signal:ack"]),
            "approve-1": (Status.WAITING, ["approval:manager"]),
            "approve-2": (Status.WAITING, ["approval:manager"]),
            "nap-1": (Status.WAITING, ["timer:siesta"]),
            "retrying-1": (Status.WAITING, ["retry:flaky"]),
            "parent-1": (Status.WAITING, [f"run:{child}"]),
            child: (Status.WAITING, ["signal:child-go"]),
            "pausable-1": (Status.PAUSED, ["signal:go"]),
            "interrupted-1": (Status.COMPLETED, []),  # its step ran again when the engine opened
        }
        await engine.signal("fan-1", "go", "now")
        await engine.signal("each-1", "ack", "second ack")
        await engine.approve("approve-1", "manager", by="bob")
        await engine.reject("approve-2", "manager", by="alice", reason="no")
        await engine.signal(child, "child-go", True)
        await engine.resume("pausable-1")
        await engine.signal("pausable-1", "go", 1)
        clock.advance("2h")
        await engine.settle()
        final = {s.id: s for s in await engine.runs()}

    assert {s.definition_id for s in final.values()} == {w.id for w in by_name.values()}
    assert {run_id: s.status for run_id, s in final.items()} == {
        **{run_id: Status.COMPLETED for run_id in before},
        "approve-2": Status.FAILED,
    }
    assert final["fan-1"].data == {
        "prepare": "prepare#1",
        "left": "left#1",
        "right-1": "right-1#1",
        "go": "now",
        "right-2": "right-2#1",
        "finish": "finish#1",
    }
    assert final["each-1"].data == {
        "items": [1, 2, 3],
        "packed": [1, 2, 3],
        "last": 3,
        "ack": "second ack",
        "done": "done#1",
    }
    assert final["approve-1"].data == {
        "reserve": "reserve#1",
        "manager": {"approved": True, "by": ["alice", "bob"], "comment": "fine by me"},
        "ship": "ship#1",
    }
    assert final["approve-2"].data == {
        "reserve": "reserve#1",
        "manager": {"approved": False, "by": ["alice"], "reason": "no"},
        "unreserved": True,
    }
    assert "rejected" in (final["approve-2"].error or "")
    assert final["nap-1"].data == {"before": "before#1", "after": "after#1"}
    assert final["retrying-1"].data == {"flaky": 2}
    assert final[child].data == {"n": 1, "child-1": "child-1#1", "child-go": True}
    assert final["parent-1"].data == {
        "parent-1": "parent-1#1",
        "kid": final[child].data,
        "parent-2": "parent-2#1",
    }
    assert final["pausable-1"].data == {"one": "one#1", "go": 1, "two": "two#1"}
    assert final["interrupted-1"].data == {
        "first": "first#1",
        "blocker": "unblocked",
        "last": "last#1",
    }
