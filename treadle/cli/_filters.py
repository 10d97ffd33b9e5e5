"""The options that make a :class:`~treadle.RunFilter` on the command line, shared by
``treadle runs`` and ``treadle bulk`` (one definition of a filter, as in the engine)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from .._duration import parse_duration
from .._errors import TreadleError
from .._labels import parse_label
from .._search import RunFilter
from .._state import Status

F = TypeVar("F", bound=Callable[..., Any])

TIME_HELP = "an ISO 8601 time (UTC unless it says) or a duration ago, e.g. 2h"


def _labels(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    try:
        return dict(parse_label(text) for text in value)
    except (TreadleError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from None


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        found = datetime.fromisoformat(value)
        return found if found.tzinfo else found.replace(tzinfo=UTC)
    except ValueError:
        pass
    try:
        return datetime.now(UTC) - parse_duration(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not {TIME_HELP}") from None


_TIMES = ("created-after", "created-before", "updated-after", "updated-before")


def filter_options(fn: F) -> F:
    """``--workflow``, ``--status``, ``--version``, ``--label k=v`` (repeatable), the four time
    bounds and ``--error``: the command gets them as one ``run_filter`` argument."""
    for name in reversed(_TIMES):
        fn = click.option(
            f"--{name}", callback=_time, metavar="TIME", help=f"Runs {name.replace('-', ' ')} "
            f"TIME: {TIME_HELP}.",
        )(fn)  # fmt: skip
    options = [
        click.option("--workflow", "-w", help="Only runs of this workflow."),
        click.option(
            "--status",
            "-s",
            type=click.Choice([s.value for s in Status]),
            help="Only runs with this status.",
        ),
        click.option(
            "--version", "run_version", metavar="LABEL", help="Only runs on this version label."
        ),
        click.option(
            "--label",
            "-l",
            "labels",
            multiple=True,
            callback=_labels,
            metavar="KEY=VALUE",
            help="Only runs with this label (repeatable: all of them).",
        ),
        click.option("--error", "error", metavar="TEXT", help="Only runs whose error has TEXT."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def run_filter(kwargs: dict[str, Any]) -> RunFilter:
    """Take the options of :func:`filter_options` out of ``kwargs`` as one filter."""
    status = kwargs.pop("status")
    times = {t.replace("-", "_"): kwargs.pop(t.replace("-", "_")) for t in _TIMES}
    try:
        return RunFilter(
            workflow=kwargs.pop("workflow"),
            status=None if status is None else Status(status),
            version=kwargs.pop("run_version"),
            labels=kwargs.pop("labels"),
            error_contains=kwargs.pop("error"),
            **times,
        )
    except (TreadleError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None


def is_empty(flt: RunFilter) -> bool:
    """Whether ``flt`` matches every run."""
    return flt == RunFilter()
