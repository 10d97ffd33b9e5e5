"""Parameters from the run's data: builder options given as functions of the run's state.

A step's dynamic parameters are evaluated once, when the step starts, checked, and recorded in
JSON form in the step's cursor entry (``p``) and in the history (``params_computed``); a
recovered run, and every reader without step code (a :class:`~treadle.Client`, the dashboard),
uses the recorded values. Each value's check names the step and the bad value.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeAlias, cast

from ._duration import parse_duration
from ._errors import DefinitionError, InvalidId
from ._ids import check_id

Dynamic: TypeAlias = Callable[[Any], "Any | Awaitable[Any]"]
"""A parameter computed from the run: ``fn(state)``, plain or ``async``, called once when the
step starts (``state`` is the run's :class:`~treadle.State` at that moment)."""


def is_dynamic(value: object) -> bool:
    """Whether a builder option is a function of the state rather than a value."""
    return callable(value) and not isinstance(value, type)


def takes_item(fn: Any) -> bool:
    """Whether a function of the state takes the current element too (``fn(state, item)``:
    a sub-workflow's input inside a ``for_each`` or a parallel map)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


async def evaluate(fn: Dynamic, state: Any, item: Any = None) -> Any:
    """Call a dynamic parameter (awaiting it if it is async); one that takes the element too
    (:func:`takes_item`) gets ``item``."""
    value = cast("Callable[..., Any]", fn)(state, item) if takes_item(fn) else fn(state)
    if inspect.isawaitable(value):
        value = await value
    return value


def _bad(step: str, what: str, rule: str, value: object) -> DefinitionError:
    return DefinitionError(f"step {step!r}: {what} must be {rule}, not {value!r}")


def approvers(step: str, value: object) -> list[str]:
    """Approvers: a list of non-empty strings (duplicates dropped, order kept)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _bad(step, "approvers", "a list of names", value)
    for who in value:
        if not isinstance(who, str) or not who:
            raise _bad(step, "approvers", "a list of non-empty strings", value)
    return list(dict.fromkeys(value))


def positive_int(step: str, what: str, value: object) -> int:
    """A count (quorum, attempts): an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(step, what, "an integer >= 1", value)
    return value


def seconds(step: str, what: str, value: object) -> float:
    """A duration (``"90s"``, seconds, a timedelta) in seconds."""
    try:
        return parse_duration(value).total_seconds()
    except ValueError as exc:
        raise _bad(step, what, f"a duration ({exc})", value) from None


def epoch(step: str, what: str, value: object) -> float:
    """An absolute time: a timezone-aware datetime (or ISO 8601 text with an offset)."""
    when = value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise _bad(step, what, "a timezone-aware datetime", value) from None
    if not isinstance(when, datetime) or when.tzinfo is None or when.utcoffset() is None:
        raise _bad(step, what, "a timezone-aware datetime", value)
    return when.timestamp()


def workflow_name(step: str, value: object) -> str:
    """A workflow name (an id)."""
    try:
        return check_id(value, "workflow name")
    except InvalidId as exc:
        raise DefinitionError(f"step {step!r}: {exc}") from None


def json_input(step: str, value: object) -> dict[str, Any] | None:
    """A child's input: a JSON object or None (detached from the caller's dict)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad(step, "input", "a dict or None", value)
    try:
        return dict(json.loads(json.dumps(value, allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"step {step!r}: input is not JSON-serialisable: {exc}") from None


CHECKS: dict[str, Callable[[str, object], Any]] = {
    "approvers": approvers,
    "quorum": lambda step, v: positive_int(step, "quorum", v),
    "attempts": lambda step, v: positive_int(step, "retry attempts", v),
    "timeout": lambda step, v: seconds(step, "timeout", v),
    "duration": lambda step, v: seconds(step, "sleep duration", v),
    "until": lambda step, v: epoch(step, "wake-up time", v),
    "workflow": workflow_name,
    "input": json_input,
}
"""How each parameter is checked and put in JSON form, by its recorded name."""


def as_timedelta(value: float | None) -> timedelta | None:
    """Recorded seconds as a timedelta."""
    return None if value is None else timedelta(seconds=value)


def all_recorded(cursor_json: str) -> dict[str, dict[str, Any]]:
    """The recorded parameters of every step a stored cursor is at, by step name (the
    innermost entry, when a loop has several of one step)."""
    try:
        nodes = json.loads(cursor_json).get("n", {})
    except (ValueError, AttributeError):
        return {}
    found: dict[str, dict[str, Any]] = {}
    for path, entry in nodes.items():
        if isinstance(entry, dict) and isinstance(entry.get("p"), dict):
            found[path.rsplit("/", 1)[-1].split("#", 1)[0]] = entry["p"]
    return found
