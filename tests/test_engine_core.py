"""The execution core's small vocabularies: control requests, the cursor's path grammar and
version, wait keys, and the stored strings of event kinds."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from treadle._interpreter import Control, cursor
from treadle._interpreter.waits import child_run_id
from treadle._state import EventKind, WaitKind, parse_wait_key, wait_key


@pytest.mark.parametrize(
    ("first", "then", "holds"),
    [
        (None, Control.PAUSE, Control.PAUSE),
        (Control.PAUSE, Control.CANCEL, Control.CANCEL),
        (Control.CANCEL, Control.PAUSE, Control.CANCEL),
        (Control.CANCEL, Control.SHUTDOWN, Control.CANCEL),
        (Control.SHUTDOWN, Control.PAUSE, Control.PAUSE),
        (Control.PAUSE, Control.SHUTDOWN, Control.PAUSE),
    ],
)
def test_the_strongest_control_request_holds(
    first: Control | None, then: Control, holds: Control
) -> None:
    held = then if then.beats(first) else first
    assert held is holds


def test_the_path_grammar_builds_and_reads_back_paths() -> None:
    loop = cursor.join(cursor.inside("outer"), "ship-items")
    body = cursor.inside(cursor.iteration(loop, 2))
    step = cursor.join(body, "ship")
    assert step == "outer/ship-items#2/ship"
    assert cursor.last_name(step) == "ship"
    assert cursor.last_name(cursor.iteration(loop, 2)) == "ship-items"
    key = cursor.position_key(body)
    assert cursor.is_position(key) and not cursor.is_position(step)
    assert cursor.sequence_path(key) == "outer/ship-items#2"
    assert cursor.sequence_path(cursor.position_key("")) == ""
    assert step.startswith(cursor.below(loop))


def test_a_child_run_id_depends_only_on_the_parent_and_the_path() -> None:
    one = child_run_id("run-1", "loop#3/invoice")
    assert one == child_run_id("run-1", "loop#3/invoice")
    assert one.startswith("run-1.invoice.")
    assert one != child_run_id("run-1", "loop#4/invoice")


def test_cursors_without_a_version_read_as_the_current_format() -> None:
    old = cursor.load('{"n": {"@": {"i": 1, "n": "a"}}, "c": [], "f": null}')
    assert old["n"] == {"@": {"i": 1, "n": "a"}}
    assert cursor.load(cursor.NEW)["v"] == cursor.VERSION


def test_a_cursor_of_a_newer_format_is_refused_with_its_version() -> None:
    with pytest.raises(cursor.CursorVersionError, match=f"format {cursor.VERSION + 1}"):
        cursor.load(f'{{"v": {cursor.VERSION + 1}, "n": {{}}, "c": [], "f": null}}')


def test_wait_keys_are_kind_colon_name_and_parse_back() -> None:
    assert wait_key(WaitKind.SIGNAL, "payment") == "signal:payment"
    assert wait_key(WaitKind.RUN, "a.b:c") == "run:a.b:c"
    assert parse_wait_key("run:a.b:c") == (WaitKind.RUN, "a.b:c")
    with pytest.raises(ValueError, match="not a wait key"):
        parse_wait_key("payment")
    with pytest.raises(ValueError, match="'mail'"):
        parse_wait_key("mail:x")


def test_event_kinds_are_stored_as_the_same_strings_as_before() -> None:
    assert {str(kind) for kind in EventKind} == {
        "created", "waiting", "step_completed", "step_failed", "branch_taken",
        "loop_iteration", "loop_ended", "map_started", "parallel_completed", "signal_received",
        "signal_consumed", "approval_received", "timer_fired", "child_started",
        "child_completed", "pause_requested", "paused", "resumed", "cancel_requested",
        "compensating", "compensated", "compensation_retry", "compensation_failed",
        "run_completed", "run_failed", "run_cancelled", "data_conflict", "signals_dropped",
        "run_held", "run_retried", "step_skipped", "run_aborted", "run_migrated", "run_forked",
            "params_computed", "deadline_exceeded", "debounced",
        "slot_acquired", "slot_queued", "slot_refused",
    }  # fmt: skip


def test_the_interpreter_does_not_name_the_engine() -> None:
    package = Path(__file__).parent.parent / "treadle" / "_interpreter"
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert "_engine" not in (node.module or ""), module.name
            if isinstance(node, ast.Name):
                assert node.id != "Engine", module.name
