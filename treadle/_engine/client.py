"""The client: starts and controls runs by workflow name on a database that workers execute,
without importing or registering any step code (a web process, a script, the CLI)."""

from __future__ import annotations

from ..persistence import Codec, Persistence, persistence_from_url
from .control import RunControl


class Client(RunControl):
    """Starts, reads and controls runs on ``database`` (a URL as for
    :func:`persistence_from_url`, or a :class:`Persistence`) and executes none of them.

    Runs are started by workflow name on the definitions that workers stored in the database
    (:class:`WorkflowNotFound` when no worker ever registered that name, or that version);
    signals and approvals are checked against the definition each run follows. What the
    client records reaches the workers at once (through the database). ``async with
    Client(url) as client:``, or :meth:`open`/:meth:`close`; :class:`SyncClient` is the
    blocking one. ``codec``: the :class:`Codec` the workers store run data through.
    """

    def __init__(
        self,
        database: str | Persistence,
        *,
        poll_interval: float = 1.0,
        codec: Codec | None = None,
    ) -> None:
        if isinstance(database, str) and database.startswith("memory:"):
            raise ValueError(
                "a Client on memory:// would see no worker's runs (each memory:// is a database "
                "of its own): give it the MemoryPersistence object of the engine, or a "
                "sqlite:/// or postgresql:// URL that the workers use"
            )
        persistence = persistence_from_url(database) if isinstance(database, str) else database
        super().__init__(
            persistence,
            clock=None,
            max_concurrent_runs=0,
            lease=30.0,
            poll_interval=poll_interval,
            step_threads=1,
            codec=codec,
        )
