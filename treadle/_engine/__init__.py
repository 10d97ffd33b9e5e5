"""The engine: the :class:`Engine` facade (``facade``) over the executor of runs
(``executor``: claims, leases, execution), the waiters of ``wait()`` (``waiters``) and the
registry of workflows and definitions (``registry``), and an operator's actions on runs that
outlive their code (``operator``: held runs, migration, forks)."""

from .convert import new_run_id, to_state
from .facade import Engine
from .operator import MigrationPlan

__all__ = ["Engine", "MigrationPlan", "new_run_id", "to_state"]
