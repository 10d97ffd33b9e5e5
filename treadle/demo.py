"""``treadle demo``: an order saga told as it happens.

Two orders go through one workflow on the embedded SQLite default (or any ``--db``):

* order A-1001 is large: it reserves stock, waits for the payment provider's signal, captures the
  payment, takes the "large order" branch and waits for a manager's approval (which the demo
  gives, after somebody who is not an approver is turned away), ships each item in a loop, and
  notifies the customer by e-mail and SMS in parallel (the SMS gateway times out once: retried);
* order B-1002 is small: it takes the other branch, but the carrier refuses a fragile item, so
  the completed steps are compensated in reverse order (recall the shipped item, refund the
  payment, release the stock) and the run ends FAILED.

At the end the demo reads both histories back from the database and prints them as timelines.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from ._builder import new
from ._engine import Engine
from ._errors import NonRetryableError, NotAnApprover
from ._nodes import Workflow, step
from ._retry import RetryPolicy
from ._state import Context, Event, EventKind, State, Status
from .persistence import persistence_from_url

__all__ = ["ORDERS", "order_workflow", "run_demo"]

Echo = Callable[[str], Any]

ORDERS: list[dict[str, Any]] = [
    {
        "order": "A-1001",
        "customer": "Ada",
        "total": 1250.0,
        "items": ["keyboard", "monitor", "desk lamp"],
    },
    {"order": "B-1002", "customer": "Grace", "total": 89.9, "items": ["notebook", "glass vase"]},
]
LARGE = 500.0
FRAGILE = "glass vase"
APPROVERS = ["alice", "bob"]


class _Shop:
    """The step functions of the demo shop; each says what it does, indented under its order."""

    def __init__(self, echo: Echo) -> None:
        self.echo = echo
        self.sms_tries: set[str] = set()

    def say(self, ctx: Context, text: str) -> None:
        self.echo(f"    {ctx.step:<16} {text}")

    def reserve_stock(self, ctx: Context, state: State) -> None:
        items = state.data["items"]
        self.say(ctx, f"reserved {len(items)} items: {', '.join(items)}")

    def release_stock(self, ctx: Context, state: State) -> None:
        self.say(ctx, f"undo: released the stock of {len(state.data['items'])} items")

    def capture_payment(self, ctx: Context, state: State) -> None:
        self.say(
            ctx, f"captured {state.data['total']:.2f} EUR (idempotency key {ctx.idempotency_key})"
        )

    def refund_payment(self, ctx: Context, state: State) -> None:
        self.say(ctx, f"undo: refunded {state.data['total']:.2f} EUR")

    def auto_approve(self, ctx: Context, state: State) -> None:
        self.say(ctx, f"small order (under {LARGE:.0f} EUR): approved without a manager")

    def ship_item(self, ctx: Context, state: State) -> None:
        count = len(state.data["items"])
        if ctx.item == FRAGILE:
            self.say(ctx, f"the carrier refuses {ctx.item!r}: this step fails for good")
            raise NonRetryableError(f"carrier refused {ctx.item!r}")
        self.say(ctx, f"shipped item {(ctx.index or 0) + 1}/{count}: {ctx.item}")

    def recall_item(self, ctx: Context, state: State) -> None:
        self.say(ctx, f"undo: recalled the shipment of {ctx.item!r}")

    def send_email(self, ctx: Context, state: State) -> None:
        self.say(ctx, f"e-mailed {state.data['customer']} (in parallel with the SMS)")

    def send_sms(self, ctx: Context, state: State) -> None:
        if ctx.run_id not in self.sms_tries:
            self.sms_tries.add(ctx.run_id)
            self.say(ctx, "the SMS gateway timed out (attempt 1): retried after a short backoff")
            raise ConnectionError("SMS gateway timed out")
        self.say(ctx, f"texted {state.data['customer']} (attempt {ctx.attempt})")

    def close_order(self, ctx: Context, state: State) -> None:
        self.say(ctx, f"order {state.data['order']} is complete")


def order_workflow(echo: Echo = print) -> Workflow:
    """The demo's workflow, ``demo-order``, whose steps tell what they do through ``echo``."""
    shop = _Shop(echo)
    manager_review = new("manager-review").await_approval("manager", APPROVERS).build()
    sms_retry = RetryPolicy().attempts(3).backoff("100ms", "1s")
    return (
        new("demo-order")
        .step("reserve-stock", shop.reserve_stock, compensate=shop.release_stock)
        .await_signal("payment")
        .timeout("1h")
        .step("capture-payment", shop.capture_payment, compensate=shop.refund_payment)
        .if_("large-order", lambda s: s.data["total"] > LARGE)
        .then(manager_review)
        .else_(step("auto-approve", shop.auto_approve))
        .end()
        .loop("ship-items")
        .for_each("items")
        .do(step("ship-item", shop.ship_item, compensate=shop.recall_item))
        .end()
        .parallel(
            "notify",
            step("email", shop.send_email),
            step("sms", shop.send_sms, retry=sms_retry),
        )
        .step("close-order", shop.close_order)
        .build()
    )


OUTLINE = """\
The workflow 'demo-order' (every completed step is a checkpoint in the database):
  reserve-stock          (undo: release the stock)
  await signal payment   (from the payment provider)
  capture-payment        (undo: refund)
  if large-order         total > {large:.0f} EUR: await approval 'manager' by {approvers}
                         otherwise: auto-approve
  loop ship-items        for each item: ship-item (undo: recall it)
  parallel notify        email + sms (sms retried up to 3 times)
  close-order"""


async def _until_waiting(engine: Engine, run_id: str, wait: str, timeout: float = 10.0) -> State:
    """Poll until the run waits for ``wait`` (e.g. ``signal:payment``) or has ended."""
    deadline = time.monotonic() + timeout
    while True:
        state = await engine.status(run_id)
        if wait in state.waiting_for or state.status.finished:
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} did not reach {wait} within {timeout}s")
        await asyncio.sleep(0.01)


def _describe(event: Event) -> str:
    """One short line for a history event."""
    d = event.detail
    where = f" {event.step}" if event.step else ""
    extra = ""
    if event.kind == "step_failed":
        extra = f": {d.get('error')}" + (" (retried)" if d.get("retry_in") is not None else "")
    elif event.kind == "branch_taken":
        arm = d.get("branch")
        extra = " -> else" if d.get("otherwise") else " -> then" if arm == 0 else f" -> arm {arm}"
    elif event.kind == "loop_iteration":
        extra = f" #{d.get('iteration')}"
    elif event.kind == "waiting":
        extra = " for " + ", ".join(d.get("waits") or [])
    elif event.kind == "approval_received":
        verb = "approved" if d.get("approved") else "rejected"
        extra = f": {verb} by {d.get('by')}"
    elif event.kind == "compensating":
        extra = ": undo " + " <- ".join(d.get("steps") or [])
    elif event.kind == "run_failed":
        extra = f": {d.get('error')}"
    elif event.kind == "parallel_completed":
        extra = ": " + ", ".join(d.get("done") or [])
    return f"{event.kind}{where}{extra}"


_QUIET = frozenset({EventKind.LOOP_ITERATION, EventKind.SIGNAL_CONSUMED})
"""History events the timeline leaves out (``treadle history`` shows every one)."""


def _timeline(state: State, events: list[Event], echo: Echo) -> None:
    echo(f"  run {state.id} ({state.status.value}):")
    start = events[0].at if events else state.created_at
    for event in events:
        if event.kind in _QUIET:
            continue
        offset = max(0.0, (event.at - start).total_seconds())
        echo(f"    {f'+{offset:.3f}s':>8}  {_describe(event)}")


async def _order_a(engine: Engine, run_id: str, echo: Echo) -> None:
    await _until_waiting(engine, run_id, "signal:payment")
    echo("  .. the run waits for signal 'payment' (a waiting run holds no task and no memory)")
    payment = {"amount": ORDERS[0]["total"], "reference": "psp-" + run_id[-6:]}
    echo(f"  -> the payment provider sends signal 'payment' {json.dumps(payment)}")
    await engine.signal(run_id, "payment", payment)
    state = await _until_waiting(engine, run_id, "approval:manager")
    if state.status.finished:
        return
    echo(f"  .. the run waits for approval 'manager' (approvers: {', '.join(APPROVERS)})")
    try:
        await engine.approve(run_id, "manager", by="mallory")
    except NotAnApprover as exc:
        echo(f"  -> mallory tries to approve: refused ({type(exc).__name__})")
    echo("  -> alice approves 'manager': \"looks fine, ship it\"")
    await engine.approve(run_id, "manager", by="alice", comment="looks fine, ship it")


async def _order_b(engine: Engine, run_id: str, echo: Echo) -> None:
    await _until_waiting(engine, run_id, "signal:payment")
    echo("  .. the run waits for signal 'payment'")
    payment = {"amount": ORDERS[1]["total"], "reference": "psp-" + run_id[-6:]}
    echo(f"  -> the payment provider sends signal 'payment' {json.dumps(payment)}")
    await engine.signal(run_id, "payment", payment)


async def run_demo(db_url: str = "sqlite:///treadle.db", *, echo: Echo = print) -> bool:
    """Run the demo on ``db_url``, telling the story through ``echo``.

    Returns whether it went as told: order A completed, order B failed and was compensated.
    """
    began = time.monotonic()
    engine = Engine(persistence_from_url(db_url), poll_interval=0.2)
    engine.register(order_workflow(echo))
    echo(f"treadle demo: an order saga on {db_url}")
    echo("")
    echo(OUTLINE.format(large=LARGE, approvers=" or ".join(APPROVERS)))
    finals: list[State] = []
    async with engine:
        for order, script in zip(ORDERS, (_order_a, _order_b), strict=True):
            echo("")
            items = len(order["items"])
            echo(
                f"Order {order['order']}: {order['customer']}, {items} items, "
                f"{order['total']:.2f} EUR"
            )
            run_id = f"{order['order']}-{uuid.uuid4().hex[:6]}"
            await engine.start("demo-order", dict(order), run_id=run_id)
            echo(f"  started run {run_id}")
            await script(engine, run_id, echo)
            final = await engine.wait(run_id, timeout=30)
            finals.append(final)
            if final.status is Status.COMPLETED:
                echo(f"  == {final.status.value}")
            else:
                echo(f"  == {final.status.value}: {final.error}")
                echo("     (the completed steps were undone in reverse order: a saga)")
        echo("")
        echo("Timelines, read back from the database:")
        for final in finals:
            _timeline(final, await engine.history(final.id), echo)
    echo("")
    where = "" if db_url == "sqlite:///treadle.db" else f" --db {db_url}"
    echo(f"Done in {time.monotonic() - began:.1f}s. Look again with:")
    echo(f"  .venv/bin/treadle runs --workflow demo-order{where}")
    echo(f"  .venv/bin/treadle history {finals[-1].id}{where}")
    statuses = [f.status for f in finals]
    return statuses == [Status.COMPLETED, Status.FAILED]


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(0 if asyncio.run(run_demo()) else 1)
