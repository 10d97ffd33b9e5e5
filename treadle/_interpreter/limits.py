"""Admission of a run of a workflow with a concurrency limit (``Workflow.concurrency``).

Before its first step, and again whenever an engine takes it up, such a run asks for a slot of
its key with a WAITING checkpoint that carries a :class:`SlotClaim`. The persistence decides
in that one transaction (see :mod:`treadle.persistence._limit_scripts`): admitted, the
checkpoint is written RUNNING and the walk goes on; queued, the run is parked (WAITING on
``limit:<key>``, no timer but its deadline, no lease) until the run that frees a slot gives it
to it; skipped, it ends CANCELLED without running a step. The key is computed once and kept in
the cursor (``s``), so a recovered run asks for the same key.
"""

from __future__ import annotations

from .._concurrency import limit_key
from .._errors import DefinitionError
from .._state import EventKind, Status, WaitKind, wait_key
from .._text import storable
from ..persistence._base import utcnow
from ..persistence._records import SlotClaim
from . import deadlines
from .saga import unwind
from .walk import Walk


async def admit(driver: Walk) -> Status | None:
    """None when the run holds a slot (the walk goes on); else the status it stopped in:
    WAITING (queued), CANCELLED (skipped), FAILED (its key function failed)."""
    rule = driver.workflow.concurrency
    assert rule is not None
    if driver.slot_key is None:
        try:
            driver.slot_key = await limit_key(driver.workflow.name, rule, driver.view())
        except DefinitionError as exc:
            driver.failure = {"status": "failed", "error": storable(str(exc))}
            return await unwind(driver)
    waits = [wait_key(WaitKind.LIMIT, driver.slot_key)]
    wake_at = deadlines.wake(driver, None)
    until = None if wake_at is None else wake_at.isoformat()
    driver.note(EventKind.WAITING, None, waits=waits, until=until)
    claim = SlotClaim(driver.slot_key, rule.limit, rule.on_conflict, utcnow())
    ack = await driver.checkpoint(Status.WAITING, waiting_for=waits, wake_at=wake_at, slot=claim)
    outcome = ack.slot
    assert outcome is not None
    driver.slot_key = outcome.key
    if outcome.state == "queued" and ack.suspended:
        return Status.WAITING
    driver.status = Status.RUNNING
    if outcome.state == "skipped":
        holders = ", ".join(repr(h) for h in outcome.holders)
        driver.failure = {
            "status": "cancelled",
            "error": storable(
                f"skipped: concurrency limit {rule.limit} of {outcome.key} is held by {holders}"
            ),
        }
        return await unwind(driver)
    return None
