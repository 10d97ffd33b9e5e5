"""The persistence contract, implemented once over transaction scripts for every SQL backend.

A backend only says how a script gets a transaction (:meth:`SQLPersistence._run`) and how it
opens and closes; every operation's logic lives in :mod:`._scripts`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from .._errors import SchemaVersionError
from .._state import Event
from . import _scripts as scripts
from ._records import (
    Checkpoint,
    CheckpointAck,
    InboxMessage,
    NewEvent,
    RunRecord,
    ScheduleRecord,
)
from ._sql import Tx

T = TypeVar("T")
WakeListener = Callable[[str], None]


def utcnow() -> datetime:
    """The current time, timezone-aware, UTC."""
    return datetime.now(UTC)


class SQLPersistence:
    """Where runs, their history, inboxes and schedules are kept.

    Every method is one transaction: it happens whole or not at all. Methods that change a run
    that an engine has leased are fenced by the lease token, so a worker that lost its lease
    cannot overwrite the progress of the worker that took the run over.
    """

    dialect = "sql"
    #: Whether engines in other processes can share this storage.
    shared = True

    def __init__(self) -> None:
        self._listeners: list[WakeListener] = []
        #: The time source for timestamps (the engine puts its clock here); leases always use
        #: the wall clock.
        self.now: Callable[[], datetime] = utcnow

    # What a backend provides --------------------------------------------------------------

    async def _run(self, script: Callable[[Tx], T]) -> T:
        """Run ``script`` in a transaction of its own (possibly committed with others)."""
        raise NotImplementedError

    async def _read(self, script: Callable[[Tx], T]) -> T:
        """Run ``script``, which only reads, on a snapshot of what has been committed.

        A backend may serve reads without queueing them behind the writes being committed; by
        default they take the same path as writes.
        """
        return await self._run(script)

    async def open(self) -> None:
        """Connect and check (or create) the schema."""
        raise NotImplementedError

    async def close(self) -> None:
        """Finish pending writes and disconnect."""
        raise NotImplementedError

    # Wake-ups -----------------------------------------------------------------------------

    def add_wake_listener(self, listener: WakeListener) -> None:
        """Call ``listener(run_id)`` on the event loop whenever a run may have become runnable."""
        self._listeners.append(listener)

    def remove_wake_listener(self, listener: WakeListener) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _wake(self, run_ids: Sequence[str]) -> None:
        for run_id in run_ids:
            for listener in list(self._listeners):
                listener(run_id)

    async def _check_schema(self, upgrade: bool = True) -> None:
        found = await self._run(partial(scripts.ensure_schema, now=self.now()))
        if found > scripts.SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the database has schema version {found}, newer than this treadle supports "
                f"({scripts.SCHEMA_VERSION}): upgrade treadle on this machine"
            )
        if found < scripts.SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the database has schema version {found}, older than this treadle needs "
                f"({scripts.SCHEMA_VERSION}): run 'treadle db upgrade --db ...'"
            )

    # Definitions ----------------------------------------------------------------------------

    async def save_definition(self, definition_id: str, name: str, shape: dict[str, Any]) -> None:
        """Keep a workflow definition's shape, so any process can check signals and approvals."""
        await self._run(
            partial(
                scripts.save_definition,
                definition_id=definition_id,
                name=name,
                shape=json.dumps(shape),
                now=self.now(),
            )
        )

    async def load_definition(self, definition_id: str) -> dict[str, Any] | None:
        """A stored definition's shape, or None."""
        found = await self._read(partial(scripts.load_definition, definition_id=definition_id))
        return None if found is None else dict(json.loads(found[1]))

    # Runs -----------------------------------------------------------------------------------

    async def create_run(self, run: RunRecord, event: NewEvent) -> tuple[RunRecord, bool]:
        """Insert a run unless one with its id exists (idempotent start).

        Returns the stored run and whether it was created now.
        """
        return await self._run(partial(scripts.create_run, run=run, event=event, now=self.now()))

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run with that id, or None."""
        return await self._read(partial(scripts.get_run, run_id=run_id))

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Runs matching the filters, newest first."""
        return await self._read(
            partial(
                scripts.list_runs,
                workflow=workflow,
                status=status,
                parent_id=parent_id,
                limit=limit,
            )
        )

    async def history(self, run_id: str) -> list[Event]:
        """The run's history, oldest first."""
        return await self._read(partial(scripts.history, run_id=run_id))

    async def claim_runs(
        self,
        owner: str,
        workflows: Sequence[str],
        due: datetime,
        lease_until: datetime,
        limit: int,
    ) -> list[RunRecord]:
        """Lease runnable runs to ``owner``: pending ones, running ones whose lease has expired,
        and waiting ones whose timer is due by ``due``. Each claim bumps the fencing token."""
        return await self._run(
            partial(
                scripts.claim_runs,
                owner=owner,
                workflows=list(workflows),
                now=utcnow(),
                due=due,
                lease_until=lease_until,
                limit=limit,
            )
        )

    async def renew_leases(self, owner: str, lease_until: datetime) -> dict[str, str | None]:
        """Extend all of ``owner``'s leases; return each leased run's pending control."""
        return await self._run(partial(scripts.renew_leases, owner=owner, lease_until=lease_until))

    async def release_runs(self, owner: str) -> int:
        """Give up all of ``owner``'s leases (a draining or dead engine)."""
        return await self._run(partial(scripts.release_runs, owner=owner))

    async def release_run(self, run_id: str, token: int) -> None:
        """Give up one lease, if ``token`` still holds it."""
        await self._run(partial(scripts.release_run, run_id=run_id, token=token))

    async def owners(self) -> list[str]:
        """Every engine that holds a lease."""
        return await self._read(scripts.owners)

    async def save_checkpoint(self, checkpoint: Checkpoint) -> CheckpointAck:
        """Write a checkpoint atomically: data, cursor, status, events, consumed messages.

        Raises :class:`LeaseLost` if the token no longer holds the run. See
        :func:`._scripts.save_checkpoint` for suspension and parent wake-up.
        """
        return await self._run(partial(scripts.save_checkpoint, cp=checkpoint))

    async def deliver(
        self,
        run_id: str,
        kind: str,
        name: str,
        payload: Any,
        event: NewEvent,
        *,
        owner: str | None = None,
        lease_until: datetime | None = None,
    ) -> RunRecord:
        """Append a signal or approval decision to the run's inbox; wake the run if it waits.

        Raises :class:`RunNotFound` / :class:`InvalidTransition` (finished) and writes nothing.
        """
        return await self._run(
            partial(
                scripts.deliver,
                run_id=run_id,
                kind=kind,
                name=name,
                payload=json.dumps(payload),
                event=event,
                now=self.now(),
                owner=owner,
                lease_until=lease_until,
            )
        )

    async def read_inbox(self, run_id: str, kind: str, name: str) -> list[InboxMessage]:
        """Unconsumed messages of a run for one wait, oldest first."""
        return await self._read(partial(scripts.read_inbox, run_id=run_id, kind=kind, name=name))

    async def request_pause(self, run_id: str) -> RunRecord:
        """Pause now if no engine executes the run, else ask the owner to pause."""
        return await self._run(partial(scripts.request_pause, run_id=run_id, now=self.now()))

    async def resume(
        self, run_id: str, *, owner: str | None = None, lease_until: datetime | None = None
    ) -> RunRecord:
        """Make a paused run runnable again (leased to ``owner`` if given)."""
        return await self._run(
            partial(
                scripts.resume, run_id=run_id, now=self.now(), owner=owner, lease_until=lease_until
            )
        )

    async def request_cancel(
        self, run_id: str, *, owner: str | None = None, lease_until: datetime | None = None
    ) -> RunRecord:
        """Mark a run for cancellation; make it runnable if no engine executes it."""
        return await self._run(
            partial(
                scripts.request_cancel,
                run_id=run_id,
                now=self.now(),
                owner=owner,
                lease_until=lease_until,
            )
        )

    async def count_runs(self) -> dict[str, int]:
        """The number of unfinished runs by status (for queue-depth metrics)."""
        return await self._read(scripts.count_unfinished)

    async def finished_among(self, run_ids: Sequence[str]) -> list[str]:
        """Those of these runs that have ended (one query for many waiters)."""
        return await self._read(partial(scripts.finished_among, run_ids=list(run_ids)))

    async def next_wake(self, workflows: Sequence[str]) -> datetime | None:
        """The earliest due timer among waiting runs of these workflows."""
        return await self._read(partial(scripts.next_wake, workflows=list(workflows)))

    # Schedules ------------------------------------------------------------------------------

    async def add_schedule(self, record: ScheduleRecord) -> bool:
        """Store a new schedule; False when its id is taken (nothing written)."""
        return await self._run(partial(scripts.add_schedule, record=record, now=self.now()))

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        """One schedule, or None."""
        return await self._read(partial(scripts.get_schedule, schedule_id=schedule_id))

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule."""
        return await self._read(scripts.list_schedules)

    async def remove_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule; False when there is none."""
        return await self._run(partial(scripts.remove_schedule, schedule_id=schedule_id))

    async def set_schedule_enabled(
        self, schedule_id: str, enabled: bool, next_run: datetime | None
    ) -> bool:
        """Enable or disable a schedule; False when there is none."""
        return await self._run(
            partial(
                scripts.set_schedule_enabled,
                schedule_id=schedule_id,
                enabled=enabled,
                next_run=next_run,
                now=self.now(),
            )
        )

    async def advance_schedule(
        self,
        schedule_id: str,
        expected_next: datetime,
        new_next: datetime | None,
        last_run: datetime | None = None,
        last_run_id: str | None = None,
    ) -> bool:
        """Compare-and-set a schedule's next due time; exactly one of concurrent tickers wins."""
        return await self._run(
            partial(
                scripts.advance_schedule,
                schedule_id=schedule_id,
                expected_next=expected_next,
                new_next=new_next,
                last_run=last_run,
                last_run_id=last_run_id,
                now=self.now(),
            )
        )
