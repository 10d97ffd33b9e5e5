"""The ``treadle`` command line: every command, its errors, JSON output, environment variables,
the demo, and a worker process that executes runs and drains on SIGTERM."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import treadle
from treadle.cli import cli
from treadle.cli._worker import LOG_FORMAT, _RunIdFilter

APP_MODULE = "cli_shop"
APP_SOURCE = """
import asyncio

import treadle


def charge(ctx, state):
    state.data["charged"] = True


def refund(ctx, state):
    state.data["refunded"] = True


async def slow(ctx, state):
    await asyncio.sleep(float(state.data.get("sleep", 0)))


order = (
    treadle.new("order")
    .step("charge", charge, compensate=refund)
    .step("slow", slow)
    .await_signal("payment")
    .await_approval("manager", ["alice"])
    .build()
)
quick = treadle.new("quick").step("charge", charge).build()
workflows = [order, quick]
by_name = {"order": order, "quick": quick}
engine = treadle.Engine()
engine.register(order)
engine.register(quick)
not_a_workflow = 42
nothing = []
"""


# Fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the user's module ``cli_shop`` (workflows ``order`` and ``quick``)."""
    path = tmp_path_factory.mktemp("app")
    (path / f"{APP_MODULE}.py").write_text(APP_SOURCE)
    return path


def _cli_env(name: str) -> bool:
    """Whether an environment variable is one the CLI reads (the test suite has its own)."""
    return name.startswith("TREADLE_") and not name.startswith(("TREADLE_TEST_", "TREADLE_REQ"))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if _cli_env(name):
            monkeypatch.delenv(name)


@pytest.fixture
def shop(app_dir: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The app module, importable (and imported) in this process."""
    monkeypatch.syspath_prepend(str(app_dir))
    return importlib.import_module(APP_MODULE)


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A fresh SQLite database URL (the file is created by the first command that writes)."""
    return f"sqlite:///{tmp_path / 'runs.db'}"


def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    """Run the CLI in this process; a crash (a traceback) fails the test at once."""
    result = CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def ok(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> str:
    """Run the CLI, expect success, return stdout."""
    result = invoke(*args, env=env, input=input)
    assert result.exit_code == 0, result.output
    return result.stdout


def fails(*args: str, code: int = 1, env: dict[str, str] | None = None) -> str:
    """Run the CLI, expect exit ``code`` and one ``Error:`` line on stderr; return that line."""
    result = invoke(*args, env=env)
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def db_path(url: str) -> str:
    return url[len("sqlite:///") :]


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path(url)) as conn:
        return conn.execute(sql).fetchall()


def waiting_run(url: str, shop: types.ModuleType, data: dict[str, Any] | None = None) -> str:
    """A run of ``order`` that an engine in this process took to its payment signal."""

    async def go() -> str:
        engine = treadle.Engine(treadle.persistence_from_url(url), poll_interval=0.1)
        engine.register(shop.order)
        async with engine:
            run_id = await engine.start("order", data or {})
            for _ in range(500):
                state = await engine.status(run_id)
                if state.waiting_for == ["signal:payment"]:
                    return run_id
                await asyncio.sleep(0.01)
        raise AssertionError("the run did not reach its signal")

    return asyncio.run(go())


def status_of(url: str, run_id: str) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(ok("status", run_id, "--db", url, "--json"))
    return state


def events_of(url: str, run_id: str) -> list[str]:
    return [e["kind"] for e in json.loads(ok("history", run_id, "--db", url, "--json"))]


# The demo -------------------------------------------------------------------------------------


def test_demo_tells_the_saga_and_compensates_in_reverse_order(db: str) -> None:
    out = ok("demo", "--db", db)
    assert "order saga" in out
    assert "-> alice approves 'manager'" in out
    assert "mallory tries to approve: refused" in out
    assert "timed out (attempt 1)" in out and "texted Ada (attempt 2)" in out
    assert "== completed" in out
    recall = out.index("undo: recalled the shipment of 'notebook'")
    refund = out.index("undo: refunded 89.90 EUR")
    release = out.index("undo: released the stock of 2 items")
    assert recall < refund < release
    assert "== failed: step 'ship-item' failed" in out
    assert "Timelines" in out and "compensated reserve-stock" in out
    statuses = sorted(r[0] for r in rows(db, "SELECT status FROM runs"))
    assert statuses == ["completed", "failed"]


def test_python_dash_m_treadle_runs_the_demo_on_treadle_db_by_default(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "treadle", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not _cli_env(k)},
    )
    assert done.returncode == 0, done.stderr
    assert "undo: refunded" in done.stdout
    assert (tmp_path / "treadle.db").exists()


# start and --app ------------------------------------------------------------------------------


def test_start_without_app_uses_the_definition_a_worker_stored(
    db: str, shop: types.ModuleType
) -> None:
    line = fails("start", "order", "--db", db)  # nothing has run there yet
    assert "no database" in line
    ok("start", "order", "--app", APP_MODULE + ":order", "--db", db)  # stores the definition
    run_id = ok("start", "order", "--db", db, "--data", '{"n": 1}').strip()  # no step code
    state = status_of(db, run_id)
    assert state["status"] == "pending" and state["data"] == {"n": 1}
    assert state["definition_id"] == shop.order.id
    line = fails("start", "unknown", "--db", db)
    assert "'unknown' is not registered" in line and "--app MODULE:ATTR" in line


# An Engine's own database is the one to use (tests/test_cli_app.py); cli_shop's is in memory.
@pytest.mark.parametrize("app", [":workflows", ":by_name", ":order", ""])
def test_start_with_app_leaves_the_run_pending_for_a_worker(
    db: str, shop: types.ModuleType, app: str
) -> None:
    run_id = ok("start", "order", "--app", APP_MODULE + app, "--db", db).strip()
    state = status_of(db, run_id)
    assert state["status"] == "pending" and state["data"] == {}
    assert rows(db, "SELECT owner FROM runs") == [(None,)]  # nobody claimed it: a worker will


def test_start_takes_data_run_id_and_is_idempotent(db: str, shop: types.ModuleType) -> None:
    app = f"{APP_MODULE}:workflows"
    out = ok("start", "quick", "--app", app, "--db", db, "--data", '{"n": 1}', "--run-id", "r-1")
    assert out.strip() == "r-1"
    again = json.loads(
        ok(
            "start",
            "quick",
            "--app",
            app,
            "--db",
            db,
            "--data",
            '{"n":1}',
            "--run-id",
            "r-1",
            "--json",
        )
    )
    assert again["id"] == "r-1" and again["workflow"] == "quick" and "run_id" not in again
    assert again == status_of(db, "r-1")  # one shape, one name for the id
    assert again["data"] == {"n": 1}
    assert rows(db, "SELECT count(*) FROM runs") == [(1,)]
    other = fails("start", "quick", "--app", app, "--db", db, "--run-id", "r-1")
    assert "'r-1' exists already with other data" in other


def test_start_reads_data_from_a_file_and_from_stdin(
    db: str, shop: types.ModuleType, tmp_path: Path
) -> None:
    app = f"{APP_MODULE}:workflows"
    (tmp_path / "data.json").write_text('{"from": "file"}')
    a = ok("start", "quick", "--app", app, "--db", db, "--data", f"@{tmp_path / 'data.json'}")
    b = ok("start", "quick", "--app", app, "--db", db, "--data", "-", input='{"from": "stdin"}')
    assert status_of(db, a.strip())["data"] == {"from": "file"}
    assert status_of(db, b.strip())["data"] == {"from": "stdin"}


def test_start_rejects_bad_data_as_a_usage_error(db: str, shop: types.ModuleType) -> None:
    app = f"{APP_MODULE}:workflows"
    assert "not valid JSON" in fails("start", "quick", "--app", app, "--data", "{x", code=2)
    assert "JSON object" in fails("start", "quick", "--app", app, "--data", "[1]", code=2)
    assert "cannot read" in fails("start", "quick", "--app", app, "--data", "@/nope", code=2)


def test_start_of_an_unknown_workflow_is_a_user_error(db: str, shop: types.ModuleType) -> None:
    line = fails("start", "nope", "--app", f"{APP_MODULE}:workflows", "--db", db)
    assert "workflow 'nope' is not registered" in line


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (":order", "is not MODULE:ATTR"),
        ("cli_shop:", "is not MODULE:ATTR"),
        ("json", "module defines no Workflow"),
        ("no_such_module_xyz:app", "no module named 'no_such_module_xyz'"),
        ("cli_shop:missing", "no attribute 'missing'"),
        ("cli_shop:not_a_workflow", "it is a int, not an Engine, a Workflow or a list"),
        ("cli_shop:nothing", "it holds none"),
    ],
)
def test_a_bad_app_is_a_one_line_error(
    db: str, shop: types.ModuleType, spec: str, message: str
) -> None:
    assert message in fails("start", "order", "--app", spec, "--db", db)


# Reading runs ---------------------------------------------------------------------------------


def test_runs_lists_newest_first_with_filters_as_table_and_json(
    db: str, shop: types.ModuleType
) -> None:
    app = f"{APP_MODULE}:workflows"
    for run_id, workflow in [("r1", "quick"), ("r2", "order"), ("r3", "quick")]:
        ok("start", workflow, "--app", app, "--db", db, "--run-id", run_id)
        time.sleep(0.002)
    table = ok("runs", "--db", db).splitlines()
    header = ["ID", "WORKFLOW", "VERSION", "STATUS", "WAITING", "FOR", "CREATED", "UPDATED"]
    assert table[0].split() == header
    assert [line.split()[0] for line in table[1:]] == ["r3", "r2", "r1"]
    listed = json.loads(ok("runs", "--db", db, "--json", "--workflow", "quick"))
    assert [r["id"] for r in listed] == ["r3", "r1"]
    assert {r["status"] for r in listed} == {"pending"}
    assert json.loads(ok("runs", "--db", db, "--json", "--status", "completed")) == []
    assert len(json.loads(ok("runs", "--db", db, "--json", "--limit", "1"))) == 1
    assert ok("runs", "--db", db, "--status", "failed").strip() == "no runs"


def test_runs_with_a_bad_status_is_a_usage_error(db: str) -> None:
    assert "'bogus' is not one of" in fails("runs", "--db", db, "--status", "bogus", code=2)


def test_status_and_history_show_a_waiting_run(db: str, shop: types.ModuleType) -> None:
    run_id = waiting_run(db, shop, {"total": 5})
    text = ok("status", run_id, "--db", db)
    assert "status:       waiting" in text and "waiting for:  signal:payment" in text
    assert '"charged": true' in text
    state = status_of(db, run_id)
    assert state["waiting_for"] == ["signal:payment"] and state["data"]["total"] == 5
    assert state["created_at"].endswith("+00:00")
    history = ok("history", run_id, "--db", db)
    assert history.splitlines()[0].split() == ["TIME", "EVENT", "STEP", "DETAIL"]
    assert "step_completed" in history and "charge" in history
    assert events_of(db, run_id)[0] == "created"


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["history"],
        ["signal", "RUN", "payment"],
        ["approve", "RUN", "manager", "--by", "alice"],
        ["reject", "RUN", "manager", "--by", "alice"],
        ["pause"],
        ["resume"],
        ["cancel"],
    ],
)
def test_an_unknown_run_is_a_one_line_error(
    db: str, shop: types.ModuleType, command: list[str]
) -> None:
    waiting_run(db, shop)  # the database exists; the run asked for does not
    args = [command[0], "nope", *command[2:]] if len(command) > 1 else [command[0], "nope"]
    assert fails(*args, "--db", db) == "Error: run 'nope' does not exist"


def test_a_missing_database_file_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    assert "no database at" in fails("runs", "--db", url)
    assert not (tmp_path / "missing.db").exists()


# Signals, approvals, pause, resume, cancel ---------------------------------------------------


def test_signal_is_checked_against_the_stored_definition(db: str, shop: types.ModuleType) -> None:
    run_id = waiting_run(db, shop)
    out = ok("signal", run_id, "payment", "--data", '{"amount": 5}', "--db", db)
    assert out.startswith("signal 'payment' sent; run ")
    assert "signal_received" in events_of(db, run_id)
    assert "awaits no signal 'refund'" in fails("signal", run_id, "refund", "--db", db)
    assert "not valid JSON" in fails("signal", run_id, "payment", "--data", "{", code=2)


def test_approve_checks_the_approvers_and_reject_records_the_reason(
    db: str, shop: types.ModuleType
) -> None:
    run_id = waiting_run(db, shop)
    line = fails("approve", run_id, "manager", "--by", "mallory", "--db", db)
    assert "'mallory' may not decide approval 'manager'" in line
    assert "has no approval 'boss'" in fails("approve", run_id, "boss", "--by", "alice", "--db", db)
    assert "Missing option '--by'" in fails("approve", run_id, "manager", "--db", db, code=2)
    state = json.loads(
        ok("approve", run_id, "manager", "--by", "alice", "--comment", "ok", "--db", db, "--json")
    )
    assert state["id"] == run_id
    ok("reject", run_id, "manager", "--by", "alice", "--reason", "too late", "--db", db)
    received = json.loads(ok("history", run_id, "--db", db, "--json"))
    decisions = [e["detail"] for e in received if e["kind"] == "approval_received"]
    assert decisions == [
        {"approved": True, "by": "alice", "comment": "ok"},
        {"approved": False, "by": "alice", "reason": "too late"},
    ]


def test_pause_resume_and_cancel_are_recorded_for_a_worker(db: str, shop: types.ModuleType) -> None:
    run_id = waiting_run(db, shop)
    assert "is paused" in ok("pause", run_id, "--db", db)
    assert "resumed" in ok("resume", run_id, "--db", db)
    assert "cannot resume" in fails("resume", run_id, "--db", db)
    state = json.loads(ok("cancel", run_id, "--db", db, "--json"))
    assert state["id"] == run_id
    assert events_of(db, run_id)[-3:] == ["paused", "resumed", "cancel_requested"]


# Environment variables ------------------------------------------------------------------------


def test_options_come_from_treadle_environment_variables(db: str, shop: types.ModuleType) -> None:
    env = {"TREADLE_DB": db, "TREADLE_APP": f"{APP_MODULE}:workflows"}
    run_id = ok("start", "quick", env=env).strip()
    listed = json.loads(ok("runs", env={**env, "TREADLE_JSON": "1"}))
    assert [r["id"] for r in listed] == [run_id]
    ok("start", "quick", env=env)
    limited = json.loads(ok("runs", env={**env, "TREADLE_JSON": "1", "TREADLE_RUNS_LIMIT": "1"}))
    assert len(limited) == 1
    assert len(json.loads(ok("runs", "--json", env={"TREADLE_DB": db}))) == 2


# Cron -----------------------------------------------------------------------------------------


def test_cron_add_list_disable_enable_remove(db: str, shop: types.ModuleType) -> None:
    app = f"{APP_MODULE}:workflows"
    assert "--app" in fails("cron", "add", "nightly", "quick", "0 2 * * *", "--db", db, code=2)
    out = ok(
        "cron",
        "add",
        "nightly",
        "quick",
        "0 2 * * *",
        "--app",
        app,
        "--db",
        db,
        "--input",
        '{"format": "pdf"}',
        "--timezone",
        "Europe/Berlin",
    )
    assert out.startswith("schedule 'nightly' added; next run ")
    added = json.loads(
        ok("cron", "add", "poll", "quick", "@every 1h30m", "--app", app, "--db", db, "--json")
    )
    assert added["id"] == "poll" and added["enabled"] is True and added["next_run"]
    table = ok("cron", "list", "--db", db).splitlines()
    assert table[0].split()[:4] == ["ID", "WORKFLOW", "EXPRESSION", "TIMEZONE"]
    assert any("nightly" in line and "Europe/Berlin" in line for line in table)
    assert ok("cron", "disable", "nightly", "--db", db).strip() == "schedule 'nightly' disabled"
    listed = {s["id"]: s for s in json.loads(ok("cron", "list", "--db", db, "--json"))}
    assert listed["nightly"]["enabled"] is False and listed["nightly"]["next_run"] is None
    assert listed["nightly"]["input"] == {"format": "pdf"}
    ok("cron", "enable", "nightly", "--db", db)
    ok("cron", "remove", "poll", "--db", db)
    assert [s["id"] for s in json.loads(ok("cron", "list", "--db", db, "--json"))] == ["nightly"]


def test_cron_errors_are_one_line(db: str, shop: types.ModuleType) -> None:
    app = f"{APP_MODULE}:workflows"
    ok("cron", "add", "a", "quick", "@daily", "--app", app, "--db", db)
    assert "already exists" in fails(
        "cron", "add", "a", "quick", "@daily", "--app", app, "--db", db
    )
    assert "not registered" in fails("cron", "add", "b", "nope", "@daily", "--app", app, "--db", db)
    line = fails("cron", "add", "b", "quick", "61 * * * *", "--app", app, "--db", db)
    assert "61" in line
    assert "'zzz' does not exist" in fails("cron", "remove", "zzz", "--db", db)
    assert "'zzz' does not exist" in fails("cron", "enable", "zzz", "--db", db)


def test_cron_next_previews_due_times() -> None:
    out = ok("cron", "next", "@every 1h30m", "-n", "3", "--after", "2026-01-01 00:00:00")
    assert out.splitlines() == [
        "2026-01-01 01:30:00 UTC (Thu)",
        "2026-01-01 03:00:00 UTC (Thu)",
        "2026-01-01 04:30:00 UTC (Thu)",
    ]
    times = json.loads(
        ok(
            "cron",
            "next",
            "0 9 * * MON",
            "--timezone",
            "Europe/Berlin",
            "--json",
            "--after",
            "2026-03-01 00:00:00",
        )
    )
    assert times[:2] == ["2026-03-02T09:00:00+01:00", "2026-03-09T09:00:00+01:00"]
    assert "Error:" in fails("cron", "next", "not cron")
    assert "time zone" in fails("cron", "next", "@daily", "--timezone", "Mars/Base")


# db upgrade and serve -------------------------------------------------------------------------


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert ok("db", "upgrade", "--db", url).startswith(f"database {url} is at schema version ")
    assert (tmp_path / "new.db").exists()
    assert json.loads(ok("db", "upgrade", "--db", url, "--json"))["schema_version"] >= 1
    assert "unknown database URL" in fails("db", "upgrade", "--db", "mysql://x")


def test_db_upgrade_migrates_postgresql_and_commands_work_on_it(
    request: pytest.FixtureRequest, shop: types.ModuleType
) -> None:
    pgserver = pytest.importorskip("pgserver", reason="tests/pgserver.py is not available")
    url = pgserver.fresh_database(request.getfixturevalue("pg_dsn"), migrated=False)
    out = ok("db", "upgrade", "--db", url)
    assert "is at schema version" in out and "created the treadle schema" in out
    ok("db", "upgrade", "--db", url)  # a second upgrade is harmless
    run_id = ok("start", "quick", "--app", f"{APP_MODULE}:workflows", "--db", url).strip()
    assert [r["id"] for r in json.loads(ok("runs", "--db", url, "--json"))] == [run_id]
    assert "does not exist" in fails("status", "nope", "--db", url)


def test_serve_hands_its_options_to_the_web_server(
    db: str, shop: types.ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[dict[str, Any]] = []
    web = types.ModuleType("treadle.web")
    web.run_server = lambda **kwargs: calls.append(kwargs)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "treadle.web", web)
    tokens = tmp_path / "tokens"
    tokens.write_text("")
    app = f"{APP_MODULE}:workflows"
    ok("serve", "--db", db, "--port", "9999", "--tokens-file", str(tokens), "--app", app)
    assert calls == [
        {
            "db_url": db,
            "host": "127.0.0.1",
            "port": 9999,
            "tokens_file": str(tokens),
            "module": app,
            "codec": None,
        }
    ]
    ok("serve", env={"TREADLE_DB": db, "TREADLE_SERVE_PORT": "7000", "TREADLE_SERVE_HOST": "::"})
    assert calls[-1]["port"] == 7000 and calls[-1]["host"] == "::"
    assert "no module named 'nope'" in fails("serve", "--db", db, "--app", "nope:app")
    assert len(calls) == 2


def test_serve_without_the_web_extra_says_what_to_install(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "treadle.web", None)  # as if starlette were not installed
    assert "pip install 'treadle[web]'" in fails("serve", "--db", db)


def test_serve_on_all_interfaces_without_tokens_warns_at_start(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    bound: list[str] = []

    async def serve(self: uvicorn.Server) -> None:
        bound.append(self.config.host)

    monkeypatch.setattr(uvicorn.Server, "serve", serve)
    result = invoke("serve", "--host", "0.0.0.0", "--db", db)
    assert result.exit_code == 0, result.output
    assert bound == ["127.0.0.1"]
    warning = next(line for line in result.stderr.splitlines() if "WARNING" in line)
    assert "no API tokens configured" in warning and "0.0.0.0" in warning


def test_history_shows_durations_with_their_units(db: str) -> None:
    def flaky(ctx: treadle.Context, state: treadle.State) -> None:
        if ctx.attempt < 2:
            raise RuntimeError("try again")

    policy = treadle.RetryPolicy().attempts(3).backoff("50ms", "50ms")
    workflow = treadle.new("flaky").step("call", flaky, retry=policy).build()

    async def go() -> str:
        engine = treadle.Engine(treadle.persistence_from_url(db), poll_interval=0.1)
        engine.register(workflow)
        async with engine:
            run_id = await engine.start("flaky")
            await engine.wait(run_id, timeout=10)
        return run_id

    text = ok("history", asyncio.run(go()), "--db", db)
    failed = next(line for line in text.splitlines() if "step_failed" in line)
    assert re.search(r"retry_in: \d+ms", failed), failed
    completed = next(line for line in text.splitlines() if "step_completed" in line)
    assert re.search(r"took: \d+ms", completed), completed


def test_a_database_url_password_is_not_printed() -> None:
    from treadle.cli._app import redact

    assert redact("postgresql://app:s3cret@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact("sqlite:///a.db") == "sqlite:///a.db"


# The worker -------------------------------------------------------------------------------------


def test_worker_log_lines_carry_the_run_id() -> None:
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(_RunIdFilter())
    logger = logging.getLogger("treadle.test-cli")
    logger.addHandler(handler)
    try:
        logger.warning("lease lost", extra={"run_id": "r-7"})
        logger.warning("no run here")
    finally:
        logger.removeHandler(handler)
    first, second = stream.getvalue().splitlines()
    assert first.endswith("treadle.test-cli [run r-7]: lease lost")
    assert second.endswith("treadle.test-cli: no run here")


def test_worker_without_app_is_a_usage_error(db: str) -> None:
    assert "Missing argument 'MODULE:ATTR'" in fails("worker", "--db", db, code=2)


def _wait_for(url: str, sql: str, expected: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        found = rows(url, sql)
        if found == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{sql!r}: {found!r}, expected {expected!r}")
        time.sleep(0.05)


@pytest.fixture
def worker_process(app_dir: Path, db: str) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_worker_executes_runs_started_by_the_cli_and_drains_on_sigterm(
    app_dir: Path, db: str, shop: types.ModuleType, worker_process: list[subprocess.Popen[str]]
) -> None:
    app = f"{APP_MODULE}:workflows"
    quick = [ok("start", "quick", "--app", app, "--db", db).strip() for _ in range(3)]
    ok("start", "order", "--app", app, "--db", db, "--run-id", "waits")
    ok("start", "order", "--app", app, "--db", db, "--run-id", "busy", "--data", '{"sleep": 60}')
    ok("cron", "add", "tick", "quick", "@every 1s", "--app", app, "--db", db)
    env = {k: v for k, v in os.environ.items() if not _cli_env(k)}
    env["TREADLE_DB"] = db
    proc = subprocess.Popen(
        [sys.executable, "-m", "treadle", "worker", app, "--drain", "0.3", "--lease", "5"],
        cwd=app_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker_process.append(proc)
    done = "SELECT count(*) FROM runs WHERE status = 'completed' AND id NOT LIKE 'cron:%'"
    _wait_for(db, done, [(3,)])
    _wait_for(db, "SELECT status FROM runs WHERE id = 'waits'", [("waiting",)])
    _wait_for(db, "SELECT owner IS NOT NULL FROM runs WHERE id = 'busy'", [(1,)])

    # A signal and an approval given by the CLI while the worker runs reach the run at once.
    ok("signal", "waits", "payment", "--db", db)
    ok("approve", "waits", "manager", "--by", "alice", "--db", db)
    _wait_for(db, "SELECT status FROM runs WHERE id = 'waits'", [("completed",)])
    assert {status_of(db, r)["status"] for r in quick} == {"completed"}
    fired = "SELECT count(*) > 0 FROM runs WHERE id LIKE 'cron:tick:%' AND status = 'completed'"
    _wait_for(db, fired, [(1,)])  # the worker fires due schedules too
    assert "cannot pause run 'waits': it is completed" in fails("pause", "waits", "--db", db)
    assert "it is completed" in fails("signal", "waits", "payment", "--db", db)

    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "ready: workflows order, quick" in stderr
    assert "SIGTERM: stopping" in stderr and "stopped (" in stderr
    assert "Traceback" not in stderr
    assert rows(db, "SELECT id FROM runs WHERE owner IS NOT NULL") == []
    busy = status_of(db, "busy")
    assert busy["status"] == "running"  # released mid-step: the next worker goes on with it
