"""A FastAPI service that starts and steers order runs; ``treadle worker`` processes run them.

::

    treadle worker examples.orders.workflows:order --db sqlite:///orders.db   # once, at least
    TREADLE_DB=sqlite:///orders.db uvicorn examples.fastapi_service.app:app

The lifespan opens one async :class:`treadle.Client` per process. The client executes nothing
and needs no step code: it starts runs of ``"order"`` by name, on the definition the workers
stored in the database, and records signals there for them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

import treadle
from examples.orders_api import (
    PAYMENT,
    WORKFLOW,
    OrderIn,
    PaymentIn,
    error_response,
    invalid_body,
    order_json,
    run_id_for,
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the client when the server starts, close it when it stops."""
    async with treadle.Client(os.environ["TREADLE_DB"]) as client:
        app.state.treadle = client
        yield


app = FastAPI(title="orders", lifespan=lifespan)


def client_of(request: Request) -> treadle.Client:
    """The process's client, opened by :func:`lifespan`."""
    client: treadle.Client = request.app.state.treadle
    return client


@app.exception_handler(treadle.TreadleError)
async def treadle_error(request: Request, exc: treadle.TreadleError) -> JSONResponse:
    """A treadle error as a JSON 4xx/5xx (unknown run 404, finished run 409, ...)."""
    status, body = error_response(exc)
    return JSONResponse(body, status_code=status)


@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A malformed body, in the same shape as every other error."""
    return JSONResponse(invalid_body(exc.errors()), status_code=422)


@app.post("/orders", status_code=202)
async def create_order(
    order: OrderIn,
    request: Request,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Start an order; with an ``Idempotency-Key`` header, a repeated request starts nothing."""
    client = client_of(request)
    run_id = await client.start(WORKFLOW, order.model_dump(), run_id=run_id_for(idempotency_key))
    return order_json(await client.status(run_id))


@app.get("/orders/{run_id}")
async def get_order(run_id: str, request: Request) -> dict[str, Any]:
    """The order's status and data."""
    return order_json(await client_of(request).status(run_id))


@app.post("/orders/{run_id}/payment", status_code=202)
async def pay_order(
    run_id: str,
    payment: PaymentIn,
    request: Request,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Deliver the payment signal; the order goes on with charging and shipping."""
    client = client_of(request)
    order_json(await client.status(run_id))  # 404 for a run that is not an order
    await client.signal(run_id, PAYMENT, payment.model_dump(), idempotency_key=idempotency_key)
    return {"id": run_id, "accepted": PAYMENT}


@app.post("/orders/{run_id}/cancel", status_code=202)
async def cancel_order(run_id: str, request: Request) -> dict[str, Any]:
    """Cancel the order: the worker compensates what was done (releases the stock)."""
    client = client_of(request)
    order_json(await client.status(run_id))
    await client.cancel(run_id)
    return {"id": run_id, "accepted": "cancel"}
