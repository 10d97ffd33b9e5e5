"""Debounced starts from several processes (API.md "Priority and debounce"): the database
decides (a unique index of runs not begun), so starts from two processes racing on one key make
one run, and a starter killed mid-loop leaves exactly one run per key, with the data of the last
start of that key that returned (or of the one the kill cut off after its commit).

The starting processes use the real clock and a window of an hour; the engine that executes
their runs a FakeClock two hours ahead, so nothing waits for a window to pass.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from enginekit import EngineFactory
from test_debounce import Seen, burst

import treadle
from treadle import Status

STARTER = Path(__file__).parent / "workers" / "debounce_starter.py"
DEADLINE = 20.0


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Databases that several processes share."""
    name: str = request.param
    return name


@pytest.fixture
def db_url(
    backend: str,
    make_persistence: Callable[[], treadle.Persistence],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> str:
    """The URL of the database that ``make_persistence`` opens (emptied for this test)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'treadle.db'}"
    url: str = request.getfixturevalue("_pg_shared")
    return url


def spawn(db_url: str, out: Path, count: int, keys: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    log = (tmp_path / f"{out.name}.log").open("ab")
    args = [sys.executable, str(STARTER), db_url, str(out), str(count), str(keys)]
    return subprocess.Popen(args, stdout=log, stderr=log)


def returned(out: Path) -> list[tuple[int, str, str]]:
    """What each start that returned returned: (i, key, run id)."""
    if not out.exists():
        return []
    lines = [line.split("\t") for line in out.read_text().splitlines()]
    return [(int(i), key, run_id) for i, key, run_id in lines]


async def finish(procs: list[subprocess.Popen[bytes]], what: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not what():
        assert loop.time() < deadline, "the starters took too long"
        for proc in procs:
            assert proc.poll() in (None, 0), f"a starter exited with {proc.returncode}"
        await asyncio.sleep(0.02)


def ahead() -> treadle.FakeClock:
    """A clock past every window of the starters (an hour from now)."""
    return treadle.FakeClock(datetime.now(UTC) + timedelta(hours=2))


async def test_starts_from_two_processes_racing_on_one_key_make_one_run(
    make_engine: EngineFactory, db_url: str, tmp_path: Path
) -> None:
    seen = Seen()
    await make_engine(burst(seen), max_concurrent_runs=0)  # stores the definition
    outs = [tmp_path / "one.out", tmp_path / "two.out"]
    procs = [spawn(db_url, out, 40, 1, tmp_path) for out in outs]
    await finish(procs, lambda: all(p.poll() == 0 for p in procs))

    starts = [s for out in outs for s in returned(out)]
    assert len(starts) == 80
    ids = {run_id for _, _, run_id in starts}
    assert len(ids) == 1  # every start of both processes returned the one run
    worker = await make_engine(burst(seen), clock=ahead())
    await worker.settle()
    [run] = await worker.runs(workflow="burst")
    assert run.id in ids and run.status is Status.COMPLETED
    assert seen.data[run.id] == [{"i": 39}]  # the last start of one of the two
    events = [e.kind for e in await worker.history(run.id)]
    assert events.count("created") == 1 and events.count("debounced") == 79


async def test_a_starter_killed_mid_loop_leaves_one_run_per_key_with_the_last_data(
    make_engine: EngineFactory, db_url: str, tmp_path: Path
) -> None:
    seen = Seen()
    await make_engine(burst(seen), max_concurrent_runs=0)
    out = tmp_path / "loop.out"
    proc = spawn(db_url, out, 0, 5, tmp_path)
    await finish([proc], lambda: len(returned(out)) >= 60)
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)

    starts = returned(out)
    last = {key: i for i, key, _ in starts}  # the last start of each key that returned
    run_of = {key: run_id for _, key, run_id in starts}
    worker = await make_engine(burst(seen), clock=ahead())
    await worker.settle()
    runs = await worker.runs(workflow="burst")
    assert sorted(r.id for r in runs) == sorted(run_of.values())  # one run per key
    in_flight = starts[-1][0] + 1  # the start the kill may have cut off after its commit
    for run in runs:
        key = next(k for k, rid in run_of.items() if rid == run.id)
        assert run.status is Status.COMPLETED
        [data] = seen.data[run.id]  # it ran once
        assert data["i"] == last[key] or (data["i"] == in_flight and in_flight % 5 == int(key[1:]))
        assert run.labels == {"i": str(data["i"])}  # data and labels of the same start
