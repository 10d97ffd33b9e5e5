"""What the three web examples share: the JSON they accept and return, and the HTTP meaning of
treadle's errors. It imports treadle and pydantic only — never the step code
(:mod:`examples.orders.workflows`), which only workers import."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

import treadle

WORKFLOW = "order"
"""The workflow the web apps start, by name: a worker stored its definition in the database."""

PAYMENT = "payment"
"""The signal that the order awaits after reserving its items."""


class OrderIn(BaseModel):
    """The body of ``POST /orders``: the start data of the run."""

    model_config = ConfigDict(extra="forbid")

    customer: str = Field(min_length=1, max_length=200)
    items: list[str] = Field(min_length=1, max_length=100)
    total: int = Field(gt=0, description="in cents")


class PaymentIn(BaseModel):
    """The body of ``POST /orders/{id}/payment``: the data of the ``payment`` signal."""

    model_config = ConfigDict(extra="forbid")

    amount: int = Field(gt=0, description="in cents")
    reference: str = Field(min_length=1, max_length=200)


def run_id_for(idempotency_key: str | None) -> str | None:
    """The run id of an order started with an ``Idempotency-Key`` header: the key itself (so a
    repeated request starts nothing and returns the same order); ``None`` without one."""
    if idempotency_key is None:
        return None
    return treadle.check_id(idempotency_key, "Idempotency-Key header")


def order_json(state: treadle.State) -> dict[str, Any]:
    """The JSON of an order; a run of another workflow is not an order (:class:`RunNotFound`)."""
    if state.workflow != WORKFLOW:
        raise treadle.RunNotFound(state.id)
    return {
        "id": state.id,
        "status": state.status.value,
        "waiting_for": state.waiting_for,
        "data": state.data,
        "error": state.error,
        "created_at": state.created_at.isoformat(),
        "updated_at": state.updated_at.isoformat(),
    }


# Most specific first: the first class the error is an instance of decides.
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (treadle.RunNotFound, 404),
    # No worker has stored the definition yet: the service is not deployed completely.
    (treadle.WorkflowNotFound, 503),
    (treadle.RunExists, 409),
    (treadle.InvalidTransition, 409),
    (treadle.NotAnApprover, 403),
    (treadle.InvalidId, 422),
    (treadle.DataError, 422),
    (treadle.UnknownSignal, 422),
    (treadle.UnknownApproval, 422),
    (pydantic.ValidationError, 422),
    (treadle.EngineNotOpen, 503),
    (treadle.PersistenceError, 503),
)


def error_response(exc: Exception) -> tuple[int, dict[str, dict[str, str]]]:
    """The HTTP status and JSON body for a treadle (or validation) error, in the shape of
    ``treadle serve``'s API: ``{"error": {"type": "<class name>", "message": "..."}}``."""
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
    if isinstance(exc, pydantic.ValidationError):
        return status, invalid_body(exc.errors())
    return status, {"error": {"type": type(exc).__name__, "message": str(exc)}}


def invalid_body(errors: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """The JSON body of a 422 for pydantic's (or FastAPI's) list of validation errors."""
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return {"error": {"type": "ValidationError", "message": "; ".join(parts)}}
