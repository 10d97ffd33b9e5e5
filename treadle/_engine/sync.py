"""The blocking facades, for threads without an event loop (Django or Flask request threads,
scripts): :class:`SyncEngine` over one async :class:`Engine`, and :class:`SyncClient` over one
:class:`Client`, each on a portal thread of its own (:mod:`.portal`)."""

from __future__ import annotations

from typing import Any, TypedDict, Unpack

from .._clock import Clock
from .._codec import Codec
from .._duration import Duration
from .._metrics import Metrics
from .._nodes import Workflow
from ..persistence import Persistence
from .client import Client
from .facade import Engine
from .operator import MigrationPlan
from .portal import SyncControl


class _EngineOptions(TypedDict, total=False):
    """The keyword options of :class:`Engine` (a test checks that both name the same ones)."""

    clock: Clock | None
    max_concurrent_runs: int
    lease: float
    poll_interval: float
    step_threads: int
    codec: Codec | None
    retention: Duration | None


class SyncEngine(SyncControl[Engine]):
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

    _inner = "engine"

    def __init__(
        self, persistence: Persistence | None = None, **options: Unpack[_EngineOptions]
    ) -> None:
        super().__init__(Engine(persistence, **options))

    @classmethod
    def wrap(cls, engine: Engine) -> SyncEngine:
        """A SyncEngine over ``engine``, which must not be open (it gets opened on the
        SyncEngine's own loop by :meth:`open`)."""
        return cls.__new__(cls)._adopted(engine)

    def _adopted(self, engine: Engine) -> SyncEngine:
        SyncControl.__init__(self, engine)
        return self

    # What it was made with -----------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The async engine underneath; await its methods only on its own loop (in async
        steps, for example)."""
        return self._target

    @property
    def metrics(self) -> Metrics:
        """:attr:`Engine.metrics`: what the engine counted."""
        return self._target.metrics

    @property
    def workflows(self) -> dict[str, Workflow]:
        """:attr:`Engine.workflows`: the registered workflows, by name."""
        return self._target.workflows

    def settle(self) -> None:
        """:meth:`Engine.settle`, blocking: for tests, return once nothing more will happen
        without an outside event."""
        self._call(self._target.settle)

    # Definitions ---------------------------------------------------------------------------

    def register(self, *workflows: Workflow) -> None:
        """:meth:`Engine.register`: make definitions known (before or after :meth:`open`)."""
        self._refuse_inside("register")
        with self._lock:
            if self._portal is None:
                self._target.register(*workflows)
            else:
                self._call(self._register, *workflows)

    async def _register(self, *workflows: Workflow) -> None:
        self._target.register(*workflows)  # an open engine saves the definition on its loop

    def versions(self, name: str) -> list[Workflow]:
        """:meth:`Engine.versions`: the registered definitions of ``name``, oldest first."""
        return self._target.versions(name)

    # Runs that outlive their code ----------------------------------------------------------

    def plan_migration(
        self, run_id: str, *, to: str | None = None, rename: dict[str, str] | None = None
    ) -> MigrationPlan:
        """:meth:`Engine.plan_migration`, blocking."""
        return self._call(self._target.plan_migration, run_id, to=to, rename=rename)

    def migrate(
        self,
        run_id: str,
        *,
        to: str | None = None,
        rename: dict[str, str] | None = None,
        by: str | None = None,
    ) -> MigrationPlan:
        """:meth:`Engine.migrate`, blocking: move a run onto another definition."""
        return self._call(self._target.migrate, run_id, to=to, rename=rename, by=by)

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
            self._target.migrate_runs,
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
            self._target.fork,
            run_id,
            from_step=from_step,
            data=data,
            version=version,
            new_run_id=new_run_id,
        )


class SyncClient(SyncControl[Client]):
    """A blocking facade over one :class:`Client`: ``SyncClient(database)`` (a URL or a
    :class:`Persistence`), ``with SyncClient(url) as client:`` or :meth:`open`/:meth:`close`;
    every other method is the client's of the same name and arguments, blocking only the
    calling thread. Safe to share between threads (one per process is enough)."""

    _inner = "client"

    def __init__(
        self,
        database: str | Persistence,
        *,
        poll_interval: float = 1.0,
        codec: Codec | None = None,
    ) -> None:
        super().__init__(Client(database, poll_interval=poll_interval, codec=codec))

    @property
    def client(self) -> Client:
        """The async client underneath; await its methods only on its own loop."""
        return self._target
