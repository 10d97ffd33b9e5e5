"""The engine: the :class:`Engine` facade (``facade``) over the executor of runs
(``executor``: claims, leases, execution), the waiters of ``wait()`` (``waiters``) and the
registry of workflows and definitions (``registry``)."""

from .convert import new_run_id, to_state
from .facade import Engine

__all__ = ["Engine", "new_run_id", "to_state"]
