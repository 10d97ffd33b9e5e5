"""A plain script: one process that both executes and steers an order, with
:class:`treadle.SyncEngine` on a SQLite file (no event loop of your own).

::

    python -m examples.script [orders.db]

Run it again after killing it (Ctrl-C, ``kill -9``) mid-way: the run goes on from its last
checkpoint, and the steps already done are not done again.
"""

from __future__ import annotations

import sys

import treadle
from examples.orders.workflows import order


def main(path: str = "orders.db") -> treadle.State:
    """Start an order, pay it, and wait until it has shipped; return its final state."""
    with treadle.SyncEngine(treadle.SQLitePersistence(path)) as engine:
        engine.register(order)
        data = {"customer": "ada@example.com", "items": ["book", "lamp"], "total": 4200}
        # A fixed run id makes the start idempotent: a second run of the script resumes it.
        run_id = engine.start("order", data, run_id="script-order-1")
        if not engine.status(run_id).status.finished:
            payment = {"amount": 4200, "reference": "pay-1"}
            engine.signal(run_id, "payment", payment, idempotency_key="pay-1")
        final = engine.wait(run_id, timeout=60)
        print(f"order {final.id}: {final.status.value}, tracking {final.data['ship']['tracking']}")
        return final


if __name__ == "__main__":
    main(*sys.argv[1:2])
