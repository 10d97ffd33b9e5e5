"""The persistence contract: what the engine and cron may rely on, operation by operation.

:class:`Persistence` is a :class:`typing.Protocol`. Its one family of implementations is
:class:`~treadle.persistence.SQLPersistence` (``MemoryPersistence``, ``SQLitePersistence``,
``PostgresPersistence``), whose logic is written once as transaction scripts; a test double only
needs the methods below to type-check where a ``Persistence`` is expected.

Rules that hold for every operation:

- **One transaction each.** An operation happens whole or not at all; when it raises, it has
  written nothing.
- **Fencing.** Every write to a run that an engine has leased names the lease's token; a token
  that no longer holds the run (another engine claimed it since) makes the write raise
  :class:`LeaseLost` and change nothing.
- **Two clocks.** Times stamped on rows (``created_at``, event times, inbox times, timers) come
  from :attr:`Persistence.now`, which the engine points at its clock (possibly a ``FakeClock``).
  Leases are judged by the wall clock (UTC) only, since engines in other processes share them.
- **Errors.** Besides the errors each operation names, a database failure raises
  :class:`PersistenceError` (the driver's error kept as ``__cause__``), which may be transient
  (the next attempt may succeed); a value that the database can never store raises
  :class:`DataError` instead (also with the cause), which is not transient. Text produced by code
  (a checkpoint's error, event details) is made storable first (:func:`treadle._text.storable`),
  so a failure message never makes its own checkpoint fail. An operation on a persistence that is
  not open raises :class:`PersistenceError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from .._search import RunFilter
from .._state import Event
from ._queue import QueueStats
from ._rates import RateLimitState, Reservation
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
from ._stats import WorkflowStats

WakeListener = Callable[[str], None]


def utcnow() -> datetime:
    """The current time, timezone-aware, UTC."""
    return datetime.now(UTC)


@runtime_checkable
class Persistence(Protocol):
    """Where runs, their history, inboxes and schedules are kept (see the module's rules)."""

    #: The time source for timestamps (the engine puts its clock here); leases always use the
    #: wall clock.
    now: Callable[[], datetime]

    # Life cycle and wake-ups ------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, and create the schema in an empty database. Opening an open persistence
        does nothing.

        Raises :class:`PersistenceError` when the database cannot be reached, and
        :class:`SchemaVersionError` when its schema is older than this treadle (the message
        names the ``treadle db upgrade --db ...`` command that migrates it) or newer.
        """
        ...

    async def close(self) -> None:
        """Finish the writes already asked for, then disconnect. Closing a closed persistence
        does nothing; after it, operations raise :class:`PersistenceError` until ``open``."""
        ...

    async def upgrade(self) -> str:
        """Create the schema, or migrate an older one to the version this treadle needs, in one
        transaction; safe to run more than once and while engines run. Needs no ``open``.

        Returns what was done, in a sentence. Raises :class:`SchemaVersionError` for a database
        newer than this treadle, and :class:`PersistenceError` when it cannot be reached.
        """
        ...

    def add_wake_listener(self, listener: WakeListener) -> None:
        """Call ``listener(run_id)`` on the event loop, after the commit, whenever a run may have
        become runnable: created unleased, released, woken by a message, or suspended with a
        timer (in this process or, on PostgreSQL, any other). A listener must not raise."""
        ...

    def remove_wake_listener(self, listener: WakeListener) -> None:
        """Stop calling ``listener`` (nothing happens if it was not added)."""
        ...

    # Definitions ----------------------------------------------------------------------------

    async def save_definition(
        self, definition_id: str, name: str, shape: dict[str, Any], version: str | None = None
    ) -> None:
        """Keep a workflow definition's shape (and its ``version`` label) under its fingerprint
        ``definition_id``, so that any process can check signals and approvals and plan
        migrations. The first writer wins: saving an id again changes nothing."""
        ...

    async def definitions(self, name: str | None = None) -> list[DefinitionRecord]:
        """The stored definitions (of workflow ``name``, or all), newest first."""
        ...

    async def load_definition(self, definition_id: str) -> dict[str, Any] | None:
        """The shape saved under ``definition_id``, or ``None``."""
        ...

    # Runs -----------------------------------------------------------------------------------

    async def create_run(self, run: RunRecord, event: NewEvent) -> tuple[RunRecord, bool]:
        """Insert ``run`` with token 1 and append ``event`` to its history, unless a run with its
        id exists (an idempotent start): then nothing is written.

        Returns the stored run and whether it was created now. A run created without an owner
        wakes the listeners; one created with ``owner``/``lease_until`` is leased to that owner.
        """
        ...

    async def start_debounced(
        self, run: RunRecord, event: NewEvent, window: timedelta, longest: timedelta | None
    ) -> tuple[RunRecord, bool]:
        """Start ``run`` debounced by its ``debounce_key``: if a run of its workflow with that
        key has not begun, it takes ``run``'s data, priority, deadline and labels, a
        ``debounced`` event (``event``'s detail), and, while WAITING, wakes ``window`` from now
        (no later than ``longest`` after its ``created_at``, if given); else ``run`` is inserted
        WAITING until ``window`` from now, with ``event``, and the listeners are woken.

        Returns the run as stored and whether it was created now. Of concurrent starts with one
        key, in any processes, one creates the run and the others collapse into it; a run with
        a cancel pending takes no more starts. :meth:`claim_runs` clears the key of the run it
        begins, so a start after that creates a new run.
        """
        ...

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run with that id as last committed, or ``None``."""
        ...

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """At most ``limit`` runs matching every filter given, newest ``created_at`` first (ties
        by id, descending)."""
        ...

    async def search_runs(
        self, flt: RunFilter, *, after: tuple[datetime, str] | None = None, limit: int = 100
    ) -> list[RunRecord]:
        """At most ``limit`` runs that match ``flt``, newest ``created_at`` first (ties by id,
        descending), after the position ``after`` (the ``(created_at, id)`` of the last run of
        the previous page; runs created since then do not shift the pages). Labels are read in
        plain text. Entered through an index: ``run_labels`` for a label, ``(workflow,
        created_at)`` for a workflow, else ``created_at``."""
        ...

    async def history(self, run_id: str) -> list[Event]:
        """The run's events in the order they were written (empty for an unknown run)."""
        ...

    # Leases ---------------------------------------------------------------------------------

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
        """Lease up to ``limit`` runnable runs pinned to one of ``definitions`` (definition ids),
        or of a workflow named in ``upgrades`` whatever their definition, to ``owner`` until
        ``lease_until``, highest ``priority`` first and oldest ``created_at`` first within one,
        and return them as claimed (a debounced run's key is cleared: it has begun).

        Runnable: PENDING or RUNNING runs that no lease holds (no owner, or a lease that has
        expired by the wall clock), and WAITING runs whose timer is due by ``due`` (the engine's
        clock). A claimed run is RUNNING with its wait cleared, and its token is bumped, so the
        previous owner's writes are fenced from now on. Concurrent claimers never get the same
        run (on PostgreSQL, rows another claimer holds are skipped, not waited for). HELD
        runs are never claimed. Nothing when both lists are empty or ``limit`` is below 1.
        """
        ...

    async def renew_leases(self, owner: str, lease_until: datetime) -> dict[str, str | None]:
        """Extend every lease that ``owner`` holds to ``lease_until``, expired ones included
        (a run nobody claimed meanwhile is still the owner's), and return each of its runs'
        pending control (``"pause"``, ``"cancel"`` or ``None``), by run id.

        On PostgreSQL a run whose row another transaction holds at that moment is skipped (left
        out of the result, its lease unchanged) rather than waited for: the heartbeat never
        queues behind a checkpoint, and a lease is long enough to survive one skipped renewal.
        """
        ...

    async def release_runs(self, owner: str) -> int:
        """Give up every lease of ``owner`` (an engine that drains, or one found dead): its runs
        become claimable at once, with their status kept. Returns how many runs it held. Not
        fenced by token: it is meant for the owner itself or its reaper."""
        ...

    async def release_run(self, run_id: str, token: int) -> None:
        """Give up one lease, if ``token`` still holds it (else nothing happens: the run has a
        new owner), and wake the listeners so another engine may pick it up."""
        ...

    async def owners(self) -> list[str]:
        """Every owner named on a run, **whether or not its lease has expired** (the reaper
        uses this to find engines that died holding runs). Each owner once, in no order."""
        ...

    # Progress -------------------------------------------------------------------------------

    async def save_checkpoint(self, checkpoint: Checkpoint) -> CheckpointAck:
        """Write one durable step of progress, atomically and fenced by ``checkpoint.token``:
        data, cursor, status, error, wait, the consumed inbox messages and the new events.
        ``checkpoint.values`` changes the large values stored beside the run (see
        :mod:`._values`) in the same transaction; every read returns the data whole.

        Raises :class:`LeaseLost` (and writes nothing) when the token no longer holds the run.
        In order, within the one transaction:

        1. A WAITING checkpoint first locks the run, then looks at its inbox: if a message it
           waits for (``waiting_for`` holds ``"<kind>:<name>"``) is there and not among
           ``consumed``, the checkpoint is **written as RUNNING** instead, the lease kept, and
           the answer says ``suspended=False``: the driver goes on and consumes the message. A
           signal that raced with the suspension is therefore never lost.
        2. The run row is updated. WAITING (timer ``wake_at``, if any), PAUSED and the finished
           statuses release the lease; PAUSED and finished ones clear the pending control.
        3. The ``consumed`` messages are marked consumed, and the events appended in order.
        4. A suspension with a timer wakes the listeners.
        5. A run that **finishes with a parent** (COMPLETED, FAILED or CANCELLED) puts a
           ``run:<child id>`` message with ``{"status": ...}`` in the parent's inbox, and wakes
           the parent (makes it PENDING) if it waits for that child, unless the parent has ended.

        6. Concurrency limits (``Workflow.concurrency``): a checkpoint with a ``slot`` claim
           first takes a slot of its key, if fewer than ``slot.limit`` runs hold one (or the
           run holds one already) and is written RUNNING; else it queues the run and is written
           as given (WAITING, ``limit:<key>``), or with ``on_conflict="skip"`` written RUNNING
           with the answer's ``slot.state`` ``"skipped"``; ``"cancel_running"`` also requests
           the cancellation of the holders. A finished checkpoint with ``release_slot`` drops
           the run's slot or place in the queue and gives the freed slots to the next queued
           runs of the key (priority, then age), which become PENDING and wake the listeners.
           Both count and change the key's slots under a lock of the key, so the limit holds
           across every engine on the database.

        Returns whether the suspension took effect and the control pending for the run.
        ``checkpoint.error`` and event details are stored through :func:`storable`; a value
        that still cannot be stored raises :class:`DataError`.
        """
        ...

    # Inbox and control ----------------------------------------------------------------------

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
        """Append a message (``kind`` ``"signal"``, ``"approval"`` or ``"held"``, an operator's
        decision) to the run's inbox after every earlier one, and ``event`` to its history; if
        the run is WAITING or HELD for ``"<kind>:<name>"``, make it runnable (PENDING,
        listeners woken; or RUNNING leased to ``owner`` until ``lease_until`` when given, token
        bumped).

        Returns the run as it is after the delivery. Raises :class:`RunNotFound`, or
        :class:`InvalidTransition` for a finished run, or with ``awaited`` for a run that does
        not wait for ``"<kind>:<name>"`` now (so that of two concurrent decisions on one held
        run exactly one is taken), and writes nothing then.

        Duplicates are acknowledged and write nothing (no message, no event; the run is
        returned as it is), decided in the same transaction as the delivery: a message with an
        ``idempotency_key`` (an id) that a message to this run already had, whatever its kind
        (a unique index, so concurrent deliveries store one); and a decision (kind
        ``"approval"``) whose payload's ``"by"`` and ``"approved"`` equal those of a decision on
        the same approval still unconsumed in the run's inbox.
        """
        ...

    async def read_inbox(self, run_id: str, kind: str, name: str) -> list[InboxMessage]:
        """The run's unconsumed messages of that kind and name, oldest first (in delivery
        order)."""
        ...

    async def request_pause(self, run_id: str) -> RunRecord:
        """Pause the run at once if no live lease holds it (PAUSED, lease dropped, ``paused``
        event); else set its control to ``"pause"`` for the owner to act on
        (``pause_requested`` event). A PAUSED run is returned unchanged.

        Raises :class:`RunNotFound`, or :class:`InvalidTransition` for a finished or HELD run.
        """
        ...

    async def resume(
        self,
        run_id: str,
        *,
        owner: str | None = None,
        lease_until: datetime | None = None,
        detail: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Make a PAUSED run runnable again (PENDING, or RUNNING leased to ``owner`` when given),
        or withdraw a pause that its owner has not acted on yet; a ``resumed`` event (with
        ``detail``) either way.

        Raises :class:`RunNotFound`, or :class:`InvalidTransition` for a finished run or one
        that is neither paused nor asked to pause.
        """
        ...

    async def request_cancel(
        self,
        run_id: str,
        *,
        owner: str | None = None,
        lease_until: datetime | None = None,
        detail: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Set the run's control to ``"cancel"`` (``cancel_requested`` event, with ``detail``,
        e.g. who asked); if no live lease
        holds it, also make it runnable (PENDING, or RUNNING leased to ``owner``) so that an
        engine compensates and ends it.

        Raises :class:`RunNotFound`, or :class:`InvalidTransition` for a finished run.
        """
        ...

    # Dispatch and metrics -------------------------------------------------------------------

    async def count_runs(self) -> dict[str, int]:
        """The number of unfinished runs by status value (statuses with none are left out)."""
        ...

    async def limits(self) -> list[LimitUse]:
        """Every concurrency key that a run holds a slot of or is queued for, by key: its
        limit, its holders and its queued runs (in the order they will get a slot)."""
        ...

    async def queue_stats(self) -> QueueStats:
        """How many WAITING runs wait for each kind of thing, and since when the oldest runnable
        run has waited for an engine (one read, for the metrics' gauges)."""
        ...

    async def finished_among(self, run_ids: Sequence[str]) -> list[str]:
        """Those of ``run_ids`` whose run has ended (COMPLETED, FAILED or CANCELLED), in no
        order; unknown ids are left out."""
        ...

    async def next_wake(
        self, definitions: Sequence[str], *, upgrades: Sequence[str] = ()
    ) -> datetime | None:
        """The earliest timer among WAITING runs that :meth:`claim_runs` with the same
        ``definitions`` and ``upgrades`` would take once due, or ``None``."""
        ...

    async def reserve_rate(
        self, name: str, limit: int, per_seconds: float, burst: int
    ) -> Reservation:
        """Reserve the next call of rate limiter ``name`` (GCRA, see :mod:`._rates`), storing
        these settings with it: reservations are served in the order they are made, and any
        window of ``per_seconds`` holds at most ``limit + burst - 1`` reserved times. Times are
        the database's clock (PostgreSQL: the server's, whatever the engines' clocks say)."""
        ...

    async def rate_clock(self) -> datetime:
        """The clock that :meth:`reserve_rate` reserves on, now."""
        ...

    async def rate_limits(self) -> list[RateLimitState]:
        """Every rate limiter that a reservation made, by name, with its state now and the
        WAITING runs parked for it."""
        ...

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
        """Move an unfinished run that no live lease holds onto definition ``definition_id``
        with a new ``cursor`` (and ``waiting_for``, kept only for a WAITING or HELD run),
        appending ``event`` — only if its token is still ``token`` (it is the run the
        migration was planned on). Its status is kept.

        Returns the run as it is after. Raises :class:`RunNotFound`, or
        :class:`InvalidTransition` (and writes nothing) for a finished run, a leased one or one
        whose token moved.
        """
        ...

    async def workflow_stats(
        self, workflow: str, *, since: datetime, bucket: timedelta, buckets: int
    ) -> WorkflowStats:
        """What the runs of ``workflow`` created in ``[since, since + buckets * bucket)`` add up
        to: runs per status in each bucket, per definition, duration percentiles, the slowest
        steps and the most common errors (:class:`treadle.persistence._stats.WorkflowStats`)."""
        ...

    # Retention ------------------------------------------------------------------------------

    async def prune_runs(
        self,
        before: datetime,
        *,
        statuses: Sequence[str] = ("completed", "failed", "cancelled"),
        workflows: Sequence[str] | None = None,
        limit: int = 500,
    ) -> list[str]:
        """Delete up to ``limit`` deletable runs whose ``updated_at`` is before ``before`` (of
        ``workflows`` only, unless None), and return their ids, in one transaction.

        Deletable: the run has ended with one of ``statuses`` (finished statuses only), its
        parent has ended or is gone, and none of its children is unfinished. A run goes with
        its events, inbox and labels, whole; runs whose parent it was lose their ``parent_id``.
        Unfinished runs are never deleted. Concurrent pruners (any processes) may run at once:
        on PostgreSQL each skips the rows another holds; deleting twice deletes nothing more.
        """
        ...

    async def prunable(
        self,
        before: datetime,
        *,
        statuses: Sequence[str] = ("completed", "failed", "cancelled"),
        workflows: Sequence[str] | None = None,
        sample: int = 0,
    ) -> tuple[int, list[str]]:
        """How many runs :meth:`prune_runs` with these arguments would delete in all, and the
        ids of up to ``sample`` of them, in no order (nothing is deleted)."""
        ...

    async def delete_run(self, run_id: str) -> list[str]:
        """Delete one finished run whole (as :meth:`prune_runs` does) with its descendants,
        all in one transaction; return the ids deleted, the run's first.

        Raises :class:`RunNotFound`, or :class:`InvalidTransition` (and deletes nothing) when
        the run is unfinished, its parent is unfinished (it reads the run's result), or one of
        its descendants is unfinished.
        """
        ...

    async def reclaim_space(self) -> int:
        """Give a bounded amount of the space that deletions freed back to the file system
        (SQLite's incremental vacuum, in a database made with ``auto_vacuum=INCREMENTAL``) and
        return how many free pages are left (0 when nothing is left to give back; PostgreSQL's
        autovacuum does this work, so there it does nothing)."""
        ...

    # Schedules ------------------------------------------------------------------------------

    async def add_schedule(self, record: ScheduleRecord) -> bool:
        """Store a new schedule; ``False`` (and nothing written) when its id is taken."""
        ...

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        """One schedule, or ``None``."""
        ...

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by id."""
        ...

    async def remove_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule; ``False`` when there is none."""
        ...

    async def set_schedule_enabled(
        self,
        schedule_id: str,
        enabled: bool,
        next_run: datetime | None,
        options: str | None = None,
    ) -> bool:
        """Enable or disable a schedule and set its next due time (and its ``options`` JSON,
        when given, in the same write); ``False`` when there is none."""
        ...

    async def advance_schedule(
        self,
        schedule_id: str,
        expected_next: datetime,
        new_next: datetime | None,
        last_run: datetime | None = None,
        last_run_id: str | None = None,
    ) -> bool:
        """Compare-and-set: move an enabled schedule's next due time from ``expected_next`` to
        ``new_next`` (recording ``last_run``/``last_run_id`` when given), only if it still is
        ``expected_next``.

        Of any number of concurrent advancers of one due time, in any processes, exactly one
        gets ``True``; the others get ``False`` and write nothing. ``False`` too for a missing or
        disabled schedule.
        """
        ...
