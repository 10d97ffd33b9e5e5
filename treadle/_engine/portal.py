"""The portal that the blocking facades share: an event loop in a daemon thread of its own (as in
APScheduler 4) to which calls from other threads are handed, and :class:`SyncControl`, the
blocking methods of :class:`RunControl` over it.

Nothing of the engine is written again here: each method hands the async method's coroutine to
the loop and blocks the calling thread, and only it, until the result is there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, ParamSpec, Self, TypeVar

from .._clock import Clock
from .._duration import Duration
from .._errors import EngineNotOpen, WrongEventLoop
from .._search import RunFilter, RunPage
from .._state import Event, State, Status
from ..persistence import Persistence
from ..persistence._rates import RateLimitState
from ..persistence._records import LimitUse
from .bulk import BulkResult
from .control import RunControl
from .retention import BATCH_SIZE, PruneReport

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C", bound=RunControl)


def not_open(kind: str) -> str:
    """The message of :class:`EngineNotOpen` for a ``kind`` (SyncEngine, SyncClient)."""
    return (
        f"this {kind} is not open: call open() first (and close() at the end), "
        f"or use 'with {kind}(...) as handle:'"
    )


_numbers = itertools.count(1)


class _Portal:
    """An event loop that runs in a daemon thread until :meth:`stop`, and the calls handed to it
    from other threads."""

    def __init__(self, kind: str, inner: str) -> None:
        self.kind, self.inner = kind, inner  # for messages: SyncEngine and its "engine"
        # A loop factory: the Runner then leaves the event loop of the opening thread alone.
        self._runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
        self._loop = self._runner.get_loop()
        self._stopped = self._loop.create_future()
        self._lock = threading.Lock()  # a call is handed over before stop() or not at all
        self._stopping = False
        self.thread = threading.Thread(
            target=self._serve, name=f"treadle-sync-{next(_numbers)}", daemon=True
        )
        self.thread.start()

    def _serve(self) -> None:
        with self._runner:  # on leaving: cancels what is left, then closes the loop
            self._runner.run(self._until_stopped())

    async def _until_stopped(self) -> None:
        await self._stopped

    def refuse_inside(self, method: str) -> None:
        """Raise :class:`WrongEventLoop` in the loop's own thread, which would wait for itself."""
        if threading.current_thread() is self.thread:
            raise WrongEventLoop(
                f"{self.kind}.{method}() was called from the {self.kind}'s own event loop "
                f"(thread {self.thread.name!r}), for example from an async step, and would wait "
                f"for that loop forever: there, await the async {self.inner} ('await "
                f"sync_{self.inner}.{self.inner}.{method}(...)'), or make the step a plain "
                f"function (those run in worker threads, which may call the {self.kind})"
            )

    def call(
        self, method: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``method(*args, **kwargs)`` on the loop; block this thread until it returns."""
        self.refuse_inside(getattr(method, "__name__", "call"))
        with self._lock:
            if self._stopping:
                raise EngineNotOpen(not_open(self.kind))
            future = asyncio.run_coroutine_threadsafe(method(*args, **kwargs), self._loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise EngineNotOpen(
                f"{not_open(self.kind)} (it was closed while this call waited)"
            ) from None
        except BaseException:
            future.cancel()  # this thread was interrupted (Ctrl-C): stop the call on the loop too
            raise

    def stop(self) -> None:
        """End the loop (cancelling what still runs on it) and its thread."""
        with self._lock:
            self._stopping = True
            self._loop.call_soon_threadsafe(self._stopped.set_result, None)
        self.thread.join()


class SyncControl(Generic[C]):
    """The blocking methods of a :class:`RunControl` (an :class:`Engine` or a :class:`Client`),
    run on a portal thread that :meth:`open` starts and :meth:`close` ends.

    Any number of threads may call them at once (each blocks only itself). Called before
    :meth:`open` or after :meth:`close` they raise :class:`EngineNotOpen`, and from the portal's
    own loop (an ``async`` step) they raise :class:`WrongEventLoop` instead of waiting for
    themselves forever.
    """

    _inner = "target"  # the attribute that names the async handle, for messages

    def __init__(self, target: C) -> None:
        self._target = target
        self._lock = threading.Lock()  # open(), close() and register() one at a time
        self._portal: _Portal | None = None

    @property
    def persistence(self) -> Persistence:
        """Where the runs are kept."""
        return self._target.persistence

    @property
    def clock(self) -> Clock:
        """The clock of durable times."""
        return self._target.clock

    def _call(
        self, method: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        portal = self._portal
        if portal is None:
            raise EngineNotOpen(not_open(type(self).__name__))
        return portal.call(method, *args, **kwargs)

    def _refuse_inside(self, method: str) -> None:
        portal = self._portal
        if portal is not None:
            portal.refuse_inside(method)

    # Life cycle ----------------------------------------------------------------------------

    def open(self) -> None:
        """Start the event loop's thread and open the async handle on it; an error of opening
        is raised here, and then no thread is left behind. Opening one that is open raises
        :class:`WrongEventLoop`; one that was closed may be opened again."""
        self._refuse_inside("open")
        with self._lock:
            if self._portal is not None:
                raise WrongEventLoop(
                    f"this {type(self).__name__} is already open (its event loop runs in thread "
                    f"{self._portal.thread.name!r}): open it once and share it between threads"
                )
            portal = _Portal(type(self).__name__, self._inner)
            try:
                portal.call(self._target.open)
            except BaseException:
                portal.stop()
                raise
            self._portal = portal

    def close(self, drain: float = 5.0) -> None:
        """Close the async handle on its loop (:meth:`Engine.close`, with ``drain``), then end
        the loop and its thread. Calls still waiting in other threads raise
        :class:`EngineNotOpen`. Closing one that is not open does nothing."""
        self._refuse_inside("close")
        with self._lock:
            portal, self._portal = self._portal, None
            if portal is None:
                return
            try:
                portal.call(self._target.close, drain)
            finally:
                portal.stop()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Reading and controlling runs ----------------------------------------------------------

    def definition(self, run_id: str) -> dict[str, Any]:
        """:meth:`Engine.definition`, blocking: the shape of the definition a run follows."""
        return self._call(self._target.definition, run_id)

    # Starting and reading runs -------------------------------------------------------------

    def start(
        self,
        name: str,
        data: Any = None,
        *,
        run_id: str | None = None,
        version: str | None = None,
        deadline: Duration | datetime | None = None,
        labels: dict[str, str] | None = None,
        priority: int = 0,
        debounce_key: str | None = None,
        debounce: Duration | None = None,
        debounce_max: Duration | None = None,
    ) -> str:
        """:meth:`Engine.start`, blocking: start a run (idempotently with ``run_id``); return
        its id. (The life cycle is :meth:`open`/:meth:`close`, as on :class:`Engine`.)"""
        return self._call(
            self._target.start,
            name,
            data,
            run_id=run_id,
            version=version,
            deadline=deadline,
            labels=labels,
            priority=priority,
            debounce_key=debounce_key,
            debounce=debounce,
            debounce_max=debounce_max,
        )

    def status(self, run_id: str) -> State:
        """:meth:`Engine.status`, blocking: a snapshot of the run."""
        return self._call(self._target.status, run_id)

    def result(self, run_id: str) -> Any:
        """:meth:`Engine.result`, blocking: what the completed run returned."""
        return self._call(self._target.result, run_id)

    def runs(
        self,
        *,
        workflow: str | None = None,
        status: Status | str | None = None,
        limit: int = 100,
        parent_id: str | None = None,
        **fields: Any,
    ) -> list[State]:
        """:meth:`Engine.runs`, blocking: runs, newest first."""
        return self._call(
            self._target.runs,
            workflow=workflow,
            status=status,
            limit=limit,
            parent_id=parent_id,
            **fields,
        )

    def find_runs(
        self,
        filter: RunFilter | None = None,
        /,
        *,
        cursor: str | None = None,
        limit: int = 100,
        **fields: Any,
    ) -> RunPage:
        """:meth:`Engine.find_runs`, blocking: one page of the runs a filter matches."""
        return self._call(self._target.find_runs, filter, cursor=cursor, limit=limit, **fields)

    def bulk(
        self,
        action: str,
        filter: RunFilter | None = None,
        /,
        *,
        dry_run: bool = False,
        by: str | None = None,
        reason: str | None = None,
        to: str | None = None,
        rename: dict[str, str] | None = None,
        batch: int = 100,
        run_ids: Sequence[str] | None = None,
        **fields: Any,
    ) -> BulkResult:
        """:meth:`Engine.bulk`, blocking: one action on every run a filter matches."""
        return self._call(
            self._target.bulk,
            action,
            filter,
            dry_run=dry_run,
            by=by,
            reason=reason,
            to=to,
            rename=rename,
            batch=batch,
            run_ids=run_ids,
            **fields,
        )

    def history(self, run_id: str) -> list[Event]:
        """:meth:`Engine.history`, blocking: what happened to the run, in order."""
        return self._call(self._target.history, run_id)

    def limits(self) -> list[LimitUse]:
        """:meth:`Engine.limits`, blocking: every concurrency key in use, by key."""
        return self._call(self._target.limits)

    def wait(self, run_id: str, timeout: float | None = None) -> State:
        """:meth:`Engine.wait`, blocking only the calling thread: until the run is COMPLETED,
        FAILED or CANCELLED; :class:`TimeoutError` if not within ``timeout`` seconds."""
        return self._call(self._target.wait, run_id, timeout)

    # Controlling runs ----------------------------------------------------------------------

    def pause(self, run_id: str) -> None:
        """:meth:`Engine.pause`, blocking."""
        self._call(self._target.pause, run_id)

    def resume(self, run_id: str, *, by: str | None = None) -> None:
        """:meth:`Engine.resume`, blocking."""
        self._call(self._target.resume, run_id, by=by)

    def cancel(self, run_id: str, *, by: str | None = None) -> None:
        """:meth:`Engine.cancel`, blocking."""
        self._call(self._target.cancel, run_id, by=by)

    def signal(
        self, run_id: str, name: str, data: Any = None, *, idempotency_key: str | None = None
    ) -> None:
        """:meth:`Engine.signal`, blocking: send a signal to the run."""
        self._call(self._target.signal, run_id, name, data, idempotency_key=idempotency_key)

    def approve(
        self,
        run_id: str,
        name: str,
        *,
        by: str | None = None,
        comment: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """:meth:`Engine.approve`, blocking: approve ``await_approval(name)`` as ``by``."""
        self._call(
            self._target.approve,
            run_id,
            name,
            by=by,
            comment=comment,
            idempotency_key=idempotency_key,
        )

    def reject(
        self,
        run_id: str,
        name: str,
        *,
        by: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """:meth:`Engine.reject`, blocking: reject ``await_approval(name)`` as ``by``."""
        self._call(
            self._target.reject, run_id, name, by=by, reason=reason, idempotency_key=idempotency_key
        )

    # Runs that outlive their code ----------------------------------------------------------

    def retry(self, run_id: str, *, by: str | None = None) -> None:
        """:meth:`Engine.retry`, blocking: go on with a HELD run."""
        self._call(self._target.retry, run_id, by=by)

    def skip(
        self, run_id: str, data: dict[str, Any] | None = None, *, by: str | None = None
    ) -> None:
        """:meth:`Engine.skip`, blocking: mark a HELD run's failed step done."""
        self._call(self._target.skip, run_id, data, by=by)

    def abort(self, run_id: str, reason: str, *, by: str | None = None) -> None:
        """:meth:`Engine.abort`, blocking: compensate a HELD run and end it FAILED."""
        self._call(self._target.abort, run_id, reason, by=by)

    # Deleting finished runs ----------------------------------------------------------------

    def delete(self, run_id: str) -> list[str]:
        """:meth:`Engine.delete`, blocking: delete a finished run whole, with its children."""
        return self._call(self._target.delete, run_id)

    def prune(
        self,
        older_than: Duration,
        *,
        status: Status | str | None = None,
        workflow: str | None = None,
        dry_run: bool = False,
        batch_size: int = BATCH_SIZE,
    ) -> PruneReport:
        """:meth:`Engine.prune`, blocking: delete finished runs older than ``older_than``."""
        return self._call(
            self._target.prune,
            older_than,
            status=status,
            workflow=workflow,
            dry_run=dry_run,
            batch_size=batch_size,
        )

    def rate_limits(self) -> list[RateLimitState]:
        """:meth:`Engine.rate_limits`, blocking: every rate limiter with its state now."""
        return self._call(self._target.rate_limits)
