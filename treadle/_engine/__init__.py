"""The engine: the :class:`Engine` facade (``facade``) over the executor of runs
(``executor``: claims, leases, execution), the waiters of ``wait()`` (``waiters``) and the
registry of workflows and definitions (``registry``); what every handle on runs can do
(``control``: :class:`RunControl`), of which :class:`Client` (``client``) executes nothing; an
operator's actions on runs that outlive their code (``operator``: held runs, migration, forks);
:class:`SyncEngine` and :class:`SyncClient` (``sync``, on the portal thread of ``portal``) are the
blocking facades for threads without an event loop."""

from .client import Client
from .control import RunControl
from .convert import new_run_id, to_state
from .facade import Engine
from .operator import MigrationPlan
from .retention import PruneReport
from .sync import SyncClient, SyncEngine

__all__ = [
    "Client",
    "Engine",
    "MigrationPlan",
    "PruneReport",
    "RunControl",
    "SyncClient",
    "SyncEngine",
    "new_run_id",
    "to_state",
]
