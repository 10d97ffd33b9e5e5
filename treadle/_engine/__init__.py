"""The engine: the :class:`Engine` facade (``facade``) over the executor of runs
(``executor``: claims, leases, execution), the waiters of ``wait()`` (``waiters``) and the
registry of workflows and definitions (``registry``); an operator's actions on runs that outlive
their code (``operator``: held runs, migration, forks); :class:`SyncEngine` (``sync``) is the
blocking facade over an Engine for threads without an event loop."""

from .convert import new_run_id, to_state
from .facade import Engine
from .operator import MigrationPlan
from .sync import SyncEngine

__all__ = ["Engine", "MigrationPlan", "SyncEngine", "new_run_id", "to_state"]
