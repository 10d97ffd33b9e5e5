"""A checkpoint that the persistence refuses for good: the run fails rather than trying it
again (see :func:`refuse`)."""

from __future__ import annotations

import logging
from typing import Protocol

from .._text import storable
from ..persistence._records import NewEvent
from . import cursor
from .control import CheckpointRefused

log = logging.getLogger("treadle")


class Refusable(Protocol):
    """What :func:`refuse` changes of a run's driver."""

    run_id: str
    refusals: int
    nodes: cursor.Nodes
    events: list[NewEvent]
    consumed: list[int]
    failure: cursor.Failure | None
    comp: list[cursor.CompensationEntry]

    def revert(self) -> None:
        """Go back to the data as the last checkpoint stored it."""


def refuse(driver: Refusable, refused: CheckpointRefused) -> None:
    """Fail the run whose checkpoint can never be stored, rather than trying it again.

    What was not stored is dropped: the data goes back to the last stored data and the
    positions are forgotten (a failed run only compensates); if a checkpoint of the
    compensation is refused too, the compensations left are abandoned. The run then ends
    FAILED with the reason, or raises if even that cannot be stored.
    """
    driver.refusals += 1
    if driver.refusals > 2:
        raise refused.error
    reason = storable(f"a checkpoint of run {driver.run_id!r} cannot be stored: {refused}")
    log.error("run %s: %s", driver.run_id, reason, extra={"run_id": driver.run_id})
    driver.revert()
    driver.nodes.clear()
    driver.events.clear()
    driver.consumed.clear()
    if driver.failure is None:
        driver.failure = {"status": "failed", "error": reason}
        return
    driver.failure.pop("retry", None)
    problems = driver.failure.setdefault("problems", [])
    if driver.refusals > 1:
        problems.append(f"compensation abandoned: {reason}")
        driver.comp.clear()
    else:
        problems.append(reason)
