"""The synchronous facade: :class:`SyncEngine` runs one async :class:`Engine` on an event loop of
its own, in a daemon thread (a portal, as in APScheduler 4), and hands every call to that loop, so
that threads without an event loop (Django or Flask request threads, scripts) can use it.

Nothing of the engine is written again here: each method hands the engine's coroutine to the
loop and blocks the calling thread, and only it, until the result is there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, ParamSpec, TypedDict, TypeVar, Unpack

from .._clock import Clock
from .._codec import Codec
from .._errors import EngineNotOpen, WrongEventLoop
from .._metrics import Metrics
from .._nodes import Workflow
from .._state import Event, State, Status
from ..persistence import Persistence
from .facade import Engine
from .operator import MigrationPlan

P = ParamSpec("P")
T = TypeVar("T")

NOT_OPEN = (
    "this SyncEngine is not open: call open() first (and close() at the end), "
    "or use 'with SyncEngine(...) as engine:'"
)

_numbers = itertools.count(1)


class _EngineOptions(TypedDict, total=False):
    """The keyword options of :class:`Engine` (a test checks that both name the same ones)."""

    clock: Clock | None
    max_concurrent_runs: int
    lease: float
    poll_interval: float
    step_threads: int
    codec: Codec | None


class _Portal:
    """An event loop that runs in a daemon thread until :meth:`stop`, and the calls handed to it
    from other threads."""

    def __init__(self) -> None:
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
                f"SyncEngine.{method}() was called from the SyncEngine's own event loop (thread "
                f"{self.thread.name!r}), for example from an async step, and would wait for "
                f"that loop forever: there, await the async engine ('await "
                f"sync_engine.engine.{method}(...)'), or make the step a plain function (those "
                "run in worker threads, which may call the SyncEngine)"
            )

    def call(
        self, method: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``method(*args, **kwargs)`` on the loop; block this thread until it returns."""
        self.refuse_inside(getattr(method, "__name__", "call"))
        with self._lock:
            if self._stopping:
                raise EngineNotOpen(NOT_OPEN)
            future = asyncio.run_coroutine_threadsafe(method(*args, **kwargs), self._loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise EngineNotOpen(f"{NOT_OPEN} (it was closed while this call waited)") from None
        except BaseException:
            future.cancel()  # this thread was interrupted (Ctrl-C): stop the call on the loop too
            raise

    def stop(self) -> None:
        """End the loop (cancelling what still runs on it) and its thread."""
        with self._lock:
            self._stopping = True
            self._loop.call_soon_threadsafe(self._stopped.set_result, None)
        self.thread.join()


class SyncEngine:
    """A blocking facade over one :class:`Engine`, for threads without an event loop.

    ``SyncEngine(persistence=None, **options)`` makes the engine (the options of
    :class:`Engine`); :meth:`wrap` takes an engine made elsewhere that is not open.
    :meth:`open` starts a daemon thread with an event loop and opens the engine on it;
    :meth:`close` closes the engine there and ends the thread. ``with SyncEngine(...) as
    engine:`` does both. Every other method is the engine's method of the same name and
    arguments, blocking until it is done; any number of threads may call them at once (each
    blocks only itself). Called before :meth:`open` or after :meth:`close` they raise
    :class:`EngineNotOpen`, and from the engine's own loop (an ``async`` step) they raise
    :class:`WrongEventLoop` instead of waiting for themselves forever.
    """

    def __init__(
        self, persistence: Persistence | None = None, **options: Unpack[_EngineOptions]
    ) -> None:
        self._adopt(Engine(persistence, **options))

    @classmethod
    def wrap(cls, engine: Engine) -> SyncEngine:
        """A SyncEngine over ``engine``, which must not be open (it gets opened on the
        SyncEngine's own loop by :meth:`open`)."""
        sync = cls.__new__(cls)
        sync._adopt(engine)
        return sync

    def _adopt(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()  # open(), close() and register() one at a time
        self._portal: _Portal | None = None

    def _call(
        self, method: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        portal = self._portal
        if portal is None:
            raise EngineNotOpen(NOT_OPEN)
        return portal.call(method, *args, **kwargs)

    def _refuse_inside(self, method: str) -> None:
        portal = self._portal
        if portal is not None:
            portal.refuse_inside(method)

    # What it was made with -----------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The async engine underneath; await its methods only on its own loop (in async
        steps, for example)."""
        return self._engine

    @property
    def persistence(self) -> Persistence:
        """:attr:`Engine.persistence`: where the runs are kept."""
        return self._engine.persistence

    @property
    def clock(self) -> Clock:
        """:attr:`Engine.clock`: the clock of durable times."""
        return self._engine.clock

    @property
    def metrics(self) -> Metrics:
        """:attr:`Engine.metrics`: what the engine counted."""
        return self._engine.metrics

    @property
    def workflows(self) -> dict[str, Workflow]:
        """:attr:`Engine.workflows`: the registered workflows, by name."""
        return self._engine.workflows

    # Life cycle ----------------------------------------------------------------------------

    def open(self) -> None:
        """Start the event loop's thread and open the engine on it (:meth:`Engine.open`); an
        error of opening is raised here, and then no thread is left behind. Opening a
        SyncEngine that is open raises :class:`WrongEventLoop`; one that was closed may be
        opened again."""
        self._refuse_inside("open")
        with self._lock:
            if self._portal is not None:
                raise WrongEventLoop(
                    f"this SyncEngine is already open (its event loop runs in thread "
                    f"{self._portal.thread.name!r}): open it once and share it between threads"
                )
            portal = _Portal()
            try:
                portal.call(self._engine.open)
            except BaseException:
                portal.stop()
                raise
            self._portal = portal

    def close(self, drain: float = 5.0) -> None:
        """Close the engine on its loop (:meth:`Engine.close`, with ``drain``), then end the
        loop and its thread. Calls still waiting in other threads raise
        :class:`EngineNotOpen`. Closing a SyncEngine that is not open does nothing."""
        self._refuse_inside("close")
        with self._lock:
            portal, self._portal = self._portal, None
            if portal is None:
                return
            try:
                portal.call(self._engine.close, drain)
            finally:
                portal.stop()

    def __enter__(self) -> SyncEngine:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def settle(self) -> None:
        """:meth:`Engine.settle`, blocking: for tests, return once nothing more will happen
        without an outside event."""
        self._call(self._engine.settle)

    # Definitions ---------------------------------------------------------------------------

    def register(self, *workflows: Workflow) -> None:
        """:meth:`Engine.register`: make definitions known (before or after :meth:`open`)."""
        self._refuse_inside("register")
        with self._lock:
            if self._portal is None:
                self._engine.register(*workflows)
            else:
                self._call(self._register, *workflows)

    async def _register(self, *workflows: Workflow) -> None:
        self._engine.register(*workflows)  # an open engine saves the definition on its loop

    def versions(self, name: str) -> list[Workflow]:
        """:meth:`Engine.versions`: the registered definitions of ``name``, oldest first."""
        return self._engine.versions(name)

    def definition(self, run_id: str) -> dict[str, Any]:
        """:meth:`Engine.definition`, blocking: the shape of the definition a run follows."""
        return self._call(self._engine.definition, run_id)

    # Starting and reading runs -------------------------------------------------------------

    def start(
        self,
        name: str,
        data: Any = None,
        *,
        run_id: str | None = None,
        version: str | None = None,
    ) -> str:
        """:meth:`Engine.start`, blocking: start a run (idempotently with ``run_id``); return
        its id. (The life cycle is :meth:`open`/:meth:`close`, as on :class:`Engine`.)"""
        return self._call(self._engine.start, name, data, run_id=run_id, version=version)

    def status(self, run_id: str) -> State:
        """:meth:`Engine.status`, blocking: a snapshot of the run."""
        return self._call(self._engine.status, run_id)

    def runs(
        self,
        *,
        workflow: str | None = None,
        status: Status | str | None = None,
        limit: int = 100,
        parent_id: str | None = None,
    ) -> list[State]:
        """:meth:`Engine.runs`, blocking: runs, newest first."""
        return self._call(
            self._engine.runs, workflow=workflow, status=status, limit=limit, parent_id=parent_id
        )

    def history(self, run_id: str) -> list[Event]:
        """:meth:`Engine.history`, blocking: what happened to the run, in order."""
        return self._call(self._engine.history, run_id)

    def wait(self, run_id: str, timeout: float | None = None) -> State:
        """:meth:`Engine.wait`, blocking only the calling thread: until the run is COMPLETED,
        FAILED or CANCELLED; :class:`TimeoutError` if not within ``timeout`` seconds."""
        return self._call(self._engine.wait, run_id, timeout)

    # Controlling runs ----------------------------------------------------------------------

    def pause(self, run_id: str) -> None:
        """:meth:`Engine.pause`, blocking."""
        self._call(self._engine.pause, run_id)

    def resume(self, run_id: str) -> None:
        """:meth:`Engine.resume`, blocking."""
        self._call(self._engine.resume, run_id)

    def cancel(self, run_id: str) -> None:
        """:meth:`Engine.cancel`, blocking."""
        self._call(self._engine.cancel, run_id)

    def signal(
        self, run_id: str, name: str, data: Any = None, *, idempotency_key: str | None = None
    ) -> None:
        """:meth:`Engine.signal`, blocking: send a signal to the run."""
        self._call(self._engine.signal, run_id, name, data, idempotency_key=idempotency_key)

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
            self._engine.approve,
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
            self._engine.reject, run_id, name, by=by, reason=reason, idempotency_key=idempotency_key
        )

    # Runs that outlive their code ----------------------------------------------------------

    def retry(self, run_id: str, *, by: str | None = None) -> None:
        """:meth:`Engine.retry`, blocking: go on with a HELD run."""
        self._call(self._engine.retry, run_id, by=by)

    def skip(
        self, run_id: str, data: dict[str, Any] | None = None, *, by: str | None = None
    ) -> None:
        """:meth:`Engine.skip`, blocking: mark a HELD run's failed step done."""
        self._call(self._engine.skip, run_id, data, by=by)

    def abort(self, run_id: str, reason: str, *, by: str | None = None) -> None:
        """:meth:`Engine.abort`, blocking: compensate a HELD run and end it FAILED."""
        self._call(self._engine.abort, run_id, reason, by=by)

    def plan_migration(
        self, run_id: str, *, to: str | None = None, rename: dict[str, str] | None = None
    ) -> MigrationPlan:
        """:meth:`Engine.plan_migration`, blocking."""
        return self._call(self._engine.plan_migration, run_id, to=to, rename=rename)

    def migrate(
        self,
        run_id: str,
        *,
        to: str | None = None,
        rename: dict[str, str] | None = None,
        by: str | None = None,
    ) -> MigrationPlan:
        """:meth:`Engine.migrate`, blocking: move a run onto another definition."""
        return self._call(self._engine.migrate, run_id, to=to, rename=rename, by=by)

    def migrate_runs(
        self,
        workflow: str,
        *,
        source: str | None = None,
        to: str | None = None,
        rename: dict[str, str] | None = None,
        dry_run: bool = False,
        by: str | None = None,
        limit: int = 10_000,
    ) -> list[MigrationPlan]:
        """:meth:`Engine.migrate_runs`, blocking."""
        return self._call(
            self._engine.migrate_runs,
            workflow,
            source=source,
            to=to,
            rename=rename,
            dry_run=dry_run,
            by=by,
            limit=limit,
        )

    def fork(
        self,
        run_id: str,
        *,
        from_step: str | None = None,
        data: dict[str, Any] | None = None,
        version: str | None = None,
        new_run_id: str | None = None,
    ) -> str:
        """:meth:`Engine.fork`, blocking: start a run from one of another run's steps."""
        return self._call(
            self._engine.fork,
            run_id,
            from_step=from_step,
            data=data,
            version=version,
            new_run_id=new_run_id,
        )
