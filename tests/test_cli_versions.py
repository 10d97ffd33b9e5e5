"""The CLI's commands on runs that outlive their code: retry, skip and abort a held run, fork a
run from a step, and move runs onto another definition (one run, or a workflow's, dry run too).

A worker is played by an engine in this process that executes the runs until nothing more
happens (``settle``); the CLI records decisions for it, as it does for a real worker."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_cli import _cli_env, fails, invoke, ok

import treadle

APP_SOURCE = """
import treadle


def charge(ctx, state):
    state.data["charged"] = True


def refund(ctx, state):
    state.data["refunded"] = True


def ship(ctx, state):
    if not state.data.get("stock"):
        raise treadle.NonRetryableError("out of stock")
    state.data["shipped"] = True


fragile = (
    treadle.new("fragile", on_failure="hold")
    .step("charge", charge, compensate=refund)
    .step("ship", ship)
    .build()
)
order_v1 = treadle.new("order", version="1").step("charge", charge).await_signal("go").build()
order_v2 = treadle.new("order", version="2").step("charge", charge).await_signal("ready").build()
workflows = [fragile, order_v1, order_v2]
"""


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The user's module (workflows ``fragile`` and ``order`` in versions 1 and 2)."""
    for name in list(os.environ):
        if _cli_env(name):
            monkeypatch.delenv(name)
    module = f"versions_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(APP_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(module)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def spec(app: types.ModuleType) -> str:
    return f"{app.__name__}:workflows"


def work(db: str, app: types.ModuleType, *starts: tuple[str, str | None]) -> list[str]:
    """Be the worker: start runs of (workflow, version) if given, execute every run until
    nothing more happens; the ids of the runs started."""

    async def go() -> list[str]:
        engine = treadle.Engine(treadle.persistence_from_url(db), poll_interval=0.05)
        engine.register(*app.workflows)
        async with engine:
            ids = [await engine.start(name, version=version) for name, version in starts]
            await engine.settle()
            return ids

    return asyncio.run(go())


def state(db: str, run_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(ok("status", run_id, "--db", db, "--json"))
    return shown


def history(db: str, run_id: str, kind: str) -> list[dict[str, Any]]:
    events = json.loads(ok("history", run_id, "--db", db, "--json"))
    return [e["detail"] for e in events if e["kind"] == kind]


def held_run(db: str, app: types.ModuleType) -> str:
    (run_id,) = work(db, app, ("fragile", None))
    assert state(db, run_id)["status"] == "held"
    return run_id


# Held runs ------------------------------------------------------------------------------------


def test_status_and_runs_show_the_version_and_what_holds_a_held_run(
    db: str, app: types.ModuleType
) -> None:
    run_id = held_run(db, app)
    text = ok("status", run_id, "--db", db)
    assert "status:       held" in text
    assert "held:         step 'ship' failed for good: retry, skip or abort the run" in text
    assert "waiting for:  held:ship" in text and "out of stock" in text
    shown = state(db, run_id)
    assert shown["waiting_for"] == ["held:ship"] and shown["forked_from"] is None
    assert text.splitlines()[2] == f"version:      {shown['definition_id']}"  # no label
    (v1,) = work(db, app, ("order", "1"))
    table = ok("runs", "--db", db).splitlines()
    assert table[0].split()[:4] == ["ID", "WORKFLOW", "VERSION", "STATUS"]
    assert table[1].split()[:5] == [v1, "order", "1", "waiting", "signal:go"]
    assert table[2].split()[:5] == [run_id, "fragile", shown["definition_id"], "held", "held:ship"]


def test_retry_is_recorded_as_the_os_user_or_by_and_runs_the_step_again(
    db: str, app: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = held_run(db, app)
    monkeypatch.setattr("getpass.getuser", lambda: "opsuser")
    assert "retry recorded" in ok("retry", run_id, "--db", db)
    work(db, app)
    assert state(db, run_id)["status"] == "held"  # still out of stock: held again
    ok("retry", run_id, "--by", "carol", "--db", db)
    assert history(db, run_id, "run_retried") == [{"by": "opsuser"}, {"by": "carol"}]
    failed = history(db, run_id, "step_failed")
    assert [d["attempt"] for d in failed] == [1, 1]  # fresh attempts after a retry


def test_skip_merges_data_and_the_run_goes_on_after_the_step(
    db: str, app: types.ModuleType
) -> None:
    run_id = held_run(db, app)
    ok("skip", run_id, "--data", '{"shipped": "by hand"}', "--by", "dora", "--db", db)
    work(db, app)
    done = state(db, run_id)
    assert done["status"] == "completed"
    assert done["data"] == {"charged": True, "shipped": "by hand"}
    assert history(db, run_id, "step_skipped") == [{"by": "dora", "data": {"shipped": "by hand"}}]
    assert "expected a JSON object" in fails("skip", run_id, "--data", "[1]", "--db", db, code=2)


def test_abort_compensates_and_fails_the_run_with_the_reason(
    db: str, app: types.ModuleType
) -> None:
    run_id = held_run(db, app)
    assert "Missing option '--reason'" in fails("abort", run_id, "--db", db, code=2)
    ok("abort", run_id, "--reason", "customer left", "--by", "erin", "--db", db)
    work(db, app)
    ended = state(db, run_id)
    assert ended["status"] == "failed" and "aborted: customer left" in ended["error"]
    assert ended["data"]["refunded"] is True
    assert history(db, run_id, "run_aborted") == [{"by": "erin", "reason": "customer left"}]


@pytest.mark.parametrize("command", [["retry"], ["skip"], ["abort", "--reason", "x"]])
def test_deciding_a_run_that_is_not_held_is_a_one_line_error(
    db: str, app: types.ModuleType, command: list[str]
) -> None:
    (run_id,) = work(db, app, ("order", "1"))
    [action, *rest] = command
    line = fails(action, run_id, *rest, "--db", db)
    assert f"cannot {action}" in line and "it is waiting" in line
    assert "does not exist" in fails(action, "nope", *rest, "--db", db)


# Forks ----------------------------------------------------------------------------------------


def test_fork_starts_a_new_run_from_a_step_and_prints_its_id(
    db: str, app: types.ModuleType
) -> None:
    run_id = held_run(db, app)
    line = fails("fork", run_id, "--db", db)
    assert "'fragile' is not registered" in line and "--app" in line
    forked = ok(
        "fork", run_id, "--from-step", "ship", "--data", '{"stock": 1}', "--app", spec(app),
        "--db", db,
    ).strip()  # fmt: skip
    assert forked != run_id and state(db, forked)["forked_from"] == run_id
    work(db, app)
    done = state(db, forked)
    assert done["status"] == "completed" and done["data"] == {"stock": 1, "shipped": True}
    assert history(db, forked, "step_completed") == [
        {"attempt": 1, "ms": pytest.approx(0, abs=1e3)}
    ]
    line = fails("fork", run_id, "--from-step", "pack", "--app", spec(app), "--db", db)
    assert "'pack' is not a step" in line and "charge, ship" in line
    line = fails("fork", run_id, "--version", "9", "--app", spec(app), "--db", db)
    assert "has no definition '9'" in line


# Migration ------------------------------------------------------------------------------------


def test_migrate_a_workflow_dry_run_lists_who_would_move_and_who_cannot_with_why(
    db: str, app: types.ModuleType
) -> None:
    waiting, waiting_too, on_v2 = work(db, app, ("order", "1"), ("order", "1"), ("order", "2"))
    pending = ok("start", "order", "--app", f"{app.__name__}:order_v1", "--db", db).strip()
    assert state(db, pending)["status"] == "pending"  # no worker took it
    result = invoke("runs", "migrate", "--workflow", "order", "--to", "2", "--dry-run", "--db", db)
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: 2 of 3 runs cannot move"
    lines = sorted(result.stdout.splitlines())
    assert f"{pending}  would move to 2" in lines
    refused = [line for line in lines if "cannot move" in line]
    assert {line.split()[0] for line in refused} == {waiting, waiting_too}
    assert all("go" in line for line in refused), refused  # the reason names the signal
    assert on_v2 not in result.stdout  # on the target already
    assert state(db, pending)["version"] == "1"  # a dry run moves nothing

    result = invoke(
        "runs", "migrate", "-w", "order", "--from", "1", "--to", "2", "--rename", "go=ready",
        "--by", "fay", "--db", db,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.split()[::4]) == sorted([waiting, waiting_too, pending])
    moved = state(db, waiting)
    assert moved["version"] == "2" and moved["waiting_for"] == ["signal:ready"]
    assert history(db, waiting, "run_migrated")[0]["by"] == "fay"
    assert (
        ok("runs", "migrate", "-w", "order", "--to", "2", "--db", db).strip() == "no runs to move"
    )


def test_migrate_one_run_and_its_errors(db: str, app: types.ModuleType) -> None:
    (waiting,) = work(db, app, ("order", "1"))
    result = invoke("runs", "migrate", waiting, "--to", "2", "--db", db)
    assert result.exit_code == 1 and result.stdout.startswith(f"{waiting}  cannot move to 2: ")
    plans = json.loads(
        invoke("runs", "migrate", waiting, "--to", "2", "--rename", "go=ready", "--dry-run",
               "--json", "--db", db).stdout
    )  # fmt: skip
    assert [(p["ok"], p["moved"], p["target_version"]) for p in plans] == [(True, False, "2")]
    assert state(db, waiting)["version"] == "1"
    out = ok("runs", "migrate", waiting, "--to", "2", "--rename", "go=ready", "--db", db)
    assert out.strip() == f"{waiting}  moved to 2"
    assert "has no definition '7'" in fails("runs", "migrate", waiting, "--to", "7", "--db", db)
    assert "either RUN or --workflow" in fails("runs", "migrate", "--db", db, code=2)
    line = fails("runs", "migrate", waiting, "--rename", "go", "--db", db, code=2)
    assert "expected OLD=NEW" in line
