"""Group commit, shared by the SQL backends.

The event loop queues transaction scripts; writer threads take them in batches, run each batch
in one transaction with every script under a savepoint of its own (so one failing script rolls
back alone), commit once, and hand the outcomes back to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from .._errors import DataError, PersistenceError, TreadleError
from .._metrics import CommitStats

T = TypeVar("T")
Job = tuple[Callable[[Any], Any], asyncio.Future[Any]]
Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]


class NotifyingTx(Protocol):
    """A transaction adapter that collects the run ids its scripts notify."""

    notified: list[str]


class JobQueue:
    """Scripts waiting for a writer thread, taken in batches of at most ``batch_size``."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = max(1, batch_size)
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()

    def submit(
        self, loop: asyncio.AbstractEventLoop, script: Callable[[Any], T]
    ) -> asyncio.Future[T]:
        """Queue ``script``; the returned future (of ``loop``) settles with its outcome."""
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((script, future))
        return future

    def stop(self, writers: int = 1) -> None:
        """Ask ``writers`` threads to stop once the jobs queued before are done."""
        for _ in range(writers):
            self._queue.put(None)

    def take(self) -> tuple[list[Job], bool]:
        """Wait for a job, then take whatever else is queued (up to the batch size).

        Returns the batch and whether this writer must stop after it (the batch may be empty).
        """
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self.batch_size:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return batch, True
            batch.append(job)
        return batch, False


class DriverErrors:
    """How one backend's errors become treadle's, in one place (one instance per backend).

    A :class:`TreadleError` stays as it is. An error of the ``data`` types (a value the database
    can never store: NUL in PostgreSQL text, a lone surrogate, malformed JSON for ``jsonb``)
    becomes a :class:`DataError`, which is not transient; any other becomes a
    :class:`PersistenceError`, which may be. The driver's error is kept as ``__cause__``.
    """

    def __init__(
        self,
        backend: str,
        driver: tuple[type[Exception], ...],
        data: tuple[type[Exception], ...],
    ) -> None:
        self.backend = backend
        self.driver = driver
        self.data = data

    def translate(self, exc: Exception, doing: str | None = None) -> Exception:
        """The error to raise for ``exc``, which happened while ``doing`` (a phrase such as
        ``"cannot open SQLite database 'x.db'"``; by default, "<backend> operation failed")."""
        if isinstance(exc, TreadleError):
            return exc
        error: TreadleError
        if isinstance(exc, self.data):
            error = DataError(f"{self.backend} cannot store a value: {exc}")
        else:
            error = PersistenceError(f"{doing or f'{self.backend} operation failed'}: {exc}")
        error.__cause__ = exc
        return error

    @contextlib.contextmanager
    def wrap(self, doing: str) -> Iterator[None]:
        """Raise the driver's errors inside the block as :meth:`translate` says."""
        try:
            yield
        except self.driver + self.data as exc:
            raise self.translate(exc, doing) from exc


def run_in_savepoints(
    tx: NotifyingTx,
    execute: Callable[[str], object],
    batch: Sequence[Job],
    errors: DriverErrors,
    passthrough: tuple[type[BaseException], ...] = (),
    restart: Callable[[], object] | None = None,
) -> list[Outcome]:
    """Run every script of ``batch`` on ``tx`` as if each had a savepoint of its own, inside a
    transaction that the caller has begun and will commit.

    A script that raises rolls back alone, with ``errors.translate`` of its error as its
    outcome, except errors of the ``passthrough`` types, which abort the whole batch (the caller
    rolls back and decides).
    Notifications of a rolled-back script are dropped.

    Scripts rarely raise, so the batch first runs under one savepoint; only when a script raises
    is that rolled back and the batch run again with a savepoint per script (scripts are
    transactions: running one again on the same data gives the same outcome). Given
    ``restart`` (roll the transaction back and begin a new one), a batch of one script runs
    with no savepoint at all, and ``restart`` undoes it should it raise: two statements fewer
    for the common batch where each statement is a round trip (PostgreSQL).
    """
    if len(batch) == 1 and restart is not None:
        (script, future), mark = batch[0], len(tx.notified)
        try:
            return [(future, script(tx), None)]
        except passthrough:
            raise
        except Exception as exc:
            restart()
            del tx.notified[mark:]
            return [(future, None, errors.translate(exc))]
    if len(batch) > 1:
        execute("SAVEPOINT batch")
        mark = len(tx.notified)
        fast: list[Outcome] = []
        try:
            for script, future in batch:
                fast.append((future, script(tx), None))
        except passthrough:
            raise
        except Exception:
            execute("ROLLBACK TO batch")
            del tx.notified[mark:]
        else:
            execute("RELEASE batch")
            return fast
        execute("RELEASE batch")
    outcomes: list[Outcome] = []
    for script, future in batch:
        execute("SAVEPOINT op")
        mark = len(tx.notified)
        try:
            result = script(tx)
        except passthrough:
            raise
        except Exception as exc:
            execute("ROLLBACK TO op")
            del tx.notified[mark:]
            outcomes.append((future, None, errors.translate(exc)))
        else:
            outcomes.append((future, result, None))
        execute("RELEASE op")
    return outcomes


def failed(batch: Sequence[Job], error: BaseException) -> list[Outcome]:
    """The same error as the outcome of every job of ``batch``."""
    return [(future, None, error) for _, future in batch]


def settle(
    outcomes: Sequence[Outcome],
    notified: Sequence[str],
    wake: Callable[[Sequence[str]], None],
    stats: CommitStats | None = None,
    seconds: float = 0.0,
) -> None:
    """On the event loop: complete the futures, then wake the listeners of notified runs.
    A batch's size and commit time ``seconds`` go to ``stats`` (here: on the loop's thread)."""
    if stats is not None:
        stats.record(len(outcomes), seconds)
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    if notified:
        wake(list(dict.fromkeys(notified)))
