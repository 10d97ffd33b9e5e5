"""The CLI uses the engine it is given: ``--app``/``worker`` naming an Engine work on that
engine's database; run ids given to the CLI follow the id rule; usage errors exit 2."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_cli import _cli_env, fails, invoke, ok

APP_SOURCE = """
import treadle

quick = treadle.new("quick").step("charge", lambda ctx, state: {{"ok": True}}).build()
engine = treadle.Engine(treadle.SQLitePersistence({path!r}))
engine.register(quick)
flows = [quick]
"""


@dataclass(frozen=True)
class UserApp:
    """A user's module in its own directory, whose Engine keeps runs in ``engine_db``."""

    module: str
    directory: Path
    engine_db: Path

    def runs(self, path: Path | None = None) -> list[tuple[str, str]]:
        with sqlite3.connect(path or self.engine_db) as conn:
            return conn.execute("SELECT id, status FROM runs ORDER BY id").fetchall()


@pytest.fixture
def user_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> UserApp:
    for name in list(os.environ):
        if _cli_env(name):
            monkeypatch.delenv(name)
    module = f"shop_{uuid.uuid4().hex[:8]}"
    directory = tmp_path / "app"
    directory.mkdir()
    engine_db = tmp_path / "engine.db"
    (directory / f"{module}.py").write_text(APP_SOURCE.format(path=str(engine_db)))
    monkeypatch.syspath_prepend(str(directory))
    monkeypatch.chdir(directory)  # where the default database, treadle.db, would be made
    return UserApp(module, directory, engine_db)


def test_start_with_an_engine_app_stores_the_run_in_that_engines_database(
    user_app: UserApp, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="treadle.cli"):
        run_id = ok("start", "quick", "--app", f"{user_app.module}:engine").strip()
    assert user_app.runs() == [(run_id, "pending")]
    assert not (user_app.directory / "treadle.db").exists()
    assert f"from the Engine in {user_app.module}:engine" in caplog.text


def test_db_naming_the_engines_database_as_well_is_accepted(user_app: UserApp) -> None:
    relative = os.path.relpath(user_app.engine_db, user_app.directory)
    app = f"{user_app.module}:engine"
    run_id = ok("start", "quick", "--app", app, "--db", f"sqlite:///{relative}").strip()
    assert user_app.runs() == [(run_id, "pending")]


def test_db_naming_another_database_than_the_engines_is_an_error_naming_both(
    user_app: UserApp, tmp_path: Path
) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    app = f"{user_app.module}:engine"
    for line in [
        fails("start", "quick", "--app", app, "--db", other),
        fails("start", "quick", "--app", app, env={"TREADLE_DB": other}),
        fails("worker", app, "--db", other),
    ]:
        assert other in line and str(user_app.engine_db) in line, line
    assert not (tmp_path / "other.db").exists() and not user_app.engine_db.exists()


def test_a_workflow_collection_without_db_uses_the_default_and_says_so(
    user_app: UserApp, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="treadle.cli"):
        run_id = ok("start", "quick", "--app", f"{user_app.module}:flows").strip()
    assert user_app.runs(user_app.directory / "treadle.db") == [(run_id, "pending")]
    assert "sqlite:///treadle.db: the default" in caplog.text
    assert f"{user_app.module}:flows names no Engine" in caplog.text


def _wait_for_runs(app: UserApp, expected: list[tuple[str, str]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while (found := app.runs() if app.engine_db.exists() else []) != expected:
        assert time.monotonic() < deadline, f"runs: {found!r}, expected {expected!r}"
        time.sleep(0.05)


@pytest.fixture
def worker(user_app: UserApp) -> Iterator[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if not _cli_env(k)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "treadle", "worker", f"{user_app.module}:engine", "--drain", "0"],
        cwd=user_app.directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_worker_on_an_engine_executes_the_runs_of_that_engines_database(
    user_app: UserApp, worker: subprocess.Popen[str]
) -> None:
    run_id = ok("start", "quick", "--app", f"{user_app.module}:engine", "--run-id", "r-1").strip()
    _wait_for_runs(user_app, [(run_id, "completed")])
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=20)
    assert worker.returncode == 0, stderr
    assert f"database sqlite:///{user_app.engine_db}, from the Engine in {user_app.module}" in (
        stderr
    )
    assert not (user_app.directory / "treadle.db").exists()


@pytest.mark.parametrize("bad", ["a b", "a/b", "x" * 10_000, ""])
def test_run_ids_given_to_the_cli_follow_the_id_rule_as_usage_errors(
    user_app: UserApp, bad: str
) -> None:
    app = f"{user_app.module}:engine"
    for args in [("start", "quick", "--app", app, "--run-id", bad), ("status", bad)]:
        line = fails(*args, code=2)
        assert "invalid run id" in line and "letters, digits and '._:@-'" in line, line
    assert not user_app.engine_db.exists()


def test_usage_errors_exit_2_as_the_readme_says(user_app: UserApp) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert "usage error (a missing argument, a bad option) exits with 2" in readme
    assert invoke("status").exit_code == 2
    assert invoke("runs", "--limit", "zero").exit_code == 2
    assert invoke("status", "nope", "--db", f"sqlite:///{user_app.engine_db}").exit_code == 1


def test_the_demo_ends_with_commands_as_the_readme_set_up_runs_them(tmp_path: Path) -> None:
    out = ok("demo", "--db", f"sqlite:///{tmp_path / 'demo.db'}")
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert "installs treadle into .venv" in readme
    assert "\n  .venv/bin/treadle runs --workflow demo-order --db " in out
    assert "\n  .venv/bin/treadle history " in out
