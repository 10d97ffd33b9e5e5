"""The order workflow: the step code, imported only by the processes that execute runs.

Run a worker for it with::

    treadle worker examples.orders.workflows:order --db sqlite:///orders.db

The web examples never import this module: they start runs of ``"order"`` by name through a
``treadle.Client``/``SyncClient``, on the definition that a worker stored in the database.

The "external systems" (stock, payments, shipping) are stand-ins: each appends one line to the
file named by ``ORDERS_LEDGER`` (if set) and logs it, so that a test can count what happened.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import treadle
from treadle import Context, State

log = logging.getLogger("examples.orders")


def record(ctx: Context, action: str, detail: str = "") -> None:
    """Tell the outside world that ``action`` happened for this run (the side effect)."""
    line = f"{ctx.run_id}\t{action}\t{detail}\t{ctx.idempotency_key}"
    log.info("%s", line)
    ledger = os.environ.get("ORDERS_LEDGER")
    if ledger:
        fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)


def reserve(ctx: Context, state: State) -> dict[str, Any]:
    """Reserve the items in stock."""
    items = state.data["items"]
    record(ctx, "reserve", ",".join(items))
    return {"reserved": items}


def release(ctx: Context, state: State) -> None:
    """Compensation of :func:`reserve`: put the items back."""
    record(ctx, "release", ",".join(state.data["items"]))


def charge(ctx: Context, state: State) -> dict[str, Any]:
    """Charge the payment that the ``payment`` signal brought (stored at ``data["payment"]``).

    ``ctx.idempotency_key`` is the same for every attempt of this step, so a payment provider
    given it charges once even when the step runs again after a crash."""
    payment = state.data["payment"]
    if payment["amount"] != state.data["total"]:
        raise treadle.NonRetryableError(
            f"payment of {payment['amount']} does not match the total {state.data['total']}"
        )
    record(ctx, "charge", str(payment["amount"]))
    return {"charged": payment["amount"], "reference": payment.get("reference")}


def refund(ctx: Context, state: State) -> None:
    """Compensation of :func:`charge`."""
    record(ctx, "refund", str(state.data["total"]))


def ship(ctx: Context, state: State) -> dict[str, Any]:
    """Hand the parcel to the carrier."""
    record(ctx, "ship", state.data["customer"])
    return {"tracking": f"TRK-{ctx.run_id}"}


order = (
    treadle.new("order")
    .step("reserve", reserve, compensate=release)
    # Unpaid orders give their stock back after a day (the timeout fails the run: release runs).
    .await_signal("payment").timeout("24h")
    .step("charge", charge, compensate=refund,
          retry=treadle.RetryPolicy().attempts(5).backoff("200ms", "10s"))
    .step("ship", ship, retry=treadle.RetryPolicy().attempts(5).backoff("1s", "1m"))
    .build()
)  # fmt: skip
