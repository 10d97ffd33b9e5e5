"""A Flask app that starts and steers order runs; ``treadle worker`` processes run them.

::

    treadle worker examples.orders.workflows:order --db sqlite:///orders.db   # once, at least
    TREADLE_DB=sqlite:///orders.db flask --app examples.flask_app.app run

:func:`create_app` opens one :class:`treadle.SyncClient` per process (it is thread-safe: every
request thread shares it) and closes it when the process exits. The client executes nothing and
needs no step code: it starts runs of ``"order"`` by name, on the definition the workers stored.
Under a pre-forking server create the app in each worker process (gunicorn without
``--preload``): the client's event-loop thread does not survive a fork.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

import pydantic
from flask import Flask, request

import treadle
from examples.orders_api import (
    PAYMENT,
    WORKFLOW,
    OrderIn,
    PaymentIn,
    error_response,
    order_json,
    run_id_for,
)


def create_app(database: str | None = None) -> Flask:
    """The app, with a client open on ``database`` (default: the ``TREADLE_DB`` variable)."""
    app = Flask(__name__)
    client = treadle.SyncClient(database or os.environ["TREADLE_DB"])
    client.open()
    atexit.register(client.close)

    @app.errorhandler(treadle.TreadleError)
    @app.errorhandler(pydantic.ValidationError)
    def treadle_error(exc: Exception) -> tuple[dict[str, dict[str, str]], int]:
        """A treadle or validation error as a JSON 4xx/5xx (unknown run 404, ...)."""
        status, body = error_response(exc)
        return body, status

    @app.post("/orders")
    def create_order() -> tuple[dict[str, Any], int]:
        """Start an order; with an ``Idempotency-Key`` header, a repeat starts nothing."""
        order = OrderIn.model_validate_json(request.get_data())
        run_id = client.start(
            WORKFLOW,
            order.model_dump(),
            run_id=run_id_for(request.headers.get("Idempotency-Key")),
        )
        return order_json(client.status(run_id)), 202

    @app.get("/orders/<run_id>")
    def get_order(run_id: str) -> dict[str, Any]:
        """The order's status and data."""
        return order_json(client.status(run_id))

    @app.post("/orders/<run_id>/payment")
    def pay_order(run_id: str) -> tuple[dict[str, Any], int]:
        """Deliver the payment signal; the order goes on with charging and shipping."""
        payment = PaymentIn.model_validate_json(request.get_data())
        order_json(client.status(run_id))  # 404 for a run that is not an order
        client.signal(
            run_id,
            PAYMENT,
            payment.model_dump(),
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
        return {"id": run_id, "accepted": PAYMENT}, 202

    @app.post("/orders/<run_id>/cancel")
    def cancel_order(run_id: str) -> tuple[dict[str, Any], int]:
        """Cancel the order: the worker compensates what was done (releases the stock)."""
        order_json(client.status(run_id))
        client.cancel(run_id)
        return {"id": run_id, "accepted": "cancel"}, 202

    return app
