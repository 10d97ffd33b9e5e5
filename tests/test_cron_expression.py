"""Specification of cron expressions: parsing, errors, next due times and daylight saving."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from treadle.cron import CronError, CronExpression, next_fire, next_fires
from treadle.cron._expression import MACROS

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


def berlin(y: int, mo: int, d: int, h: int = 0, mi: int = 0, *, fold: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=BERLIN, fold=fold)


def same_instant(a: datetime, b: datetime) -> bool:
    """Compare instants: datetimes sharing a tzinfo compare wall times and ignore ``fold``."""
    return a.astimezone(UTC) == b.astimezone(UTC) and a.utcoffset() == b.utcoffset()


# --------------------------------------------------------------------------- invalid input

INVALID: list[tuple[str, list[str]]] = [
    # empty and field count
    ("", ["empty cron expression"]),
    ("   ", ["empty cron expression"]),
    ("* * * *", ["wrong number of fields", "expected 5", "got 4"]),
    ("*", ["wrong number of fields", "got 1"]),
    ("0 0 * * * *", ["wrong number of fields", "got 6"]),
    ("0 0 0 * * * 2026", ["wrong number of fields", "got 7"]),
    # minute
    ("61 * * * *", ["bad minute field '61'", "in '61 * * * *'", "61 is out of range 0-59"]),
    ("60 * * * *", ["bad minute field '60'", "out of range 0-59"]),
    ("-1 * * * *", ["bad minute field '-1'"]),
    ("5-1 * * * *", ["bad minute field '5-1'", "runs backwards"]),
    ("*/0 * * * *", ["bad minute field '*/0'", "step", "at least 1"]),
    ("0-30/0 * * * *", ["bad minute field '0-30/0'", "at least 1"]),
    ("1,,2 * * * *", ["bad minute field '1,,2'", "empty item"]),
    ("1, * * * *", ["bad minute field '1,'", "empty item"]),
    (",1 * * * *", ["bad minute field ',1'", "empty item"]),
    ("*-5 * * * *", ["bad minute field '*-5'", "'*' cannot start a range"]),
    ("a * * * *", ["bad minute field 'a'", "'a' is not a number"]),
    ("1.5 * * * *", ["bad minute field '1.5'"]),
    ("*/ * * * *", ["bad minute field '*/'"]),
    ("1-2-3 * * * *", ["bad minute field '1-2-3'"]),
    ("*/5/2 * * * *", ["bad minute field '*/5/2'"]),
    ("** * * * *", ["bad minute field '**'"]),
    ("1-60 * * * *", ["bad minute field '1-60'", "60 is out of range 0-59"]),
    # hour
    ("0 24 * * *", ["bad hour field '24'", "24 is out of range 0-23"]),
    ("0 23-1 * * *", ["bad hour field '23-1'", "runs backwards"]),
    ("0 x * * *", ["bad hour field 'x'"]),
    # day of month
    ("0 0 0 * *", ["bad day-of-month field '0'", "0 is out of range 1-31"]),
    ("0 0 32 * *", ["bad day-of-month field '32'", "out of range 1-31"]),
    ("0 0 L * *", ["bad day-of-month field 'L'", "extensions are not supported"]),
    ("0 0 LW * *", ["bad day-of-month field 'LW'", "extensions are not supported"]),
    ("0 0 15W * *", ["bad day-of-month field '15W'", "extensions are not supported"]),
    ("0 0 ? * MON", ["bad day-of-month field '?'", "extensions are not supported"]),
    ("0 0 MON * *", ["bad day-of-month field 'MON'", "not a number"]),
    ("0 0 31 2 *", ["bad day-of-month field '31'", "month field '2'", "never fire"]),
    ("0 0 30 2 *", ["bad day-of-month field '30'", "never fire"]),
    ("0 0 31 4,6,9,11 *", ["bad day-of-month field '31'", "never fire"]),
    # month
    ("0 0 * 0 *", ["bad month field '0'", "0 is out of range 1-12"]),
    ("0 0 * 13 *", ["bad month field '13'", "out of range 1-12"]),
    ("0 0 * foo *", ["bad month field 'foo'", "unknown month name 'foo'", "JAN"]),
    ("0 0 * January *", ["bad month field 'January'", "unknown month name"]),
    ("0 0 * DEC-JAN *", ["bad month field 'DEC-JAN'", "runs backwards"]),
    ("0 0 * MON *", ["bad month field 'MON'", "unknown month name"]),
    # day of week
    ("0 0 * * 8", ["bad day-of-week field '8'", "8 is out of range 0-7"]),
    ("0 0 * * 5L", ["bad day-of-week field '5L'", "extensions are not supported"]),
    ("0 0 * * MON#2", ["bad day-of-week field 'MON#2'", "extensions are not supported"]),
    ("0 0 * * 1#2", ["bad day-of-week field '1#2'", "extensions are not supported"]),
    ("0 0 * * FRI-MON", ["bad day-of-week field 'FRI-MON'", "runs backwards"]),
    ("0 0 * * Monday", ["bad day-of-week field 'Monday'", "unknown day-of-week name"]),
    ("0 0 * * JAN", ["bad day-of-week field 'JAN'", "unknown day-of-week name", "SUN"]),
    # macros
    ("@fortnightly", ["unknown macro '@fortnightly'", "@daily", "@every <duration>"]),
    ("@", ["unknown macro '@'"]),
    ("@reboot", ["unknown macro '@reboot'"]),
    ("@daily 5", ["macro '@daily' takes no argument", "'5'"]),
    ("@hourly * * * * *", ["macro '@hourly' takes no argument"]),
    # @every
    ("@every", ["@every needs a duration", "'@every'"]),
    ("@every   ", ["@every needs a duration"]),
    ("@every 0s", ["bad @every duration '0s'", "greater than 0"]),
    ("@every 0", ["bad @every duration '0'", "greater than 0"]),
    ("@every 0h0m", ["bad @every duration '0h0m'", "greater than 0"]),
    ("@every -1s", ["bad @every duration '-1s'", "in '@every -1s'"]),
    ("@every -1h", ["bad @every duration '-1h'"]),
    ("@every abc", ["bad @every duration 'abc'", "1h30m"]),
    ("@every 5", ["bad @every duration '5'"]),
    ("@every 1ms", ["bad @every duration '1ms'", "the minimum is 1s"]),
    ("@every 999ms", ["bad @every duration '999ms'", "the minimum is 1s"]),
    ("@every 0.5s", ["bad @every duration '0.5s'", "the minimum is 1s"]),
    ("@every 1y", ["bad @every duration '1y'"]),
    ("@every 1h 30m", ["bad @every duration '1h 30m'"]),
]


@pytest.mark.parametrize(
    ("expression", "fragments"), INVALID, ids=[e or "<empty>" for e, _ in INVALID]
)
def test_invalid_expression_raises_naming_the_bad_part(
    expression: str, fragments: list[str]
) -> None:
    with pytest.raises(CronError) as info:
        CronExpression.parse(expression)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert info.value.expression == expression


def test_cron_error_is_a_value_error_and_a_treadle_error() -> None:
    from treadle._errors import TreadleError

    with pytest.raises(ValueError, match="bad minute field '61' in '61 \\* \\* \\* \\*'"):
        next_fire("61 * * * *", utc(2026, 1, 1))
    assert issubclass(CronError, TreadleError)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "Europe/", "../etc/passwd", "utc+1"])
def test_unknown_time_zone_is_rejected_naming_it(zone: str) -> None:
    with pytest.raises(CronError, match="unknown time zone") as info:
        CronExpression.parse("0 2 * * *", zone)
    assert repr(zone) in str(info.value)


def test_naive_after_is_rejected() -> None:
    with pytest.raises(ValueError, match="naive"):
        next_fire("* * * * *", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        next_fire("@every 1m", datetime(2026, 1, 1))


def test_expression_is_immutable_and_compares_by_text_and_zone() -> None:
    expr = CronExpression.parse("0 2 * * *", "Europe/Berlin")
    with pytest.raises(dataclasses.FrozenInstanceError):
        expr.timezone = "UTC"  # type: ignore[misc]
    assert expr == CronExpression("0 2 * * *", "Europe/Berlin")
    assert expr != CronExpression("0 2 * * *")
    assert expr.zone == BERLIN
    assert expr.fields == "0 2 * * *"
    assert expr.interval is None


# --------------------------------------------------------------------------- valid syntax

EQUIVALENT: list[tuple[str, str]] = [
    ("0 0 * * sun", "0 0 * * 0"),
    ("0 0 * * 7", "0 0 * * 0"),
    ("0 0 * * Sun", "0 0 * * 7"),
    ("0 0 * * mon-FRI", "0 0 * * 1-5"),
    ("0 0 * * 5-7", "0 0 * * 0,5,6"),
    ("0 0 * * sat,SUN", "0 0 * * 6,0"),
    ("0 0 1 jan,Jul *", "0 0 1 1,7 *"),
    ("0 0 1 Jan-mar *", "0 0 1 1-3 *"),
    ("0 0 1 */3 *", "0 0 1 1,4,7,10 *"),
    ("*/15 * * * *", "0,15,30,45 * * * *"),
    ("0-30/10 * * * *", "0,10,20,30 * * * *"),
    ("5/20 * * * *", "5,25,45 * * * *"),
    ("0 9-17/4 * * *", "0 9,13,17 * * *"),
    ("0 0 * * 1-7/2", "0 0 * * 1,3,5,0"),
    ("  0   0\t* *  *  ", "0 0 * * *"),
    ("0 0 * * 3-3", "0 0 * * 3"),
    ("7-7 0 * * *", "7 0 * * *"),
]


@pytest.mark.parametrize(("expression", "same_as"), EQUIVALENT)
def test_names_steps_and_seven_as_sunday_mean_what_cron_means(
    expression: str, same_as: str
) -> None:
    start = utc(2026, 1, 1)
    assert next_fires(expression, start, 12) == next_fires(same_as, start, 12)


# --------------------------------------------------------------------------- next fire (UTC)

NEXT_FIRE: list[tuple[str, datetime, datetime]] = [
    ("* * * * *", utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 1)),
    ("* * * * *", utc(2026, 1, 1, 0, 0, 30), utc(2026, 1, 1, 0, 1)),
    ("*/5 * * * *", utc(2026, 1, 1, 0, 4, 59), utc(2026, 1, 1, 0, 5)),
    ("*/5 * * * *", utc(2026, 1, 1, 0, 5), utc(2026, 1, 1, 0, 10)),
    ("0 2 * * *", utc(2026, 1, 1, 2, 0), utc(2026, 1, 2, 2, 0)),
    ("0 2 * * *", utc(2026, 1, 1, 1, 59, 59), utc(2026, 1, 1, 2, 0)),
    ("59 23 31 12 *", utc(2026, 1, 1), utc(2026, 12, 31, 23, 59)),
    ("0 0 29 2 *", utc(2026, 1, 1), utc(2028, 2, 29)),
    ("0 0 1 * *", utc(2026, 1, 31, 12), utc(2026, 2, 1)),
    ("0 0 31 * *", utc(2026, 4, 1), utc(2026, 5, 31)),
    ("30 8 * * mon-fri", utc(2026, 1, 2, 9), utc(2026, 1, 5, 8, 30)),  # Friday -> Monday
    # Vixie OR rule: both day fields restricted -> the 13th or any Friday
    ("0 0 13 * 5", utc(2026, 1, 1), utc(2026, 1, 2)),  # Friday 2 January
    ("0 0 13 * 5", utc(2026, 1, 10), utc(2026, 1, 13)),  # Tuesday the 13th
    ("0 0 1,15 * mon", utc(2026, 1, 1), utc(2026, 1, 5)),
    # one day field is '*' -> the other one alone decides
    ("0 0 * * 5", utc(2026, 1, 10), utc(2026, 1, 16)),
    ("0 0 13 * *", utc(2026, 1, 1), utc(2026, 1, 13)),
    # a day field starting with '*' counts as unrestricted for the OR rule (Vixie cron)
    ("0 0 */2 * 1", utc(2026, 1, 1), utc(2026, 1, 5)),  # odd day and Monday: AND
    ("0 0 1 1 *", utc(2026, 1, 1), utc(2027, 1, 1)),
    ("0 12 * jun sun", utc(2026, 1, 1), utc(2026, 6, 7, 12)),
    ("0 0 30 2 mon", utc(2026, 1, 1), utc(2026, 2, 2)),  # OR rule keeps it valid
]


# croniter reads a day field such as '*/2' as restricted (OR rule); Vixie cron does not.
NOT_LIKE_CRONITER = {"0 0 */2 * 1"}


@pytest.mark.parametrize(("expression", "after", "expected"), NEXT_FIRE)
def test_next_fire_in_utc(expression: str, after: datetime, expected: datetime) -> None:
    got = next_fire(expression, after)
    assert got == expected
    assert got.tzinfo == ZoneInfo("UTC")
    if expression not in NOT_LIKE_CRONITER:
        assert croniter(expression, after).get_next(datetime) == expected


def test_next_fire_accepts_after_in_another_zone_and_answers_in_the_schedule_zone() -> None:
    after = datetime(2026, 1, 1, 12, 0, tzinfo=NEW_YORK)  # 17:00 UTC, 18:00 Berlin
    got = next_fire("0 20 * * *", after, "Europe/Berlin")
    assert got == berlin(2026, 1, 1, 20, 0)
    assert got.tzinfo == BERLIN
    assert next_fire("0 20 * * *", after) == utc(2026, 1, 1, 20, 0)


# --------------------------------------------------------------------------- property: croniter


def _field(
    low: int, high: int, names: list[str] | None = None, *, open_step: bool = True
) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    number = value.map(str)
    if names:
        number = number | st.sampled_from(names).flatmap(
            lambda name: st.sampled_from([name, name.lower(), name.title()])
        )
    # croniter reads a one-value range such as '3-3' as '*'; cron (and cronsim) as '3'.
    span = (
        st.tuples(value, value)
        .filter(lambda ab: ab[0] != ab[1])
        .map(lambda ab: f"{min(ab)}-{max(ab)}")
    )
    # 'N/s' means N-max/s; for day-of-week croniter takes max as 6, cronsim as 7 (Sunday).
    base = st.just("*") | span | value.map(str) if open_step else st.just("*") | span
    stepped = st.tuples(base, st.integers(1, high - low + 1)).map(lambda bs: f"{bs[0]}/{bs[1]}")
    term = number | span | stepped
    return st.just("*") | st.lists(term, min_size=1, max_size=3).map(",".join)


MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


@st.composite
def five_fields(draw: st.DrawFn) -> str:
    minute = draw(_field(0, 59))
    hour = draw(_field(0, 23))
    dom = draw(_field(1, 31))
    month = draw(_field(1, 12, MONTH_NAMES))
    dow = draw(_field(0, 7, DAY_NAMES, open_step=False))
    # croniter decides AND/OR from the expanded sets, Vixie cron (and cronsim) from a
    # leading '*': compare only where both readings agree.
    if dom != "*" and dow != "*":
        assume(not dom.startswith("*") and not dow.startswith("*"))
        # croniter also reads a field that lists its whole range (such as '0-6') as '*'.
        expanded = croniter(f"* * {dom} * {dow}").expanded
        assume(expanded[2] != ["*"] and len(expanded[2]) < 31)
        assume(expanded[4] != ["*"] and len({d % 7 for d in expanded[4]}) < 7)
    return f"{minute} {hour} {dom} {month} {dow}"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    expression=five_fields(),
    after=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2040, 12, 31), timezones=st.just(UTC)
    ),
)
def test_next_fire_agrees_with_croniter_in_utc(expression: str, after: datetime) -> None:
    try:
        parsed = CronExpression.parse(expression)
    except CronError:
        assume(False)
        raise
    expected = croniter(expression, after).get_next(datetime)
    assert parsed.next_fire(after) == expected
    assert parsed.next_fire(after) > after


# --------------------------------------------------------------------------- macros and @every


@pytest.mark.parametrize(
    ("macro", "fields"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_macros_stand_for_five_field_expressions(macro: str, fields: str) -> None:
    assert MACROS[macro] == fields
    assert CronExpression.parse(macro).fields == fields
    assert CronExpression.parse(macro.upper()).fields == fields
    start = utc(2026, 3, 4, 5, 6)
    assert next_fires(macro, start, 3) == next_fires(fields, start, 3)


MACRO_NEXT: list[tuple[str, datetime]] = [
    ("@yearly", utc(2027, 1, 1)),
    ("@annually", utc(2027, 1, 1)),
    ("@monthly", utc(2026, 4, 1)),
    ("@weekly", utc(2026, 3, 8)),  # the next Sunday
    ("@daily", utc(2026, 3, 5)),
    ("@midnight", utc(2026, 3, 5)),
    ("@hourly", utc(2026, 3, 4, 6)),
]


@pytest.mark.parametrize(("macro", "expected"), MACRO_NEXT)
def test_macro_next_fire(macro: str, expected: datetime) -> None:
    assert next_fire(macro, utc(2026, 3, 4, 5, 6)) == expected


@pytest.mark.parametrize(
    ("expression", "interval"),
    [
        ("@every 1h30m", timedelta(hours=1, minutes=30)),
        ("@every 90s", timedelta(seconds=90)),
        ("@every 1.5h", timedelta(hours=1, minutes=30)),
        ("@every 1s", timedelta(seconds=1)),
        ("@every 1500ms", timedelta(milliseconds=1500)),
        ("@every 1d", timedelta(days=1)),
        ("@every 24h", timedelta(days=1)),
        ("@EVERY 5m", timedelta(minutes=5)),
        ("  @every   10m  ", timedelta(minutes=10)),
    ],
)
def test_every_fires_one_interval_after(expression: str, interval: timedelta) -> None:
    parsed = CronExpression.parse(expression)
    assert parsed.interval == interval
    assert parsed.fields is None
    after = utc(2026, 5, 6, 7, 8, 9, 123456)
    assert next_fire(expression, after) == after + interval
    assert next_fires(expression, after, 3) == [after + k * interval for k in (1, 2, 3)]


def test_every_measures_elapsed_time_across_the_spring_forward_gap() -> None:
    # Europe/Berlin 2026-03-29: 02:00 CET becomes 03:00 CEST; one real hour after 01:30 CET
    # is 03:30 CEST, not a wall-clock 02:30 that does not exist.
    got = next_fire("@every 1h", berlin(2026, 3, 29, 1, 30), "Europe/Berlin")
    assert same_instant(got, berlin(2026, 3, 29, 3, 30))
    assert got.astimezone(UTC) - berlin(2026, 3, 29, 1, 30).astimezone(UTC) == timedelta(hours=1)


def test_every_measures_elapsed_time_across_the_repeated_hour() -> None:
    # Europe/Berlin 2026-10-25: 03:00 CEST becomes 02:00 CET; one hour after 02:30 CEST is
    # 02:30 CET (fold=1).
    got = next_fire("@every 1h", berlin(2026, 10, 25, 2, 30), "Europe/Berlin")
    assert same_instant(got, berlin(2026, 10, 25, 2, 30, fold=1))
    assert got.fold == 1


# --------------------------------------------------------------------------- daylight saving

# Europe/Berlin, Sunday 2026-03-29: at 02:00 CET (01:00 UTC) clocks jump to 03:00 CEST, so
# 02:00-02:59 does not exist that day.
# Europe/Berlin, Sunday 2026-10-25: at 03:00 CEST (01:00 UTC) clocks go back to 02:00 CET, so
# 02:00-02:59 happens twice (00:00-00:59 UTC in CEST, then 01:00-01:59 UTC in CET).


def test_berlin_spring_forward_nonexistent_fixed_time_fires_when_the_clock_jumps() -> None:
    fires = next_fires("30 2 * * *", berlin(2026, 3, 27, 12), 3, "Europe/Berlin")
    assert [f.astimezone(UTC) for f in fires] == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 02:30 does not exist: fires at 03:00 CEST
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]
    assert fires[1] == berlin(2026, 3, 29, 3, 0)
    assert fires[1].utcoffset() == timedelta(hours=2)


def test_berlin_spring_forward_two_slots_in_the_gap_fire_once() -> None:
    fires = next_fires("0,30 2 * * *", berlin(2026, 3, 29, 0), 3, "Europe/Berlin")
    assert [f.astimezone(UTC) for f in fires] == [
        utc(2026, 3, 29, 1, 0),  # 02:00 and 02:30 both land on 03:00 CEST, once
        utc(2026, 3, 30, 0, 0),  # 02:00 CEST
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]


def test_berlin_spring_forward_fixed_time_after_the_jump_is_not_repeated() -> None:
    # Asked from 03:00 CEST on the day (right when it fired), the next one is the next day.
    got = next_fire("30 2 * * *", berlin(2026, 3, 29, 3, 0), "Europe/Berlin")
    assert got.astimezone(UTC) == utc(2026, 3, 30, 0, 30)


def test_berlin_spring_forward_wildcard_hour_skips_the_missing_hour() -> None:
    fires = next_fires("0 * * * *", berlin(2026, 3, 29, 0, 30), 3, "Europe/Berlin")
    assert [f.astimezone(UTC) for f in fires] == [
        utc(2026, 3, 29, 0, 0),  # 01:00 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST: the 02:00 slot does not exist
        utc(2026, 3, 29, 2, 0),  # 04:00 CEST
    ]
    fires = next_fires("*/30 2 * * *", berlin(2026, 3, 29, 0), 1, "Europe/Berlin")
    assert fires[0].astimezone(UTC) == utc(2026, 3, 30, 0, 0)  # nothing on the 29th


def test_berlin_fall_back_ambiguous_fixed_time_fires_once_at_first_occurrence() -> None:
    fires = next_fires("30 2 * * *", berlin(2026, 10, 24, 12), 3, "Europe/Berlin")
    assert [f.astimezone(UTC) for f in fires] == [
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first of the two 02:30s
        utc(2026, 10, 26, 1, 30),  # 02:30 CET the next day: the second 02:30 is skipped
        utc(2026, 10, 27, 1, 30),
    ]
    assert fires[0].fold == 0
    assert fires[0].utcoffset() == timedelta(hours=2)


def test_berlin_fall_back_asked_during_the_second_pass_does_not_answer_the_past() -> None:
    # 02:15 CET (fold=1) is 01:15 UTC, after 02:30 CEST (00:30 UTC) has already fired.
    after = berlin(2026, 10, 25, 2, 15, fold=1)
    got = next_fire("30 2 * * *", after, "Europe/Berlin")
    assert got.astimezone(UTC) == utc(2026, 10, 26, 1, 30)
    assert got.astimezone(UTC) > after.astimezone(UTC)


def test_berlin_fall_back_wildcard_hour_fires_in_both_passes() -> None:
    fires = next_fires("0 * * * *", berlin(2026, 10, 25, 0, 30), 4, "Europe/Berlin")
    assert [f.astimezone(UTC) for f in fires] == [
        utc(2026, 10, 24, 23, 0),  # 01:00 CEST
        utc(2026, 10, 25, 0, 0),  # 02:00 CEST
        utc(2026, 10, 25, 1, 0),  # 02:00 CET (fold=1)
        utc(2026, 10, 25, 2, 0),  # 03:00 CET
    ]
    assert [f.fold for f in fires] == [0, 0, 1, 0]
    fires = next_fires("*/30 2 * * *", berlin(2026, 10, 25, 1, 59), 4, "Europe/Berlin")
    assert [f.astimezone(UTC) for f in fires] == [
        utc(2026, 10, 25, 0, 0),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1, 0),
        utc(2026, 10, 25, 1, 30),
    ]


def test_daily_schedule_in_a_zone_keeps_wall_time_across_both_transitions() -> None:
    spring = next_fires("0 9 * * *", berlin(2026, 3, 28, 12), 2, "Europe/Berlin")
    assert [f.astimezone(UTC) for f in spring] == [utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)]
    autumn = next_fires("0 9 * * *", berlin(2026, 10, 24, 12), 2, "Europe/Berlin")
    assert [f.astimezone(UTC) for f in autumn] == [utc(2026, 10, 25, 8), utc(2026, 10, 26, 8)]
    assert all(f.hour == 9 and f.tzinfo == BERLIN for f in spring + autumn)


# --------------------------------------------------------------------------- previews


def test_next_fires_previews_a_schedule_in_order() -> None:
    assert next_fires("0 2 * * *", utc(2026, 1, 1, 3), 3) == [
        utc(2026, 1, 2, 2),
        utc(2026, 1, 3, 2),
        utc(2026, 1, 4, 2),
    ]
    assert next_fires("0 9 * * mon", utc(2026, 1, 1), 2, "America/New_York") == [
        datetime(2026, 1, 5, 9, tzinfo=NEW_YORK),
        datetime(2026, 1, 12, 9, tzinfo=NEW_YORK),
    ]


def test_next_fires_of_zero_is_empty_and_negative_is_rejected() -> None:
    assert next_fires("* * * * *", utc(2026, 1, 1), 0) == []
    with pytest.raises(ValueError, match="must not be negative"):
        next_fires("* * * * *", utc(2026, 1, 1), -1)


@settings(max_examples=100, deadline=None)
@given(
    expression=five_fields(),
    after=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
)
def test_next_fires_are_strictly_increasing_in_any_zone(
    expression: str, after: datetime, zone: str
) -> None:
    try:
        parsed = CronExpression.parse(expression, zone)
    except CronError:
        assume(False)
        raise
    fires = parsed.next_fires(after, 5)
    instants = [after.astimezone(UTC), *(f.astimezone(UTC) for f in fires)]
    assert instants == sorted(set(instants))
    assert all(f.tzinfo == ZoneInfo(zone) for f in fires)
