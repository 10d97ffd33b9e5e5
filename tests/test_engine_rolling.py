"""Rolling deployments under damage: worker processes (tests/workers/rolling_worker.py) hold
different definitions of one workflow, and are SIGKILLed while they execute a run pinned to
theirs, while they retry a held step, and while they migrate runs onto another definition.

Every step execution leaves one line ``run, step, version, pid, phase`` in an effects file, so
the tests tell exactly which process executed what, and how often.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pgserver import fresh_pg_dsn  # noqa: F401  (fixture)

import treadle
from treadle import Status

WORKER = Path(__file__).parent / "workers" / "rolling_worker.py"
sys.path.insert(0, str(WORKER.parent))
import rolling_worker  # noqa: E402

DEADLINE = 20.0


@dataclass(frozen=True)
class Effect:
    """One line of the effects file."""

    run_id: str
    step: str
    version: str
    pid: int
    phase: str


class Cluster:
    """Starts and kills worker processes on one store; reads what their steps did."""

    def __init__(self, store: str, tmp_path: Path) -> None:
        self.store = store
        self.effects_path = tmp_path / "effects.tsv"
        self.effects_path.touch()
        self.log_path = tmp_path / "workers.log"
        self.procs: list[subprocess.Popen[str]] = []

    def marker(self, name: str) -> Path:
        """A marker file that steers the steps (see the worker's doc)."""
        return Path(f"{self.effects_path}.{name}")

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """Start a worker process with ``args`` and wait for its ``ready``."""
        with self.log_path.open("a") as log:
            proc = subprocess.Popen(
                [sys.executable, str(WORKER), self.store, str(self.effects_path), *args],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("ready"):
            self.fail(f"worker {args} did not start: {line!r}")
        return proc

    def kill(self, proc: subprocess.Popen[str]) -> None:
        """SIGKILL a worker and reap it."""
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)

    def effects(self, run_id: str | None = None) -> list[Effect]:
        """The step lines so far (of one run)."""
        out = []
        for line in self.effects_path.read_text().splitlines():
            if line.startswith(("before ", "after ")):
                continue
            rid, step, version, pid, phase = line.split("\t")
            if run_id is None or rid == run_id:
                out.append(Effect(rid, step, version, int(pid), phase))
        return out

    def count(self, run_id: str, step: str, phase: str = "do") -> int:
        """How often ``step`` of ``run_id`` wrote ``phase``."""
        return sum(1 for e in self.effects(run_id) if e.step == step and e.phase == phase)

    async def until(self, predicate: Callable[[], Awaitable[bool] | bool], what: str) -> None:
        """Poll ``predicate`` until it holds, or fail with the workers' log."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while True:
            result = predicate()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            if loop.time() > deadline:
                self.fail(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    def fail(self, message: str) -> None:
        log = self.log_path.read_text() if self.log_path.exists() else ""
        effects = self.effects_path.read_text()
        pytest.fail(f"{message}\n--- effects ---\n{effects}\n--- workers' log ---\n{log}")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def sqlite_cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(str(tmp_path / "runs.db"), tmp_path)
    yield cluster
    cluster.stop_all()


@pytest.fixture
def pg_cluster(fresh_pg_dsn: str, tmp_path: Path) -> Iterator[Cluster]:  # noqa: F811
    cluster = Cluster(fresh_pg_dsn, tmp_path)
    yield cluster
    cluster.stop_all()


def client(cluster: Cluster, *workflows: treadle.Workflow) -> treadle.Engine:
    """A control-only engine on the cluster's store (it starts, signals and reads runs)."""
    engine = treadle.Engine(rolling_worker.persistence(cluster.store), max_concurrent_runs=0)
    engine.register(*workflows)
    return engine


async def statuses(engine: treadle.Engine, ids: list[str]) -> dict[str, treadle.State]:
    return {run_id: await engine.status(run_id) for run_id in ids}


# 1. Two versions side by side ---------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_each_worker_executes_only_the_runs_of_its_definition_and_a_dead_ones_runs_wait(
    pg_cluster: Cluster,
) -> None:
    cluster = pg_cluster
    v1 = rolling_worker.order("1", str(cluster.effects_path))
    v2 = rolling_worker.order("2", str(cluster.effects_path))
    assert v1.id != v2.id
    w1 = cluster.spawn("--version", "1")
    w2 = cluster.spawn("--version", "2")
    pids = {"1": {w1.pid}, "2": {w2.pid}}
    async with client(cluster, v1, v2) as engine:
        old = [await engine.start("order", {"n": n}, version="1") for n in range(3)]
        blocker = await engine.start("order", {"block": True}, version="1")
        old.append(blocker)
        new = [await engine.start("order", {"n": n}, version="2") for n in range(3)]

        async def parked() -> bool:
            states = await statuses(engine, old + new)
            return all(
                s.status is Status.WAITING and s.waiting_for == ["signal:go"]
                for s in states.values()
            )

        await cluster.until(parked, "every run parked at go")
        for run_id, state in (await statuses(engine, old + new)).items():
            expected = (v1.id, "1") if run_id in old else (v2.id, "2")
            assert (state.definition_id, state.version) == expected

        # Signals are checked against the run's own definition: only v2 awaits "confirm".
        with pytest.raises(treadle.UnknownSignal):
            await engine.signal(old[0], "confirm")
        async with client(cluster) as bare:  # knows no definition: reads the stored ones
            with pytest.raises(treadle.UnknownSignal):
                await bare.signal(old[1], "confirm")
            with pytest.raises(treadle.UnknownSignal):
                await bare.signal(new[0], "nope")
        for run_id in new:
            await engine.signal(run_id, "confirm")  # kept until the run reaches it
            await engine.signal(run_id, "go")
        await engine.signal(old[0], "go")
        for run_id in [old[0], *new]:
            final = await engine.wait(run_id, timeout=DEADLINE)
            assert final.status is Status.COMPLETED, final

        # Kill the v1 worker inside step b of a v1 run.
        cluster.marker("gate").touch()
        await engine.signal(blocker, "go")
        await cluster.until(lambda: cluster.count(blocker, "b", "started") == 1, "b in flight")
        cluster.kill(w1)
        for run_id in old[1:3]:
            await engine.signal(run_id, "go")

        orphans = old[1:]
        waits_for_v1 = [f"worker:{v1.id}"]

        async def waiting_for_a_v1_worker() -> bool:
            states = await statuses(engine, orphans)
            return all(s.waiting_for == waits_for_v1 for s in states.values())

        # The v2 worker reaps the dead worker's lease, but leaves the run to a v1 worker.
        await cluster.until(waiting_for_a_v1_worker, "v1 runs waiting for a v1 worker")
        # The v2 worker goes on claiming meanwhile: a v2 run started after runs through ...
        later = await engine.start("order", {"n": 9}, version="2")
        await engine.signal(later, "go")
        await engine.signal(later, "confirm")
        assert (await engine.wait(later, timeout=DEADLINE)).status is Status.COMPLETED
        # ... and the v1 runs still wait, none failed, none executed by it.
        for state in (await statuses(engine, orphans)).values():
            assert state.status in (Status.PENDING, Status.RUNNING), state
            assert state.waiting_for == waits_for_v1, state
            assert state.error is None

        cluster.marker("gate").unlink()
        w1_again = cluster.spawn("--version", "1")
        pids["1"].add(w1_again.pid)
        finals = {}
        for run_id in old:
            finals[run_id] = await engine.wait(run_id, timeout=DEADLINE)
        for run_id in [*new, later]:
            finals[run_id] = await engine.status(run_id)

    for run_id, final in finals.items():
        version = "1" if run_id in old else "2"
        assert final.status is Status.COMPLETED, final
        steps = {"a", "b"} if version == "1" else {"a", "check", "b"}
        assert {k for k in final.data if k in {"a", "check", "b"}} == steps
        for step in steps:
            label, pid = final.data[step].split(":")
            assert label == version and int(pid) in pids[version], (run_id, step, final.data)
        for e in cluster.effects(run_id):
            assert e.version == version and e.pid in pids[version], e
    # The step in flight at the kill ran once more, in the new v1 worker.
    assert cluster.count(blocker, "b", "started") == 2
    assert [e.pid for e in cluster.effects(blocker) if e.phase == "do" and e.step == "b"] == [
        w1_again.pid
    ]
    assert finals[blocker].data["b"] == f"1:{w1_again.pid}"


# 2. A kill during a retry ----------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_a_worker_killed_inside_a_retried_step_leaves_the_run_to_the_next_worker(
    sqlite_cluster: Cluster,
) -> None:
    cluster = sqlite_cluster
    repair = rolling_worker.repair(str(cluster.effects_path))
    cluster.marker("fail").touch()
    first = cluster.spawn()
    async with client(cluster, repair) as engine:
        run_id = await engine.start("repair")

        async def held() -> bool:
            return (await engine.status(run_id)).status is Status.HELD

        await cluster.until(held, "the run held at charge")
        state = await engine.status(run_id)
        assert state.waiting_for == ["held:charge"]
        assert state.error is not None and "the card is declined" in state.error

    cluster.marker("fail").unlink()
    cluster.marker("block").touch()
    async with client(cluster, repair) as operator:  # a fresh engine decides
        await operator.retry(run_id, by="ops")
    await cluster.until(lambda: cluster.count(run_id, "charge", "started") == 1, "retry in flight")
    cluster.kill(first)
    assert cluster.count(run_id, "prep") == 1
    assert cluster.count(run_id, "charge", "start") == 2
    assert cluster.count(run_id, "charge") == 0
    async with client(cluster, repair) as engine:  # it releases the dead worker's lease
        state = await engine.status(run_id)
        # The retry was taken: the run is no longer held, it waits for a worker to go on.
        assert state.status in (Status.PENDING, Status.RUNNING), state
        assert state.waiting_for == [f"worker:{repair.id}"], state
        with pytest.raises(treadle.InvalidTransition):
            await engine.retry(run_id)

    cluster.marker("block").unlink()
    second = cluster.spawn()
    async with client(cluster, repair) as engine:
        final = await engine.wait(run_id, timeout=DEADLINE)
        history = [e.kind for e in await engine.history(run_id)]
    assert final.status is Status.COMPLETED, (final, history)
    assert final.error is None
    assert history.count("run_retried") == 1
    assert cluster.count(run_id, "prep") == 1, "the step before the retried one ran again"
    assert cluster.count(run_id, "charge") == 1
    assert cluster.count(run_id, "ship") == 1
    assert cluster.count(run_id, "charge", "start") == 3  # failed, killed, completed
    assert final.data["charge"] == final.data["ship"] == f"r:{second.pid}"
    assert final.data["prep"] == f"r:{first.pid}"


# 3. A kill during a migration ---------------------------------------------------------------

MIGRATED_RUNS = 150


@pytest.mark.timeout(90)
async def test_a_migration_killed_partway_leaves_every_run_wholly_on_one_definition(
    sqlite_cluster: Cluster,
) -> None:
    cluster = sqlite_cluster
    v1 = rolling_worker.order("1", str(cluster.effects_path))
    v2 = rolling_worker.order("2", str(cluster.effects_path))
    store = rolling_worker.persistence
    starter = treadle.Engine(store(cluster.store), poll_interval=0.05)
    starter.register(v1)
    async with starter:
        ids = [await starter.start("order", {"n": n}) for n in range(MIGRATED_RUNS)]
        await starter.settle()
        for state in (await statuses(starter, ids)).values():
            assert state.status is Status.WAITING and state.waiting_for == ["signal:go"]

    def moves() -> tuple[list[str], list[str]]:
        before, after = [], []
        for line in cluster.effects_path.read_text().splitlines():
            word, _, run_id = line.partition(" ")
            if word in ("before", "after"):
                (before if word == "before" else after).append(run_id)
        return before, after

    mover = cluster.spawn("--migrate-to", "2")
    await cluster.until(lambda: len(moves()[1]) >= 20, "20 runs moved")
    cluster.kill(mover)
    before, after = moves()
    assert len(after) < MIGRATED_RUNS, "the migration ended before the kill"
    in_flight = [run_id for run_id in before if run_id not in after]

    async with client(cluster, v1, v2) as engine:
        states = await statuses(engine, ids)
        on = {run_id: s.version for run_id, s in states.items()}
        for state in states.values():
            assert (state.definition_id, state.version) in ((v1.id, "1"), (v2.id, "2")), state
            assert state.status is Status.WAITING and state.waiting_for == ["signal:go"], state
        assert set(after) <= {r for r, v in on.items() if v == "2"}
        assert len(await engine.runs(workflow="order", limit=1000)) == MIGRATED_RUNS
        still_old = [r for r, v in on.items() if v == "1"]
        assert still_old, "every run moved before the kill"

        # A sample of each side (and the run in flight at the kill) completes on its own steps.
        sample = list(dict.fromkeys([*in_flight, *after[:3], *still_old[:3]]))
        worker = treadle.Engine(store(cluster.store), poll_interval=0.05)
        worker.register(v1, v2)
        async with worker:
            for run_id in sample:
                await worker.signal(run_id, "go")
                if on[run_id] == "2":
                    await worker.signal(run_id, "confirm")
            done = {run_id: await worker.wait(run_id, timeout=DEADLINE) for run_id in sample}
        for run_id, final in done.items():
            assert final.status is Status.COMPLETED, final
            steps = {"a", "b"} if on[run_id] == "1" else {"a", "check", "b"}
            assert set(final.data) & {"a", "check", "b"} == steps, (on[run_id], final.data)
            assert final.data["a"].startswith("1:")
            assert all(final.data[s].startswith(f"{on[run_id]}:") for s in steps - {"a"})

        # Running the migration again moves the rest, and only them.
        rest = sorted(r for r in still_old if r not in sample)
        plans = await engine.migrate_runs("order", to="2")
        assert sorted(p.run_id for p in plans if p.moved) == rest
        assert all(p.moved for p in plans), [p for p in plans if not p.moved]
        for state in (await statuses(engine, ids)).values():
            if state.id not in sample:
                assert (state.definition_id, state.version) == (v2.id, "2"), state
        assert len(await engine.runs(workflow="order", limit=1000)) == MIGRATED_RUNS
