"""Bulk actions: one action on every run a :class:`~treadle.RunFilter` matches, page by page.

Each action is a per-run coroutine in :data:`ACTIONS` (name → coroutine), preceded by a check
of whether it applies to the run at all (:data:`CHECKS`), which a dry run reports without
touching anything. Every run is acted on in transactions of its own: a run is either acted on
or not, whatever happens to the process, and one run's refusal never stops the others.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import DataError, TreadleError
from .._ids import check_id
from .._search import RunFilter
from .._state import Status
from ..persistence._records import RunRecord
from .convert import to_state
from .executor import Executor
from .operator import Operator
from .search import check_limit


@dataclass(frozen=True)
class Hands:
    """What the actions act through: the executor of runs and the operator's actions."""

    executor: Executor
    operator: Operator


@dataclass(frozen=True)
class BulkOptions:
    """What a bulk action needs besides the run: who, and the action's own arguments."""

    by: str | None = None
    reason: str | None = None
    to: str | None = None
    rename: dict[str, str] | None = None

    @property
    def detail(self) -> dict[str, Any]:
        """What the run's history event records about the action."""
        return {"by": self.by, "bulk": True}


@dataclass(frozen=True)
class BulkResult:
    """What a bulk action did: the ids of the runs it ``applied`` to (for a dry run: would
    apply to), newest first, and those it ``skipped``, each with the reason."""

    action: str
    dry_run: bool
    applied: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


Action = Callable[[Hands, RunRecord, BulkOptions], Awaitable[None]]
Check = Callable[[RunRecord], str | None]


async def _cancel(hands: Hands, record: RunRecord, options: BulkOptions) -> None:
    await hands.executor.cancel(record, options.detail)


async def _resume(hands: Hands, record: RunRecord, options: BulkOptions) -> None:
    await hands.executor.resume(record, options.detail)


async def _retry(hands: Hands, record: RunRecord, options: BulkOptions) -> None:
    await hands.operator.decide(record, "retry", options.by, bulk=True)


async def _abort(hands: Hands, record: RunRecord, options: BulkOptions) -> None:
    reason = str(options.reason)
    await hands.operator.decide(record, "abort", options.by, reason=reason, bulk=True)


async def _migrate(hands: Hands, record: RunRecord, options: BulkOptions) -> None:
    plan = await hands.operator.migrate(record, options.to, options.rename, options.by)
    if not plan.ok:
        raise DataError("; ".join(plan.reasons))


async def _plan_migration(hands: Hands, record: RunRecord, options: BulkOptions) -> None:
    plan = await hands.operator.migrate(record, options.to, options.rename, None, dry_run=True)
    if not plan.ok:
        raise DataError("; ".join(plan.reasons))


async def _delete(hands: Hands, record: RunRecord, options: BulkOptions) -> None:
    await hands.executor.persistence.delete_run(record.id)  # whole, with its descendants


def _finished(record: RunRecord) -> str | None:
    return None if record.status.finished else f"it is {record.status.value}, not finished"


def _unfinished(record: RunRecord) -> str | None:
    return f"it is {record.status.value}" if record.status.finished else None


def _cancellable(record: RunRecord) -> str | None:
    if record.control == "cancel":
        return "a cancel is already requested"
    return _unfinished(record)


def _resumable(record: RunRecord) -> str | None:
    if record.status is Status.PAUSED or record.control == "pause":
        return None
    return f"it is {record.status.value}, not paused"


def _held(record: RunRecord) -> str | None:
    return None if record.status is Status.HELD else f"it is {record.status.value}, not held"


ACTIONS: dict[str, Action] = {
    "cancel": _cancel,
    "resume": _resume,
    "retry": _retry,
    "abort": _abort,
    "migrate": _migrate,
    "delete": _delete,
}
"""The bulk actions by name."""

CHECKS: dict[str, Check] = {
    "cancel": _cancellable,
    "resume": _resumable,
    "retry": _held,
    "abort": _held,
    "migrate": _unfinished,
    "delete": _finished,
}
"""Why an action does not apply to a run (None: it does), by action name."""

DRY_RUNS: dict[str, Action] = {"migrate": _plan_migration}
"""What a dry run does beyond the check, by action name: it raises to say why the action would
not apply (a migration is planned, and the plan says whether the run can move)."""


def check_action(action: object, options: BulkOptions) -> str:
    """``action`` if it is a bulk action with what it needs, else :class:`DataError`."""
    if not isinstance(action, str) or action not in ACTIONS:
        raise DataError(f"unknown bulk action {action!r}: one of {', '.join(ACTIONS)}")
    if action == "abort" and not options.reason:
        raise DataError("a bulk abort needs a reason (it is kept in each run's error)")
    return action


async def bulk(
    hands: Hands,
    action: str,
    flt: RunFilter,
    options: BulkOptions,
    *,
    dry_run: bool,
    batch: int,
    run_ids: Sequence[str] | None = None,
) -> BulkResult:
    """Apply ``action`` to every run ``flt`` matches (among ``run_ids``, if given), reading
    ``batch`` runs at a time."""
    action = check_action(action, options)
    batch = check_limit(batch)
    act, check = ACTIONS[action], CHECKS[action]
    result = BulkResult(action, dry_run)
    pages = _named(hands, flt, run_ids, batch) if run_ids is not None else _paged(hands, flt, batch)
    async for page in pages:
        for record in page:
            why = check(record)
            step = act if not dry_run else DRY_RUNS.get(action)
            if why is None and step is not None:
                try:
                    await step(hands, record, options)
                except TreadleError as exc:  # it changed since it was read: say so, go on
                    why = str(exc)
            if why is None:
                result.applied.append(record.id)
            else:
                result.skipped[record.id] = why
    return result


async def _paged(hands: Hands, flt: RunFilter, batch: int) -> AsyncIterator[list[RunRecord]]:
    after = None
    while True:
        page = await hands.executor.persistence.search_runs(flt, after=after, limit=batch)
        yield page
        if len(page) < batch:
            return
        after = (page[-1].created_at, page[-1].id)


async def _named(
    hands: Hands, flt: RunFilter, run_ids: Sequence[str], batch: int
) -> AsyncIterator[list[RunRecord]]:
    persistence = hands.executor.persistence
    ids = list(dict.fromkeys(check_id(run_id, "run id") for run_id in run_ids))
    for at in range(0, len(ids), batch):
        found = [await persistence.get_run(run_id) for run_id in ids[at : at + batch]]
        yield [r for r in found if r is not None and flt.matches(to_state(r))]
