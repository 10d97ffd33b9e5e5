"""Transaction scripts of concurrency limits (``Workflow.concurrency``), for every dialect.

A run of a limited workflow has one row in ``limit_holders`` from the checkpoint that admits it
(or queues it) to the checkpoint that ends it: ``held`` while it holds one of its key's slots,
else queued. Every script that counts or changes a key's rows first takes the key's lock
(``lock_limit_key``: an advisory lock on PostgreSQL, the write lock on SQLite), so two engines
never both see a free slot. A run keeps its slot through waits and through the death of its
engine (another engine that takes the run over finds it held), and gives it up only by ending:
the checkpoint that ends it passes the slot, in its transaction, to the next queued run of the
key, which becomes runnable at once (the engines are woken as for a signal).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from .._state import FINISHED, EventKind, Status
from ._records import Checkpoint, CheckpointAck, LimitUse, NewEvent, SlotOutcome
from ._scripts import _event, _make_runnable, request_cancel, save_checkpoint
from ._sql import Tx


def claim_slot(tx: Tx, cp: Checkpoint) -> CheckpointAck:
    """Admit the run (a slot is free, or it holds one already) and write ``cp`` as a RUNNING
    checkpoint; or queue it and write ``cp`` as it is (WAITING: parked until a slot is given
    to it); or, ``on_conflict="skip"``, write it RUNNING and say so (the driver ends it)."""
    claim = cp.slot
    assert claim is not None
    tx.execute("lock_limit_key", key=claim.key)
    own = tx.one("slot_of_run", run_id=cp.run_id)
    key = claim.key if own is None else own["key"]
    if own is not None and key != claim.key:
        tx.execute("lock_limit_key", key=key)
    holders: tuple[str, ...] = ()
    if own is not None:
        state = "held" if own["held"] else "queued"
    else:
        holders = tuple(r["run_id"] for r in tx.all("slot_holders", key=key))
        state = "held" if len(holders) < claim.limit else claim.on_conflict
        detail = {"key": key, "limit": claim.limit}
        if state == "held":
            _insert(tx, cp, key, claim.limit, True)
            cp.events.append(NewEvent(EventKind.SLOT_ACQUIRED, None, detail, cp.now))
        elif state == "skip":
            state = "skipped"
            cp.events.append(
                NewEvent(EventKind.SLOT_REFUSED, None, {**detail, "holders": list(holders)}, cp.now)
            )
        else:
            _insert(tx, cp, key, claim.limit, False)
            cp.events.append(
                NewEvent(EventKind.SLOT_QUEUED, None, {**detail, "holders": list(holders)}, cp.now)
            )
            if state == "cancel_running":
                for holder in holders:
                    request_cancel(
                        tx, holder, cp.now, claim.wall, None, None, {"by": cp.run_id, "key": key}
                    )
            state = "queued"
    if state == "queued":
        ack = save_checkpoint(tx, dataclasses.replace(cp, slot=None))
    else:
        running = dataclasses.replace(
            cp, status=Status.RUNNING, waiting_for=[], wake_at=None, slot=None
        )
        running.events = [e for e in cp.events if e.kind != EventKind.WAITING]
        ack = save_checkpoint(tx, running)
    return dataclasses.replace(ack, slot=SlotOutcome(state, key, holders))


def finish_with_slot(tx: Tx, cp: Checkpoint) -> CheckpointAck:
    """Write ``cp`` (the run's last checkpoint) and release the run's slot with it. The key's
    lock is taken before the run's row, as every script here does."""
    if cp.status in FINISHED:
        release_slot(tx, cp.run_id, cp.now)
    return save_checkpoint(tx, cp)


def _insert(tx: Tx, cp: Checkpoint, key: str, limit: int, held: bool) -> None:
    tx.execute("insert_slot", run_id=cp.run_id, key=key, cap=limit, held=held, now=cp.now)


def release_slot(tx: Tx, run_id: str, now: datetime) -> None:
    """The run ends: its row goes, and its key's free slots go to the next queued runs (higher
    priority first, then the oldest), each made runnable in this transaction."""
    own = tx.one("slot_of_run", run_id=run_id)
    if own is None:
        return
    key = own["key"]
    tx.execute("lock_limit_key", key=key)
    row = tx.one("delete_slot", run_id=run_id)
    if row is None:
        return
    held = int(tx.one("held_slots", key=key)["n"])  # type: ignore[index]
    free = max(int(row["cap"]) - held, 1)
    for queued in tx.all("queued_slots", key=key, limit=free):
        if held >= int(queued["cap"]):
            break
        tx.execute("grant_slot", run_id=queued["run_id"], now=now)
        held += 1
        detail = {"key": key, "limit": int(queued["cap"]), "after": run_id}
        _event(tx, queued["run_id"], NewEvent(EventKind.SLOT_ACQUIRED, None, detail), now)
        waiting = tx.one("lock_run", id=queued["run_id"])
        if waiting is not None and waiting["status"] == Status.WAITING.value:
            _make_runnable(tx, queued["run_id"], now, None, None)


def list_limits(tx: Tx) -> list[LimitUse]:
    """Every key with a holder or a queued run, by key."""
    found: dict[str, tuple[int, list[str], list[str]]] = {}
    for r in tx.all("list_limits"):
        limit, holders, queued = found.setdefault(r["key"], (int(r["cap"]), [], []))
        (holders if r["held"] else queued).append(r["run_id"])
        if r["held"]:
            found[r["key"]] = (max(limit, int(r["cap"])), holders, queued)
    return [LimitUse(k, lim, tuple(h), tuple(q)) for k, (lim, h, q) in found.items()]
