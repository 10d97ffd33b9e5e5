"""The builder's checks of what it is given: each raises :class:`~treadle.DefinitionError`
naming the step and the bad value."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from ._duration import parse_duration
from ._errors import DefinitionError, InvalidId
from ._ids import check_id
from ._nodes import ON_PARENT_END, Node, as_node, is_step_name
from ._params import is_dynamic


def _step_name(owner: str, kind: str, name: object) -> str:
    if not is_step_name(name):
        raise DefinitionError(
            f"workflow {owner!r}: a {kind} step name must be a non-empty string "
            f"without '/' or '#', not {name!r}"
        )
    assert isinstance(name, str)
    return name


def _wait_name(owner: str, kind: str, name: object) -> str:
    try:
        return check_id(name, f"{kind} name")
    except InvalidId as exc:
        raise DefinitionError(f"workflow {owner!r}: {exc}") from None


def _nodes(owner: str, steps: Sequence[object]) -> tuple[Node, ...]:
    try:
        return tuple(as_node(s) for s in steps)
    except DefinitionError as exc:
        raise DefinitionError(f"{owner}: {exc}") from None


def _callable(owner: str, what: str, fn: object) -> None:
    if not callable(fn):
        raise DefinitionError(f"{owner}: {what} {fn!r} is not callable")


def _duration(owner: str, value: object) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise DefinitionError(f"{owner}: {exc}") from None


def _positive_int(owner: str, what: str, n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DefinitionError(f"{owner}: {what} must be an integer >= 1, not {n!r}")
    return n


def _duration_or_dynamic(owner: str, value: object) -> object:
    """A duration, or a function of the state that computes one."""
    return value if is_dynamic(value) else _duration(owner, value)


def _positive_duration(owner: str, what: str, value: object) -> timedelta:
    duration = _duration(owner, value)
    if duration <= timedelta(0):
        raise DefinitionError(f"{owner}: {what} must be positive, not {value!r}")
    return duration


def _aware(owner: str, when: object) -> object:
    """An aware datetime, or a function of the state that computes one."""
    if is_dynamic(when):
        return when
    if not isinstance(when, datetime) or when.utcoffset() is None:
        raise DefinitionError(
            f"{owner}: the wake-up time must be a timezone-aware datetime or a function of "
            f"the state, not {when!r}"
        )
    return when


def _on_parent_end(owner: str, value: object) -> str:
    if value not in ON_PARENT_END:
        raise DefinitionError(
            f"{owner}: on_parent_end must be 'cancel' or 'abandon', not {value!r}"
        )
    assert isinstance(value, str)
    return value
