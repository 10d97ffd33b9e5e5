"""``treadle worker --processes N``: N worker processes share the runs; one killed with SIGKILL
is started again and its runs are finished; SIGTERM stops them all."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import treadle
from treadle import Status

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 30.0

APP = """
import os, time
import treadle

LOG = os.environ["EFFECTS"]


def work(ctx, state):
    with open(LOG, "a") as f:
        f.write(f"{os.getpid()} {ctx.run_id} {ctx.step} start\\n")
    time.sleep(0.05)
    with open(LOG, "a") as f:
        f.write(f"{os.getpid()} {ctx.run_id} {ctx.step} end\\n")


job = treadle.new("job").step("a", work).step("b", work).step("c", work).build()
"""

ENGINE_APP = """
import os
import treadle
from jobapp import job

engine = treadle.Engine(treadle.SQLitePersistence(os.environ["ENGINE_DB"]))
engine.register(job)
"""


def eventually(check: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``deadline``."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Supervisor:
    """One ``treadle worker --processes 2`` process and what its workers did."""

    def __init__(self, tmp_path: Path, app: str = "jobapp:job") -> None:
        """``app``: what the worker runs; ``engineapp:engine`` names an Engine on the
        database, so no --db is given."""
        (tmp_path / "jobapp.py").write_text(APP)
        (tmp_path / "engineapp.py").write_text(ENGINE_APP)
        self.effects = tmp_path / "effects.log"
        self.log = tmp_path / "supervisor.log"
        self.db = f"sqlite:///{tmp_path / 'runs.db'}"
        env = {key: value for key, value in os.environ.items() if not key.startswith("TREADLE_")}
        env.update(
            PYTHONPATH=os.pathsep.join(
                [str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]
            ),
            EFFECTS=str(self.effects),
            ENGINE_DB=str(tmp_path / "runs.db"),
        )
        db = ["--db", self.db] if app == "jobapp:job" else []
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "treadle", "worker", app, *db,
                    "--processes", "2", "--concurrency", "4", "--lease", "2", "--drain", "1",
                ],
                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def lines(self) -> list[tuple[int, str, str, str]]:
        if not self.effects.exists():
            return []
        out = []
        for line in self.effects.read_text().splitlines():
            pid, run, step, phase = line.split()
            out.append((int(pid), run, step, phase))
        return out

    def ready(self, count: int) -> None:
        def started() -> bool:
            assert self.proc.poll() is None, self.output()
            return self.output().count(" ready: workflows job") >= count

        eventually(started, f"{count} worker processes ready")

    def workers(self) -> set[int]:
        """The pids of the supervisor's worker processes alive now."""
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid and fields[0] != "Z":
                found.add(int(stat.parent.name))
        return found

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    sup = Supervisor(tmp_path)
    try:
        yield sup
    finally:
        sup.close()


def _completed(client: treadle.SyncClient, ids: list[str]) -> bool:
    return all(client.status(i).status is Status.COMPLETED for i in ids)


def test_the_processes_share_the_runs_and_sigterm_stops_them_all(supervisor: Supervisor) -> None:
    supervisor.ready(2)
    with treadle.SyncClient(supervisor.db, poll_interval=0.05) as client:
        ids = [client.start("job", {}) for _ in range(24)]
        eventually(lambda: _completed(client, ids), "every run completed")
    by_pid = collections.Counter(pid for pid, _, _, phase in supervisor.lines() if phase == "end")
    assert len(by_pid) == 2, by_pid  # both processes executed steps
    ends = collections.Counter(
        (run, step) for _, run, step, phase in supervisor.lines() if phase == "end"
    )
    assert set(ends.values()) == {1} and len(ends) == 24 * 3  # every step exactly once
    supervisor.proc.send_signal(signal.SIGTERM)
    assert supervisor.proc.wait(DEADLINE) == 0, supervisor.output()
    assert supervisor.output().count("stopped (") == 2  # each worker drained and said so


def test_a_worker_killed_mid_step_is_started_again_and_its_runs_finish(
    supervisor: Supervisor,
) -> None:
    supervisor.ready(2)
    with treadle.SyncClient(supervisor.db, poll_interval=0.05) as client:
        ids = [client.start("job", {}) for _ in range(16)]
        # Kill a worker process while it is inside a step.
        victim = eventually(
            lambda: next(
                (pid for pid, _, _, phase in supervisor.lines() if phase == "start"), None
            ),
            "a step started",
        )
        os.kill(victim, signal.SIGKILL)
        supervisor.ready(3)  # the supervisor started a new one
        assert "ended with status -9" in supervisor.output()
        eventually(lambda: _completed(client, ids), "every run completed")
    # The supervisor killed too (it cannot pass SIGKILL on): its workers notice and stop.
    orphans = supervisor.workers()
    assert len(orphans) == 2
    supervisor.proc.kill()
    supervisor.proc.wait(10)
    eventually(lambda: not any(Path(f"/proc/{pid}").exists() for pid in orphans), "no orphan")
    lines = supervisor.lines()
    ends = collections.Counter((run, step) for _, run, step, phase in lines if phase == "end")
    assert len(ends) == 16 * 3
    # Only steps the killed process was inside may have run again.
    again = {key for key, n in ends.items() if n > 1}
    killed_inside = {(run, step) for pid, run, step, phase in lines if pid == victim}
    assert again <= killed_inside


def test_the_processes_of_an_app_that_names_an_engine_use_its_database(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path, app="engineapp:engine")
    try:
        supervisor.ready(2)
        with treadle.SyncClient(supervisor.db, poll_interval=0.05) as client:
            ids = [client.start("job", {}) for _ in range(4)]
            eventually(lambda: _completed(client, ids), "every run completed")
        supervisor.proc.send_signal(signal.SIGTERM)
        assert supervisor.proc.wait(DEADLINE) == 0, supervisor.output()
    finally:
        supervisor.close()


def test_each_worker_process_serves_runs_whatever_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    import treadle.cli._worker as worker_cli
    from treadle.cli import cli

    commands: list[list[str]] = []
    served: list[object] = []
    monkeypatch.setattr(worker_cli, "supervise", lambda cmds, drain: commands.extend(cmds) or 0)
    monkeypatch.setattr(worker_cli, "run", lambda *args, **kwargs: served.append(args))
    (tmp_path / "jobapp.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("EFFECTS", str(tmp_path / "effects.log"))
    env = {"TREADLE_WORKER_PROCESSES": "2"}  # inherited by every process the supervisor starts
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    result = CliRunner().invoke(cli, ["worker", "jobapp:job", "--db", db], env=env)
    assert result.exit_code == 0, result.output
    assert len(commands) == 2 and not served
    for command in list(commands):  # each as the process started with it would run it
        result = CliRunner().invoke(cli, command[command.index("treadle") + 1 :], env=env)
        assert result.exit_code == 0, result.output
    assert len(commands) == 2 and len(served) == 2  # they serve; none supervises more of them
