"""The interpreter: executes one run by walking its workflow's step tree.

- ``driver``: :class:`RunDriver`, the walk and its checkpoints; ``composites``: branches, loops
  and parallel steps; ``waits``: signals, approvals, timers and child runs; ``saga``:
  compensation; ``mapping``: moving a run onto another definition.
- ``cursor``: the durable format of where a run is; ``control``: why a walk stops and what a
  run was asked to do; ``host``: what a driver needs from the engine (:class:`RunHost`).

Calling user code (``_calls``, ``_threads``) sits below, beside the nodes that use it too.
"""

from .control import Control
from .cursor import NEW as NEW_CURSOR
from .driver import RunDriver, iso
from .host import RunHost
from .mapping import Plan, plan
from .waits import child_run_id

__all__ = ["NEW_CURSOR", "Control", "Plan", "RunDriver", "RunHost", "child_run_id", "iso", "plan"]
