"""Retention: finished runs are deleted, whole, once they are older than their workflow keeps
them (``treadle.new(...).retention("1y")``, else ``Engine(retention="30d")``).

An engine that executes runs keeps a :class:`Pruner` in the background: soon after it opens and
then every minute (by the engine's clock) it deletes the finished runs of the workflows it has
registered whose ``updated_at`` (when they ended) is older than their retention, in batches of a
few hundred runs, one transaction each. After each batch it rests twice as long as the batch
took (longer when the writer is busy, since the batch then takes longer), so that checkpoints of
running runs never queue behind a backlog of deletions for long. The workflows it has not
registered are left alone: it cannot know how long they are to be kept
(``treadle runs prune`` deletes by age whatever the workflow).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .._duration import Duration, parse_duration
from .._ids import check_id
from .._state import Status
from ..persistence import Persistence
from ..persistence._prune import FINISHED_VALUES
from .executor import Executor

log = logging.getLogger("treadle.retention")

#: Runs deleted per transaction.
BATCH_SIZE = 200
#: After each batch the pruner rests this many times as long as the batch took.
REST = 2.0
#: How often the background pruner looks for runs to delete (on the engine's clock).
PRUNE_EVERY = timedelta(minutes=1)
#: How many of the ids a prune deleted (or would delete) it reports.
SAMPLE = 100


@dataclass(frozen=True)
class PruneReport:
    """What a prune deleted, or with ``dry_run`` would delete: ``count`` runs in all, finished
    before ``before``; ``run_ids`` holds the ids of the first of them (up to 100)."""

    count: int
    run_ids: tuple[str, ...]
    before: datetime
    dry_run: bool


def parse_retention(value: Duration | None, what: str = "retention") -> timedelta | None:
    """How long finished runs are kept: a duration (``"30d"``, ``"1y"``, seconds, a
    timedelta) above 0, or None for ever; else :class:`ValueError` saying what is wrong."""
    if value is None:
        return None
    try:
        kept = parse_duration(value, calendar=True)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if kept <= timedelta(0):
        raise ValueError(f"{what} must be more than 0 (to keep finished runs for ever: None)")
    return kept


def _statuses(status: Status | str | None) -> tuple[str, ...]:
    if status is None:
        return FINISHED_VALUES
    value = Status(status).value
    if value not in FINISHED_VALUES:
        raise ValueError(
            f"only finished runs are deleted: status {value!r} is not one of "
            f"{', '.join(FINISHED_VALUES)}"
        )
    return (value,)


async def prune(
    persistence: Persistence,
    before: datetime,
    *,
    statuses: Sequence[str] = FINISHED_VALUES,
    workflows: Sequence[str] | None = None,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
) -> PruneReport:
    """Delete (or count, with ``dry_run``) the deletable runs that ended before ``before``, in
    batches of ``batch_size`` (one transaction each), resting between batches; then give the
    space back (in the meantime new rows reuse the freed pages)."""
    if dry_run:
        count, ids = await persistence.prunable(
            before, statuses=statuses, workflows=workflows, sample=SAMPLE
        )
        return PruneReport(count, tuple(ids), before, True)
    count, sample = 0, list[str]()
    while True:
        started = time.monotonic()
        deleted = await persistence.prune_runs(
            before, statuses=statuses, workflows=workflows, limit=batch_size
        )
        count += len(deleted)
        sample.extend(deleted[: SAMPLE - len(sample)])
        if len(deleted) < batch_size:
            break
        # A third of the writer's time at most: the checkpoints of running runs go first.
        await asyncio.sleep(REST * (time.monotonic() - started))
    if count:
        await _reclaim(persistence)
    return PruneReport(count, tuple(sample), before, False)


async def _reclaim(persistence: Persistence) -> None:
    """Give back the free pages left, a bounded step at a time, while each step gains some
    (a database without incremental vacuum gains none: it stops at once)."""
    left = await persistence.reclaim_space()
    while left:
        started = time.monotonic()
        now_left = await persistence.reclaim_space()
        if now_left >= left:
            return
        left = now_left
        await asyncio.sleep(REST * (time.monotonic() - started))


async def prune_older_than(
    persistence: Persistence,
    now: datetime,
    older_than: Duration,
    *,
    status: Status | str | None = None,
    workflow: str | None = None,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
) -> PruneReport:
    """:meth:`RunControl.prune`: the arguments checked, then :func:`prune`."""
    age = parse_retention(older_than, "older_than")
    assert age is not None
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    workflows = None if workflow is None else [check_id(workflow, "workflow name")]
    return await prune(
        persistence,
        now - age,
        statuses=_statuses(status),
        workflows=workflows,
        dry_run=dry_run,
        batch_size=batch_size,
    )


class Pruner:
    """The background pruner of one engine (see the module's docstring)."""

    def __init__(self, executor: Executor, retention: timedelta | None) -> None:
        self.executor = executor
        self.retention = retention
        self.every = PRUNE_EVERY
        self.batch_size = BATCH_SIZE
        self._task: asyncio.Task[None] | None = None

    def keeps(self) -> dict[timedelta, list[str]]:
        """The registered workflows by how long their finished runs are kept (the newest
        definition's retention, else the engine's); those kept for ever are left out."""
        groups: dict[timedelta, list[str]] = {}
        for name, workflow in sorted(self.executor.registry.workflows.items()):
            kept = workflow.retention or self.retention
            if kept is not None:
                groups.setdefault(kept, []).append(name)
        return groups

    def start(self) -> None:
        """Prune now and then every :attr:`every`, if this engine executes runs."""
        if self.executor.max_concurrent_runs > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="treadle-retention")

    async def stop(self) -> None:
        """Stop pruning (a batch under way commits whole or not at all)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self) -> None:
        clock = self.executor.clock
        while True:
            done = asyncio.Event()
            self.executor.chore(self._pass(done))  # Engine.settle() waits for a pass under way
            await done.wait()
            await clock.sleep_until(clock.now() + self.every)

    async def _pass(self, done: asyncio.Event) -> None:
        try:
            now = self.executor.clock.now()
            for kept, names in self.keeps().items():
                report = await prune(
                    self.executor.persistence,
                    now - kept,
                    workflows=names,
                    batch_size=self.batch_size,
                )
                if report.count:
                    log.info(
                        "retention: deleted %d finished runs of %s older than %s",
                        report.count,
                        ", ".join(names),
                        f"{kept.days}d" if kept == timedelta(days=kept.days) else kept,
                    )
        except Exception as exc:  # a database outage: the next pass tries again
            log.warning("retention: pruning failed (tried again in %s): %s", self.every, exc)
        finally:
            done.set()
