"""Whose leases the reaper may take: only those of a dead process in this very pid namespace of
this boot of this host (issue: containers with one host name and separate pid namespaces)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest

import treadle
from treadle._engine import owners
from treadle._interpreter import cursor
from treadle.persistence._records import NewEvent, RunRecord


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # ended and reaped: no process has it (until the pid is reused)


def _owner_like_mine(pid: int, *, namespace: str | None = None, boot: str | None = None) -> str:
    host, pid_text, my_boot, my_namespace, _ = owners.new_owner().split(":")
    assert pid_text == str(os.getpid())
    return f"{host}:{pid}:{boot or my_boot}:{namespace or my_namespace}:deadbeef"


def test_an_owner_is_host_pid_boot_namespace_and_a_nonce() -> None:
    _host, pid, boot, namespace, nonce = owners.new_owner().split(":")
    assert pid == str(os.getpid()) and boot and namespace and len(nonce) == 8
    if os.path.exists("/proc/self/ns/pid"):
        assert namespace == str(os.stat("/proc/self/ns/pid").st_ino)


def test_a_dead_pid_of_this_namespace_is_dead_and_a_live_one_is_not() -> None:
    assert owners.known_dead(_owner_like_mine(_dead_pid()))
    assert not owners.known_dead(_owner_like_mine(os.getpid()))


@pytest.mark.parametrize("where", ["namespace", "boot"])
def test_a_dead_looking_pid_of_another_namespace_or_boot_is_not_judged(where: str) -> None:
    other = {where: "4026531999" if where == "namespace" else "another-boot"}
    assert not owners.known_dead(_owner_like_mine(_dead_pid(), **other))


def test_owners_in_the_older_form_are_left_to_their_lease() -> None:
    host = owners.new_owner().split(":")[0]
    assert not owners.known_dead(f"{host}:{_dead_pid()}:abcdef12")


async def test_the_reaper_leaves_a_foreign_namespace_run_and_takes_a_dead_local_one() -> None:
    persistence = treadle.MemoryPersistence()
    wf = treadle.new("owned").step("x", lambda ctx, state: None).build()
    engine = treadle.Engine(persistence, lease=600)
    engine.register(wf)
    async with engine:
        foreign = _owner_like_mine(_dead_pid(), namespace="4026531999")
        local = _owner_like_mine(_dead_pid())
        now = engine.clock.now()
        for run_id, owner in (("foreign-1", foreign), ("local-1", local)):
            await persistence.create_run(
                RunRecord(
                    id=run_id,
                    workflow="owned",
                    definition_id=wf.id,
                    status=treadle.Status.RUNNING,
                    data="{}",
                    cursor=cursor.NEW,
                    created_at=now,
                    updated_at=now,
                    owner=owner,
                    lease_until=now + timedelta(seconds=600),
                    token=1,
                ),
                NewEvent("created"),
            )
        await engine._executor._reap_dead_owners()  # as the heartbeat does
        # The local dead owner's run is released and executed here at once ...
        assert (await engine.wait("local-1", timeout=10)).status is treadle.Status.COMPLETED
        await engine.settle()
        # ... the foreign one's lease is honoured: it may be a live engine in another container.
        record = await persistence.get_run("foreign-1")
        assert record is not None and record.owner == foreign
        assert record.status is treadle.Status.RUNNING
