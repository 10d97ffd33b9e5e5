"""What the step kinds (``composites``, ``waits``, ``saga``) use of the driver.

A protocol rather than :class:`~.driver.RunDriver` itself, so that those modules do not import
the driver that imports them: the interpreter has no import cycle, not even for type checking.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from .._nodes import Node, Workflow
from .._state import EventKind, State, Status
from ..persistence._records import CheckpointAck, RunRecord, SlotClaim
from . import cursor
from .control import Control, Scope
from .data import Base
from .host import RunHost
from .lazy import LazyData
from .texts import Sealed


class Walk(Protocol):
    """One run being walked: its cursor, its data, and the driver's operations on them."""

    host: RunHost
    record: RunRecord
    workflow: Workflow
    run_id: str
    data: LazyData
    nodes: cursor.Nodes
    comp: list[cursor.CompensationEntry]
    failure: cursor.Failure | None
    consumed: list[int]
    dirty: bool
    replayable: bool
    by_name: dict[str, Node]
    status: Status
    slot_key: str | None

    def note(self, kind: EventKind, step: str | None = None, **detail: Any) -> None:
        """Record a history event with the next checkpoint."""

    def touch(self) -> None:
        """Mark progress that must be checkpointed before the next step's side effects."""

    async def checkpoint(
        self,
        status: Status = Status.RUNNING,
        *,
        error: str | None = None,
        waiting_for: list[str] | None = None,
        wake_at: datetime | None = None,
        result: str | None = None,
        slot: SlotClaim | None = None,
    ) -> CheckpointAck:
        """Write everything since the last checkpoint, atomically."""

    async def flush(self) -> None:
        """Make what happened so far durable before user code has side effects."""

    def request(self, control: Control) -> None:
        """Ask the run to cancel, pause or stop (see ``RunDriver.request``)."""

    def set_data(self, key: str, value: Any, where: str | None = None) -> None:
        """Store a value in the run's data (a wait's result)."""

    def set_slot(self, key: str, index: int, value: Any) -> None:
        """Store a parallel map's result at ``data[key][index]`` (see ``RunData.set_slot``)."""

    def copy(self) -> tuple[LazyData, Base, int]:
        """A private copy of the data for a step about to run (see ``RunDriver.copy``)."""

    def release(self, mark: int) -> None:
        """A step's private copy (taken at ``mark``) is done with."""

    def seal(self, private: Any, base: Base, where: str) -> Sealed:
        """What a step changed of its private copy (see ``RunData.seal``)."""

    def merge(self, step: str, sealed: Sealed, base: Base, since: int) -> None:
        """Take a step's private copy back into the run's data (see ``RunDriver.merge``)."""

    def view(self) -> State:
        """The run as conditions see it."""

    def drop(self, path: str) -> None:
        """Forget the entries of the node at ``path`` and of everything below it."""

    async def run_seq(self, steps: tuple[Node, ...], scope: Scope) -> None:
        """Run a sequence from its recorded position."""

    async def run_node(self, node: Node, scope: Scope) -> None:
        """Run one node to completion (or suspension), then drop its entries."""
