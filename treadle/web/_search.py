"""Reading a :class:`~treadle.RunFilter` from query parameters (``GET /api/runs``, the runs page),
and the parameters as the OpenAPI document lists them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import QueryParams

from .._errors import TreadleError
from .._labels import parse_label
from .._search import RunFilter
from ._errors import ApiError

TIMES = ("created_after", "created_before", "updated_after", "updated_before")
TEXTS = ("workflow", "version", "parent_id")


def _time(params: QueryParams, name: str) -> datetime | None:
    text = params.get(name)
    if not text:
        return None
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, "BadRequest", f"{name!r} must be an ISO 8601 time") from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def query_filter(params: QueryParams) -> RunFilter:
    """The filter the query asks for: ``workflow``, ``status``, ``version``, ``label=k:v``
    (repeatable), the four time bounds, ``error`` and ``parent_id`` (empty values: any)."""
    try:
        fields: dict[str, Any] = {name: params.get(name) or None for name in TEXTS}
        fields["status"] = params.get("status") or None
        fields["labels"] = dict(parse_label(text) for text in params.getlist("label") if text)
        fields["error_contains"] = params.get("error") or None
        fields.update({name: _time(params, name) for name in TIMES})
        return RunFilter(**fields)
    except (TreadleError, ValueError) as exc:
        raise ApiError(400, "BadRequest", str(exc)) from None


def _query(name: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": {"type": "string", **schema}}


OPENAPI_PARAMETERS: list[dict[str, Any]] = [
    *(_query(name) for name in TEXTS),
    {"name": "status", "in": "query", "schema": {"$ref": "#/components/schemas/Status"}},
    {
        **_query("label"),
        "description": "key:value (or key=value); repeatable: the run has every one",
        "explode": True,
        "schema": {"type": "array", "items": {"type": "string"}},
    },
    *(_query(name, format="date-time") for name in TIMES),
    {**_query("error"), "description": "a part of the run's error (any case)"},
    {**_query("cursor"), "description": "the next_cursor of the previous page"},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
]
