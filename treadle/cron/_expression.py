"""Cron expressions: parse once, then ask for the next due time.

Accepted forms:

* standard five-field cron, ``minute hour day-of-month month day-of-week``, with lists
  (``1,15``), ranges (``1-5``), steps (``*/15``, ``0-30/10``, and ``5/15`` meaning
  ``5-59/15``), month and weekday names in any case (``jan``, ``Mon``), and both 0 and 7 for
  Sunday. Day-of-month and day-of-week follow Vixie cron: when either field starts with ``*``
  a day must match both, otherwise a day matching either one is due (``0 0 1,15 * MON`` fires
  on the 1st, the 15th and every Monday). The non-standard ``L``, ``W``, ``#`` and ``?`` and
  a seconds field are rejected;
* the macros ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``)
  and ``@hourly``;
* ``@every <duration>`` with a Go-style duration (``@every 1h30m``, at least ``1s``): due
  ``duration`` after the given instant, measured in elapsed time.

Five-field expressions are evaluated by `cronsim <https://github.com/cuu508/cronsim>`_ in the
schedule's IANA time zone. Daylight-saving days follow Debian/Vixie cron:

* **Fixed-time jobs** — the minute field and the hour field both do not start with ``*``
  (``30 2 * * *``, ``0,30 2 * * *``, ``0 9-17 * * *``) — run on the wall clock. A time that
  does not exist (Europe/Berlin, 2026-03-29, 02:00 -> 03:00) fires at the first existing
  minute after it, the moment the clock jumps: ``30 2 * * *`` fires at 03:00 CEST that day,
  and ``0,30 2 * * *`` fires once at 03:00. A time that happens twice (Europe/Berlin,
  2026-10-25, 03:00 -> 02:00) fires once, at its first occurrence (CEST, ``fold=0``).
* **Wildcard jobs** — the minute or the hour field starts with ``*`` (``0 * * * *``,
  ``*/15 * * * *``, ``*/30 2 * * *``) — follow elapsed time: slots inside the skipped hour do
  not fire, and slots inside the repeated hour fire in both passes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from treadle._duration import parse_duration
from treadle._errors import TreadleError

__all__ = ["MIN_EVERY", "CronError", "CronExpression", "next_fire", "next_fires"]


class CronError(TreadleError, ValueError):
    """A cron expression or time zone is invalid; the message says which part and why."""

    def __init__(self, expression: str, message: str) -> None:
        super().__init__(message)
        self.expression = expression


MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The macros and the five-field expressions they stand for (``@every`` is separate)."""

MIN_EVERY = timedelta(seconds=1)
"""The shortest ``@every`` interval."""

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day-of-month", 1, 31, {}),
    _Field("month", 1, 12, {name: i + 1 for i, name in enumerate(_MONTHS)}),
    _Field("day-of-week", 0, 7, {name: i for i, name in enumerate(_DAYS)}),
)
_FIELD_LIST = " ".join(f.name for f in _FIELDS)
_TERM = re.compile(r"(?P<start>\*|\d+|[A-Za-z]+)(?:-(?P<end>\d+|[A-Za-z]+))?(?:/(?P<step>\d+))?")
_VALIDATE_AT = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class CronExpression:
    """A validated cron expression in an IANA time zone.

    Constructing one (directly or with :meth:`parse`) validates the expression and the zone at
    once and raises :class:`CronError` (a ``ValueError``) naming the bad part. Instances are
    immutable and compare by ``(expression, timezone)``.
    """

    expression: str
    timezone: str = "UTC"
    fields: str | None = field(init=False, repr=False, compare=False)
    """The five-field form (macros expanded, names upper-cased); ``None`` for ``@every``."""
    interval: timedelta | None = field(init=False, repr=False, compare=False)
    """The ``@every`` duration; ``None`` for five-field expressions and macros."""
    zone: ZoneInfo = field(init=False, repr=False, compare=False)
    """The schedule's time zone; :meth:`next_fire` returns datetimes in it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", _zone(self.expression, self.timezone))
        fields, interval = _parse(self.expression)
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "interval", interval)

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> CronExpression:
        """Validate ``expression`` in the IANA zone ``timezone``; raise :class:`CronError`."""
        return cls(expression, timezone)

    def next_fire(self, after: datetime) -> datetime:
        """The first due time strictly after ``after``, as an aware datetime in :attr:`zone`.

        ``after`` must be timezone-aware (any zone; naive raises ``ValueError``). Due times
        are whole minutes except for ``@every``, which returns exactly ``after + interval`` in
        elapsed time. See the module docstring for daylight-saving days.
        """
        after_utc = _aware(after).astimezone(UTC)
        if self.interval is not None:
            return (after_utc + self.interval).astimezone(self.zone)
        assert self.fields is not None
        zone: tzinfo = UTC if self.timezone == "UTC" else self.zone
        try:
            # On the repeated hour cronsim may answer the first pass of a time that lies
            # before ``after`` (``after`` in the second pass); keep going until it is later.
            for candidate in CronSim(self.fields, after_utc.astimezone(zone)):
                if candidate.astimezone(UTC) > after_utc:
                    return candidate.astimezone(self.zone)
        except CronSimError as exc:  # pragma: no cover - validated in __post_init__
            raise CronError(
                self.expression, f"bad cron expression {self.expression!r}: {exc}"
            ) from exc
        raise CronError(  # pragma: no cover - cronsim looks 50 years ahead
            self.expression,
            f"cron expression {self.expression!r} has no due time in the 50 years after {after}",
        )

    def next_fires(self, after: datetime, n: int) -> list[datetime]:
        """The next ``n`` due times after ``after``, each strictly after the one before."""
        if n < 0:
            raise ValueError(f"n must not be negative, got {n}")
        out: list[datetime] = []
        current = after
        for _ in range(n):
            current = self.next_fire(current)
            out.append(current)
        return out


def next_fire(expression: str, after: datetime, timezone: str = "UTC") -> datetime:
    """The first due time of ``expression`` strictly after the aware datetime ``after``.

    The result is an aware datetime in ``timezone``; for ``@every d`` it is ``after + d``.
    Raises :class:`CronError` (a ``ValueError``) for an invalid expression or zone.
    """
    return CronExpression(expression, timezone).next_fire(after)


def next_fires(expression: str, after: datetime, n: int, timezone: str = "UTC") -> list[datetime]:
    """The next ``n`` due times of ``expression`` after ``after``, to preview a schedule."""
    return CronExpression(expression, timezone).next_fires(after, n)


def _aware(after: datetime) -> datetime:
    if not isinstance(after, datetime):
        raise TypeError(f"expected a datetime, got {after!r}")
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError(f"datetime {after.isoformat()} is naive: pass a timezone-aware one")
    return after


def _zone(expression: str, name: str) -> ZoneInfo:
    problem = f"unknown time zone {name!r}: expected an IANA name such as 'Europe/Berlin'"
    if not isinstance(name, str) or not name:
        raise CronError(expression, problem)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(expression, problem) from None


def _parse(expression: str) -> tuple[str | None, timedelta | None]:
    if not isinstance(expression, str):
        raise CronError(str(expression), f"cron expression must be a string, got {expression!r}")
    text = expression.strip()
    if not text:
        raise CronError(
            expression,
            "empty cron expression: expected five fields such as '0 2 * * *',"
            " a macro such as '@daily', or '@every 1h30m'",
        )
    if text.startswith("@"):
        return _parse_macro(expression, text)
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            expression,
            f"wrong number of fields in {expression!r}: expected 5 ({_FIELD_LIST}),"
            f" got {len(parts)}",
        )
    for spec, part in zip(_FIELDS, parts, strict=True):
        problem = _field_problem(spec, part)
        if problem is not None:
            raise CronError(
                expression, f"bad {spec.name} field {part!r} in {expression!r}: {problem}"
            )
    fields = " ".join(part.upper() for part in parts)
    try:
        CronSim(fields, _VALIDATE_AT)
    except CronSimError as exc:
        if str(exc) == "Bad day-of-month":
            raise CronError(
                expression,
                f"bad day-of-month field {parts[2]!r} in {expression!r}: no month in the month"
                f" field {parts[3]!r} has that day, so it would never fire",
            ) from None
        raise CronError(expression, f"bad cron expression {expression!r}: {exc}") from None
    return fields, None


def _parse_macro(expression: str, text: str) -> tuple[str | None, timedelta | None]:
    name, _, argument = text.replace("\t", " ").partition(" ")
    name = name.lower()
    argument = argument.strip()
    if name == "@every":
        if not argument:
            raise CronError(
                expression, f"@every needs a duration in {expression!r}, such as '@every 1h30m'"
            )
        try:
            interval = parse_duration(argument)
        except ValueError as exc:
            raise CronError(
                expression, f"bad @every duration {argument!r} in {expression!r}: {exc}"
            ) from exc
        if interval <= timedelta(0):
            raise CronError(
                expression,
                f"bad @every duration {argument!r} in {expression!r}: it must be greater than 0",
            )
        if interval < MIN_EVERY:
            raise CronError(
                expression,
                f"bad @every duration {argument!r} in {expression!r}: the minimum is "
                f"{MIN_EVERY.total_seconds():g}s (a schedule is not a busy loop)",
            )
        return None, interval
    if name not in MACROS:
        known = ", ".join([*MACROS, "@every <duration>"])
        raise CronError(
            expression, f"unknown macro {name!r} in {expression!r}: expected one of {known}"
        )
    if argument:
        raise CronError(
            expression, f"macro {name!r} takes no argument, got {argument!r} in {expression!r}"
        )
    return MACROS[name], None


def _field_problem(spec: _Field, part: str) -> str | None:
    """Why ``part`` is not a valid value of ``spec``, or ``None`` when it is."""
    for term in part.split(","):
        if not term:
            return "empty item in the list"
        match = _TERM.fullmatch(term)
        if match is None:
            note = ""
            if re.search(r"[LW#?]", term.upper()):
                note = "; the L, W, # and ? extensions are not supported"
            return (
                f"{term!r} is not a value, a range (1-5), a step (*/15) or a list (1,5)"
                f" of {spec.low}-{spec.high}{note}"
            )
        start, end, step = match.group("start", "end", "step")
        if start == "*":
            if end is not None:
                return f"{term!r}: '*' cannot start a range"
        else:
            values: list[int] = []
            for token in (start, end):
                if token is None:
                    continue
                value, problem = _value(spec, token)
                if problem is not None:
                    return problem
                assert value is not None
                values.append(value)
            if len(values) == 2 and values[1] < values[0]:
                return f"range {start}-{end} runs backwards"
        if step is not None and int(step) == 0:
            return f"step in {term!r} must be at least 1"
    return None


def _value(spec: _Field, token: str) -> tuple[int | None, str | None]:
    if token.isdigit():
        value = int(token)
        if not spec.low <= value <= spec.high:
            return None, f"{value} is out of range {spec.low}-{spec.high}"
        return value, None
    if not spec.names:
        note = ""
        if re.search(r"[LW]", token.upper()):
            note = "; the L, W, # and ? extensions are not supported"
        return None, f"{token!r} is not a number{note}"
    named = spec.names.get(token.upper())
    if named is None:
        return None, f"unknown {spec.name} name {token!r}: expected one of {', '.join(spec.names)}"
    return named, None
