"""The one id rule, and the duration grammar: what each accepts and how each refuses."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import treadle
from treadle._engine import new_run_id
from treadle._ids import (
    ID_PATTERN,
    MAX_ID_LENGTH,
    MAX_SCHEDULE_ID_LENGTH,
    check_id,
    child_id,
    is_id,
)
from treadle._interpreter.waits import child_run_id
from treadle.cron._cron import run_id_for

RULE = "1 to 200 characters from letters, digits and '._:@-', the first a letter or a digit"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("", "''"),
        ("has space", "'has space'"),
        ("a/b", "'a/b'"),
        ("x" * 10_000, "(10000 characters)"),
        (123, "123 (a int, not a string)"),
        (None, "None (a NoneType, not a string)"),
        ("caf\u00e9", "'caf\u00e9'"),
        ("line\n", "'line\\n'"),
        ("x" * (MAX_ID_LENGTH + 1), "(201 characters)"),
        ("a#b", "'a#b'"),
        ("a?b", "'a?b'"),
        ("-a", "'-a'"),
        (".hidden", "'.hidden'"),
        (":x", "':x'"),
    ],
)
def test_an_id_breaking_the_rule_is_a_value_error_naming_it_and_the_rule(
    value: Any, shown: str
) -> None:
    with pytest.raises(ValueError) as caught:
        check_id(value)
    assert isinstance(caught.value, treadle.InvalidId)
    assert isinstance(caught.value, treadle.TreadleError)
    message = str(caught.value)
    assert message.startswith("invalid run id ") and shown in message and RULE in message
    assert caught.value.value == value and caught.value.what == "run id"


def test_check_id_says_what_the_id_is_for() -> None:
    with pytest.raises(treadle.InvalidId, match="invalid schedule id 'a b'"):
        treadle.check_id("a b", "schedule id")


@pytest.mark.parametrize(
    "value",
    ["a", "order-1", "cron:nightly:2026-01-01T02:00:00Z", "A.b_c", "ada@example", "x" * 200],
)
def test_safe_ids_are_returned_as_they_are(value: str) -> None:
    assert check_id(value) is value


@given(st.text(alphabet="aZ09._:@-", max_size=MAX_ID_LENGTH).map(lambda t: "a" + t[1:]))
def test_every_string_of_the_alphabet_within_the_bound_is_an_id(value: str) -> None:
    assert check_id(value) == value


@given(
    st.text(max_size=MAX_ID_LENGTH + 2) | st.text(alphabet="a0.-@:_/ ", max_size=MAX_ID_LENGTH + 2)
)
def test_the_pattern_and_the_check_are_one_rule(value: str) -> None:
    assert is_id(value) == (re.fullmatch(ID_PATTERN, value) is not None)


def test_the_http_api_checks_ids_by_the_same_rule() -> None:
    from treadle import _wire

    assert _wire.ID_PATTERN == ID_PATTERN


def test_generated_run_ids_are_ids() -> None:
    assert all(is_id(new_run_id()) for _ in range(100))


def test_cron_run_ids_of_the_longest_schedule_id_are_ids() -> None:
    longest = "s" * MAX_SCHEDULE_ID_LENGTH
    due = datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert is_id(run_id_for(longest, due))
    assert is_id(run_id_for("nightly", datetime(2026, 1, 1, 2, tzinfo=UTC)))


def test_child_ids_keep_their_form_when_it_is_an_id() -> None:
    assert child_id("p1", "invoice", "invoice") == child_run_id("p1", "invoice")
    assert child_id("p1", "ship", "loop#3/ship") == child_run_id("p1", "loop#3/ship")


@pytest.mark.parametrize(
    ("parent", "step"),
    [("p1", "send the invoice"), ("p1", "caf\u00e9"), ("x" * 200, "child"), ("p" * 190, "s" * 300)],
)
def test_child_ids_are_ids_whatever_the_parent_and_step(parent: str, step: str) -> None:
    made = child_id(parent, step, f"outer/{step}")
    assert is_id(made), made
    assert made != child_id(parent, step, f"other/{step}")


def test_child_ids_of_children_of_children_stay_ids() -> None:
    run = new_run_id()
    for depth in range(20):
        run = child_id(run, f"level {depth}", f"level {depth}")
        assert is_id(run), run


# Durations --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1d", timedelta(days=1)),
        ("2d12h", timedelta(days=2, hours=12)),
        ("1.5d", timedelta(hours=36)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
        ("+5s", timedelta(seconds=5)),
        ("-0s", timedelta(0)),
        ("0", timedelta(0)),
    ],
)
def test_durations_accept_days_as_people_write_them(text: str, expected: timedelta) -> None:
    assert treadle.parse_duration(text) == expected


@pytest.mark.parametrize("value", ["-5s", "-1h30m", -5, -0.5, timedelta(seconds=-1)])
def test_a_negative_duration_says_so(value: object) -> None:
    with pytest.raises(ValueError, match="negative duration") as caught:
        treadle.parse_duration(value)
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize(
    "value", ["soon", "5", "1y", "", "-", "99999999999999d", 1e300, float("nan")]
)
def test_a_bad_duration_is_a_value_error_naming_it(value: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        treadle.parse_duration(value)
