"""Transaction scripts of retention: deleting finished runs whole, written once for every
dialect over the named statements of ``sql/<dialect>/retention.sql``.

A run is deleted together with its events, its inbox and its labels, in one transaction, so a
reader (or a crash) sees it whole or not at all. Runs that outlive a deleted parent lose their
link to it. What may be deleted is decided in SQL, by one rule for pruning and erasure alike:
the run has ended, its parent has ended or is gone, and no child of it is unfinished.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from .._errors import InvalidTransition, RunNotFound
from .._state import FINISHED
from ._records import RunRecord
from ._sql import Tx

_CANCEL_FIRST = "only finished runs are deleted: cancel it first"

FINISHED_VALUES = ("completed", "failed", "cancelled")
"""The statuses of runs that retention may delete."""


def finished_statuses(statuses: Sequence[str]) -> list[str]:
    """``statuses``, checked to be finished ones: retention never deletes an unfinished run."""
    wrong = [s for s in statuses if s not in FINISHED_VALUES]
    if wrong or not statuses:
        raise ValueError(
            f"only finished runs are deleted: statuses must be among {', '.join(FINISHED_VALUES)}"
            f", not {', '.join(wrong) or 'none'}"
        )
    return list(statuses)


def _delete_whole(tx: Tx, run_ids: Sequence[str]) -> list[str]:
    """Delete those of ``run_ids`` that have ended, with every row that belongs to them."""
    if not run_ids:
        return []
    found = {r["id"] for r in tx.all("delete_finished_runs", ids=list(run_ids))}
    deleted = [r for r in run_ids if r in found]  # in the order asked (RETURNING has none)
    if deleted:
        for statement in (
            "delete_events_of",
            "delete_inbox_of",
            "delete_labels_of",
            "delete_values_of",
        ):
            tx.execute(statement, ids=deleted)
        tx.execute("unlink_children", ids=deleted)
    return deleted


def prune_runs(
    tx: Tx, before: datetime, statuses: Sequence[str], workflows: Sequence[str] | None, limit: int
) -> list[str]:
    """At most ``limit`` deletable runs last changed before ``before`` (PostgreSQL: rows that
    another pruner holds are skipped), deleted whole; their ids."""
    ids = [
        r["id"]
        for r in tx.all(
            "prunable_runs",
            before=before,
            statuses=list(statuses),
            workflows=None if workflows is None else list(workflows),
            limit=limit,
        )
    ]
    return _delete_whole(tx, ids)


def prunable(
    tx: Tx, before: datetime, statuses: Sequence[str], workflows: Sequence[str] | None, sample: int
) -> tuple[int, list[str]]:
    """How many runs :func:`prune_runs` would delete, and the ids of up to ``sample`` of them."""
    params = {
        "before": before,
        "statuses": list(statuses),
        "workflows": None if workflows is None else list(workflows),
    }
    row = tx.one("count_prunable", **params)
    count = 0 if row is None else int(row["n"])
    ids = [r["id"] for r in tx.all("prunable_runs", **params, limit=sample)] if sample else []
    return count, ids


def delete_run(tx: Tx, run_id: str) -> list[str]:
    """The run and its descendants (all finished), deleted whole; their ids, the run's first.
    Refused, with nothing written, for an unfinished run, one whose parent is unfinished, and
    one with an unfinished descendant."""
    row = tx.one("lock_run", id=run_id)
    if row is None:
        raise RunNotFound(run_id)
    run = RunRecord.from_row(row)
    if run.status not in FINISHED:
        raise InvalidTransition(run_id, run.status.value, "delete", _CANCEL_FIRST)
    if run.parent_id is not None:
        parent_row = tx.one("lock_run", id=run.parent_id)
        parent = None if parent_row is None else RunRecord.from_row(parent_row)
        if parent is not None and parent.status not in FINISHED:
            raise InvalidTransition(
                run_id,
                f"a child of run {parent.id!r}, which is {parent.status.value}",
                "delete",
                "the parent still reads its result: delete the parent once it has ended",
            )
    family, frontier = [run_id], [run_id]
    while frontier:
        children = tx.all("children_of", ids=frontier)
        for child in children:
            if child["status"] not in FINISHED_VALUES:
                raise InvalidTransition(
                    run_id,
                    f"the parent of run {child['id']!r}, which is {child['status']}",
                    "delete",
                    f"a run is deleted with its children: cancel run {child['id']!r} first",
                )
        frontier = [c["id"] for c in children]
        family.extend(frontier)
    return _delete_whole(tx, family)


def reclaim_space(tx: Tx) -> int:
    """Give some free pages back to the file system (SQLite); the free pages left."""
    tx.all("reclaim_space")
    row = tx.one("free_pages")
    return 0 if row is None else int(row["pages"])
