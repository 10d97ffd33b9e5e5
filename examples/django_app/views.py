"""Views that start and steer order runs; ``treadle worker`` processes run them.

One :class:`treadle.SyncClient` per process, opened lazily by the first request that needs it
(:func:`client`) and closed at exit. Not in ``AppConfig.ready()``: that runs in every
``manage.py`` command and in the autoreloader's watcher process too, and before a pre-forking
server forks (the client's event-loop thread would not survive the fork). The client is
thread-safe, so every request thread shares it. It executes nothing and needs no step code: it
starts runs of ``"order"`` by name, on the definition the workers stored in the database.
"""

from __future__ import annotations

import atexit
import functools
import threading
from collections.abc import Callable
from typing import Any

import pydantic
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_POST

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

_client: treadle.SyncClient | None = None
_client_lock = threading.Lock()


def client() -> treadle.SyncClient:
    """The process's client on ``settings.TREADLE_DB``, opened on first use."""
    global _client
    with _client_lock:
        if _client is None:
            opened = treadle.SyncClient(settings.TREADLE_DB)
            opened.open()
            atexit.register(opened.close)
            _client = opened
        return _client


View = Callable[..., tuple[dict[str, Any], int]]


def json_view(view: View) -> Callable[..., JsonResponse]:
    """A view returning ``(body, status)`` as JSON, with treadle's and validation errors as
    JSON 4xx/5xx (unknown run 404, finished run 409, malformed body 422, ...)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        body: dict[str, Any]
        try:
            body, status = view(request, *args, **kwargs)
        except (treadle.TreadleError, pydantic.ValidationError) as exc:
            status, body = error_response(exc)
        return JsonResponse(body, status=status)

    return wrapper


@require_POST
@json_view
def create_order(request: HttpRequest) -> tuple[dict[str, Any], int]:
    """Start an order; with an ``Idempotency-Key`` header, a repeat starts nothing."""
    order = OrderIn.model_validate_json(request.body)
    run_id = client().start(
        WORKFLOW, order.model_dump(), run_id=run_id_for(request.headers.get("Idempotency-Key"))
    )
    return order_json(client().status(run_id)), 202


@require_GET
@json_view
def get_order(request: HttpRequest, run_id: str) -> tuple[dict[str, Any], int]:
    """The order's status and data."""
    return order_json(client().status(run_id)), 200


@require_POST
@json_view
def pay_order(request: HttpRequest, run_id: str) -> tuple[dict[str, Any], int]:
    """Deliver the payment signal; the order goes on with charging and shipping."""
    payment = PaymentIn.model_validate_json(request.body)
    order_json(client().status(run_id))  # 404 for a run that is not an order
    client().signal(
        run_id,
        PAYMENT,
        payment.model_dump(),
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    return {"id": run_id, "accepted": PAYMENT}, 202


@require_POST
@json_view
def cancel_order(request: HttpRequest, run_id: str) -> tuple[dict[str, Any], int]:
    """Cancel the order: the worker compensates what was done (releases the stock)."""
    order_json(client().status(run_id))
    client().cancel(run_id)
    return {"id": run_id, "accepted": "cancel"}, 202
