"""The persistence contract implemented once, over transaction scripts, for every SQL backend.

A backend only says how a script gets a transaction (:meth:`SQLPersistence._run`), how it opens,
closes and upgrades; every operation's logic lives in :mod:`._scripts`, and every operation's
contract on :class:`~treadle.persistence.Persistence` (the methods here inherit its docstrings).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from .._codec import Codec
from .._metrics import CommitStats
from .._search import RunFilter
from .._state import Event
from . import _debounce_scripts as debounce_scripts
from . import _dispatch_scripts as dispatch_scripts
from . import _limit_scripts as limit_scripts
from . import _prune as prune
from . import _rates as rates
from . import _schedule_scripts as schedule_scripts
from . import _schema as schema
from . import _scripts as scripts
from ._at_rest import AtRest, at_rest
from ._base import Persistence, WakeListener, utcnow
from ._labels import search_runs
from ._prune import FINISHED_VALUES, finished_statuses
from ._queue import QueueStats, queue_stats
from ._records import (
    Checkpoint,
    CheckpointAck,
    DefinitionRecord,
    InboxMessage,
    LimitUse,
    NewEvent,
    RunRecord,
    ScheduleRecord,
)
from ._sql import Tx
from ._stats import WorkflowStats, workflow_stats

T = TypeVar("T")


class SQLPersistence(Persistence):
    """The family of SQL backends: :class:`Persistence` over :mod:`._scripts`.

    Subclasses implement :meth:`_run`, :meth:`open`, :meth:`close` and :meth:`upgrade`, and may
    implement :meth:`_read`. Wall time (which judges leases) is read here, once per operation,
    and passed to the scripts, so that a script run again on the same data (a batch replayed
    under per-script savepoints) does the same thing.
    """

    def __init__(self) -> None:
        self._listeners: list[WakeListener] = []
        self.now: Callable[[], datetime] = utcnow
        self._rest = AtRest()
        #: Batch sizes and latency of the group commit (see :mod:`treadle._metrics`).
        self.commit_stats = CommitStats()

    @property
    def codec(self) -> Codec | None:
        """How run data, positions, inbox payloads and event details are stored: through this
        :class:`~treadle.Codec`, or as plain JSON (None, the default). ``Engine(codec=...)``
        sets it. Values stored without a codec stay readable with one; values stored with one
        raise :class:`~treadle.CodecError` for a reader without it, or with another."""
        return self._rest.codec

    @codec.setter
    def codec(self, codec: Codec | None) -> None:
        if codec is not None and (isinstance(codec, type) or not isinstance(codec, Codec)):
            raise TypeError(f"a codec needs encode(text) and decode(text) methods: {codec!r}")
        self._rest.codec = codec

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

    async def _write(self, script: Callable[[Tx], T]) -> T:
        """:meth:`_run` with values at rest as :attr:`codec` says."""
        return await self._run(at_rest(self._rest, script))

    async def _query(self, script: Callable[[Tx], T]) -> T:
        """:meth:`_read` with values at rest as :attr:`codec` says."""
        return await self._read(at_rest(self._rest, script))

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def upgrade(self) -> str:
        raise NotImplementedError

    def _upgrade_command(self) -> str:
        """The command that upgrades this database, for messages."""
        raise NotImplementedError

    # Wake-ups -----------------------------------------------------------------------------

    def add_wake_listener(self, listener: WakeListener) -> None:
        self._listeners.append(listener)

    def remove_wake_listener(self, listener: WakeListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _wake(self, run_ids: Sequence[str]) -> None:
        for run_id in run_ids:
            for listener in list(self._listeners):
                listener(run_id)

    async def _check_schema(self) -> None:
        """Create the schema in an empty database; refuse one of another version."""
        found = await self._run(schema.ensure_schema)
        schema.check_version(found, self._upgrade_command())

    # Definitions ----------------------------------------------------------------------------

    async def save_definition(
        self, definition_id: str, name: str, shape: dict[str, Any], version: str | None = None
    ) -> None:
        await self._write(
            partial(
                scripts.save_definition,
                definition_id=definition_id,
                name=name,
                shape=json.dumps(shape),
                version=version,
                now=self.now(),
            )
        )

    async def definitions(self, name: str | None = None) -> list[DefinitionRecord]:
        return await self._query(partial(scripts.list_definitions, name=name))

    async def load_definition(self, definition_id: str) -> dict[str, Any] | None:
        found = await self._query(partial(scripts.load_definition, definition_id=definition_id))
        return None if found is None else dict(json.loads(found[1]))

    # Runs -----------------------------------------------------------------------------------

    async def create_run(self, run: RunRecord, event: NewEvent) -> tuple[RunRecord, bool]:
        return await self._write(partial(scripts.create_run, run=run, event=event, now=self.now()))

    async def start_debounced(
        self, run: RunRecord, event: NewEvent, window: timedelta, longest: timedelta | None
    ) -> tuple[RunRecord, bool]:
        return await self._write(
            partial(
                debounce_scripts.start_debounced,
                run=run,
                event=event,
                now=self.now(),
                window=window,
                longest=longest,
            )
        )

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await self._query(partial(scripts.get_run, run_id=run_id))

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        return await self._query(
            partial(
                scripts.list_runs,
                workflow=workflow,
                status=status,
                parent_id=parent_id,
                limit=limit,
            )
        )

    async def search_runs(
        self, flt: RunFilter, *, after: tuple[datetime, str] | None = None, limit: int = 100
    ) -> list[RunRecord]:
        return await self._query(partial(search_runs, flt=flt, after=after, limit=limit))

    async def history(self, run_id: str) -> list[Event]:
        return await self._query(partial(scripts.history, run_id=run_id))

    async def claim_runs(
        self,
        owner: str,
        definitions: Sequence[str],
        due: datetime,
        lease_until: datetime,
        limit: int,
        *,
        upgrades: Sequence[str] = (),
    ) -> list[RunRecord]:
        return await self._write(
            partial(
                dispatch_scripts.claim_runs,
                owner=owner,
                definitions=list(definitions),
                upgrades=list(upgrades),
                now=utcnow(),
                due=due,
                lease_until=lease_until,
                limit=limit,
            )
        )

    async def renew_leases(self, owner: str, lease_until: datetime) -> dict[str, str | None]:
        return await self._write(
            partial(dispatch_scripts.renew_leases, owner=owner, lease_until=lease_until)
        )

    async def release_runs(self, owner: str) -> int:
        return await self._write(partial(dispatch_scripts.release_runs, owner=owner))

    async def release_run(self, run_id: str, token: int) -> None:
        await self._write(partial(dispatch_scripts.release_run, run_id=run_id, token=token))

    async def owners(self) -> list[str]:
        return await self._query(dispatch_scripts.owners)

    async def save_checkpoint(self, checkpoint: Checkpoint) -> CheckpointAck:
        script = scripts.save_checkpoint
        if checkpoint.slot is not None:
            script = limit_scripts.claim_slot
        elif checkpoint.release_slot:
            script = limit_scripts.finish_with_slot
        return await self._write(partial(script, cp=checkpoint))

    async def limits(self) -> list[LimitUse]:
        return await self._query(limit_scripts.list_limits)

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
        awaited: bool = False,
        idempotency_key: str | None = None,
    ) -> RunRecord:
        return await self._write(
            partial(
                scripts.deliver,
                awaited=awaited,
                idempotency_key=idempotency_key,
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
        return await self._query(partial(scripts.read_inbox, run_id=run_id, kind=kind, name=name))

    async def request_pause(self, run_id: str) -> RunRecord:
        return await self._write(
            partial(scripts.request_pause, run_id=run_id, now=self.now(), wall=utcnow())
        )

    async def resume(
        self,
        run_id: str,
        *,
        owner: str | None = None,
        lease_until: datetime | None = None,
        detail: dict[str, Any] | None = None,
    ) -> RunRecord:
        return await self._write(
            partial(
                scripts.resume,
                run_id=run_id,
                now=self.now(),
                owner=owner,
                lease_until=lease_until,
                detail=detail,
            )
        )

    async def request_cancel(
        self,
        run_id: str,
        *,
        owner: str | None = None,
        lease_until: datetime | None = None,
        detail: dict[str, Any] | None = None,
    ) -> RunRecord:
        return await self._write(
            partial(
                scripts.request_cancel,
                run_id=run_id,
                now=self.now(),
                wall=utcnow(),
                owner=owner,
                lease_until=lease_until,
                detail=detail,
            )
        )

    async def count_runs(self) -> dict[str, int]:
        return await self._query(dispatch_scripts.count_unfinished)

    async def queue_stats(self) -> QueueStats:
        return await self._query(partial(queue_stats, now=self.now()))

    async def finished_among(self, run_ids: Sequence[str]) -> list[str]:
        return await self._query(partial(dispatch_scripts.finished_among, run_ids=list(run_ids)))

    async def next_wake(
        self, definitions: Sequence[str], *, upgrades: Sequence[str] = ()
    ) -> datetime | None:
        return await self._query(
            partial(
                dispatch_scripts.next_wake, definitions=list(definitions), upgrades=list(upgrades)
            )
        )

    async def reserve_rate(
        self, name: str, limit: int, per_seconds: float, burst: int
    ) -> rates.Reservation:
        return await self._run(
            partial(
                rates.reserve,
                name=name,
                limit=limit,
                per_seconds=per_seconds,
                burst=burst,
                now=self.now(),
            )
        )

    async def rate_clock(self) -> datetime:
        return await self._read(partial(rates.clock, now=self.now()))

    async def rate_limits(self) -> list[rates.RateLimitState]:
        return await self._read(partial(rates.states, now=self.now()))

    async def migrate_run(
        self,
        run_id: str,
        token: int,
        definition_id: str,
        version: str | None,
        cursor: str,
        waiting_for: list[str],
        event: NewEvent,
    ) -> RunRecord:
        return await self._write(
            partial(
                scripts.migrate_run,
                run_id=run_id,
                token=token,
                definition_id=definition_id,
                version=version,
                cursor=cursor,
                waiting_for=waiting_for,
                event=event,
                now=self.now(),
                wall=utcnow(),
            )
        )

    async def workflow_stats(
        self, workflow: str, *, since: datetime, bucket: timedelta, buckets: int
    ) -> WorkflowStats:
        return await self._query(
            partial(workflow_stats, workflow=workflow, since=since, bucket=bucket, buckets=buckets)
        )

    # Retention ------------------------------------------------------------------------------

    async def prune_runs(
        self,
        before: datetime,
        *,
        statuses: Sequence[str] = FINISHED_VALUES,
        workflows: Sequence[str] | None = None,
        limit: int = 500,
    ) -> list[str]:
        return await self._run(
            partial(
                prune.prune_runs,
                before=before,
                statuses=finished_statuses(statuses),
                workflows=workflows,
                limit=limit,
            )
        )

    async def prunable(
        self,
        before: datetime,
        *,
        statuses: Sequence[str] = FINISHED_VALUES,
        workflows: Sequence[str] | None = None,
        sample: int = 0,
    ) -> tuple[int, list[str]]:
        return await self._run(
            partial(
                prune.prunable,
                before=before,
                statuses=finished_statuses(statuses),
                workflows=workflows,
                sample=sample,
            )
        )

    async def delete_run(self, run_id: str) -> list[str]:
        return await self._run(partial(prune.delete_run, run_id=run_id))

    async def reclaim_space(self) -> int:
        return await self._run(prune.reclaim_space)

    # Schedules ------------------------------------------------------------------------------

    async def add_schedule(self, record: ScheduleRecord) -> bool:
        return await self._write(
            partial(schedule_scripts.add_schedule, record=record, now=self.now())
        )

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        return await self._query(partial(schedule_scripts.get_schedule, schedule_id=schedule_id))

    async def list_schedules(self) -> list[ScheduleRecord]:
        return await self._query(schedule_scripts.list_schedules)

    async def remove_schedule(self, schedule_id: str) -> bool:
        return await self._write(partial(schedule_scripts.remove_schedule, schedule_id=schedule_id))

    async def set_schedule_enabled(
        self,
        schedule_id: str,
        enabled: bool,
        next_run: datetime | None,
        options: str | None = None,
    ) -> bool:
        return await self._write(
            partial(
                schedule_scripts.set_schedule_enabled,
                schedule_id=schedule_id,
                enabled=enabled,
                next_run=next_run,
                now=self.now(),
                options=options,
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
        return await self._write(
            partial(
                schedule_scripts.advance_schedule,
                schedule_id=schedule_id,
                expected_next=expected_next,
                new_next=new_next,
                last_run=last_run,
                last_run_id=last_run_id,
                now=self.now(),
            )
        )
