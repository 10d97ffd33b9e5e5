"""Runs that keep failing unexpectedly back off (11.0a); other processes' liveness (11.6)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

import treadle
from treadle._engine import owners
from treadle._interpreter import NEW_CURSOR
from treadle.persistence._base import utcnow
from treadle.persistence._records import Checkpoint, CheckpointAck, NewEvent, RunRecord


class _Flaky(treadle.SQLitePersistence):
    """Refuses the checkpoints of one run with a transient error, ``faults`` times."""

    def __init__(self, path: str, faults: int) -> None:
        super().__init__(path)
        self.faults = faults
        self.victim = ""
        self.failed_at: list[float] = []

    async def save_checkpoint(self, checkpoint: Checkpoint) -> CheckpointAck:
        if checkpoint.run_id == self.victim and len(self.failed_at) < self.faults:
            self.failed_at.append(time.monotonic())
            raise treadle.PersistenceError("the database is away (injected)")
        return await super().save_checkpoint(checkpoint)


@pytest.mark.timeout(30)
async def test_a_run_that_keeps_failing_unexpectedly_backs_off_and_completes_later(
    tmp_path: Path,
) -> None:
    calls: list[str] = []

    async def step(ctx: treadle.Context, state: treadle.State) -> None:
        calls.append(state.id)

    persistence = _Flaky(str(tmp_path / "t.db"), faults=5)
    engine = treadle.Engine(persistence, poll_interval=0.2)
    engine.register(treadle.new("w").step("s", step).build())
    async with engine:
        persistence.victim = "flaky"
        flaky = await engine.start("w", run_id="flaky")
        while len(persistence.failed_at) < 2:
            await asyncio.sleep(0.01)
        other = await engine.start("w")  # not held up by the one backing off
        assert (await engine.wait(other, timeout=5)).status is treadle.Status.COMPLETED
        assert (await engine.wait(flaky, timeout=20)).status is treadle.Status.COMPLETED
    assert calls.count("flaky") == 6  # five refused checkpoints, then the one that held
    gaps = [b - a for a, b in zip(persistence.failed_at, persistence.failed_at[1:], strict=False)]
    # 0.1 s doubling: never again at once (it used to run 70-250 times a second)
    for gap, delay in zip(gaps, [0.1, 0.2, 0.4, 0.8], strict=True):
        assert gap >= delay * 0.9


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


async def _leased_run(persistence: treadle.Persistence, run_id: str, owner: str) -> None:
    now = utcnow()
    record = RunRecord(
        id=run_id,
        workflow="w",
        definition_id=_workflow().id,
        status=treadle.Status.RUNNING,
        data="{}",
        cursor=NEW_CURSOR,
        created_at=now,
        updated_at=now,
        owner=owner,
        lease_until=now + timedelta(hours=1),
        token=1,
    )
    await persistence.create_run(record, NewEvent("created"))


async def _noop(ctx: treadle.Context, state: treadle.State) -> None:
    pass


def _workflow() -> treadle.Workflow:
    return treadle.new("w").step("s", _noop).build()


def test_an_engine_owner_names_host_pid_boot_and_pid_namespace() -> None:
    host, pid, boot, namespace, _ = treadle.Engine().owner.split(":")
    assert (host, pid) == (socket.gethostname(), str(__import__("os").getpid()))
    assert boot == owners._boot_id() and namespace == owners._pid_namespace()
    if Path("/proc/self/ns/pid").exists():
        assert namespace.isdigit() and boot != owners.UNKNOWN


async def test_only_dead_owners_of_this_pid_namespace_are_reaped(
    make_persistence: Callable[[], treadle.Persistence],
) -> None:
    host, pid = socket.gethostname(), _dead_pid()
    boot, namespace = owners._boot_id(), owners._pid_namespace()
    here = f"{host}:{pid}:{boot}:{namespace}:dead0001"
    elsewhere = f"{host}:{pid}:{boot}:4026531999{namespace}:live0001"  # another container
    old_format = f"{host}:{pid}:old00001"
    setup = make_persistence()
    await setup.open()
    for run_id, owner in [("here", here), ("elsewhere", elsewhere), ("old", old_format)]:
        await _leased_run(setup, run_id, owner)
    await setup.close()
    engine = treadle.Engine(make_persistence(), poll_interval=0.2)
    engine.register(_workflow())
    async with engine:
        assert (await engine.wait("here", timeout=5)).status is treadle.Status.COMPLETED
        await engine.settle()  # a claim round after the reaper found nothing more to take
        for run_id in ("elsewhere", "old"):
            record = await engine.persistence.get_run(run_id)
            assert record is not None and record.status is treadle.Status.RUNNING
            assert record.owner in (elsewhere, old_format)
