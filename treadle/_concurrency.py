"""Concurrency limits of a workflow: ``treadle.new("sync").concurrency(1, key=...)``.

A limit is a number of slots per key; a run takes a slot when it first executes and holds it
until it ends. The slots live in the database (``limit_holders``), so the limit holds across
every engine on it: see :mod:`treadle.persistence._limit_scripts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._errors import DefinitionError
from ._params import Dynamic, evaluate

__all__ = ["ON_CONFLICT", "Concurrency", "check_concurrency", "limit_key"]

#: What a run that finds every slot of its key taken does: wait for one (``"queue"``), end at
#: once CANCELLED (``"skip"``), or ask the holders to cancel and wait behind them
#: (``"cancel_running"``).
ON_CONFLICT = ("queue", "skip", "cancel_running")


@dataclass(frozen=True)
class Concurrency:
    """A workflow's concurrency limit: at most ``limit`` runs hold a slot of one key at a
    time; ``key`` (a function of the state returning a str, or None: one key for the whole
    workflow) is computed once, when the run first executes."""

    limit: int
    key: Dynamic | None = None
    on_conflict: str = "queue"


def check_concurrency(
    workflow: str, limit: object, key: object, on_conflict: object
) -> Concurrency:
    """The :class:`Concurrency` of these options, or a :class:`DefinitionError` naming the
    workflow and what is wrong."""
    owner = f"workflow {workflow!r}: concurrency"
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise DefinitionError(f"{owner} limit must be an integer >= 1, not {limit!r}")
    if key is not None and (not callable(key) or isinstance(key, type)):
        raise DefinitionError(
            f"{owner} key must be a function of the state returning a str, not {key!r}"
        )
    if on_conflict not in ON_CONFLICT:
        raise DefinitionError(
            f"{owner}: on_conflict must be one of {', '.join(map(repr, ON_CONFLICT))}, "
            f"not {on_conflict!r}"
        )
    return Concurrency(limit, key, str(on_conflict))


async def limit_key(workflow: str, rule: Concurrency, state: Any) -> str:
    """The slot key of a run: the workflow's name, with the computed key in brackets
    (``sync[t-7]``). A key function that raises or returns anything but a non-empty str
    raises :class:`DefinitionError` naming the workflow and the value."""
    if rule.key is None:
        return workflow
    owner = f"workflow {workflow!r}: concurrency key"
    try:
        value = await evaluate(rule.key, state)
    except Exception as exc:
        raise DefinitionError(f"{owner} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(value, str) or not value:
        raise DefinitionError(f"{owner} must return a non-empty str, not {value!r}")
    return f"{workflow}[{value}]"
