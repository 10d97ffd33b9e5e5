"""The options of priority and debounce (``treadle start``, ``treadle cron add``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from .._priority import MAX_PRIORITY, MIN_PRIORITY

F = TypeVar("F", bound=Callable[..., Any])


def priority_option(help: str) -> Callable[[F], F]:
    """``--priority N``, an int within the bounds of a priority (a usage error otherwise)."""
    return click.option(
        "--priority",
        type=click.IntRange(MIN_PRIORITY, MAX_PRIORITY),
        default=0,
        show_default=True,
        help=help,
    )


def debounce_options(fn: F) -> F:
    """``--debounce-key KEY``, ``--debounce DURATION`` and ``--debounce-max DURATION``."""
    given = [
        ("--debounce-max", "DURATION", "the run begins no later than DURATION after the first"),
        ("--debounce", "DURATION", "the run begins DURATION after the last start with the key"),
    ]
    for name, metavar, what in given:
        fn = click.option(name, metavar=metavar, help=f"With --debounce-key: {what}.")(fn)
    return click.option(
        "--debounce-key",
        metavar="KEY",
        help="Starts of WORKFLOW with this key within --debounce make one run (its id is printed).",
    )(fn)
